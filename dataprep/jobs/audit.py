"""``dataprep audit``: per-image features on every core, journaled, then the findings.

Three stages, each its own module:

1. here: the sources (any mix of folders, lists, manifests, the folder ``split`` wrote,
   shards) become one list of audited images, each with its split; a worker task
   (:class:`FeatureTask`) computes per image the sha256 of its bytes and of its decoded
   pixels, perceptual hashes of it and of its mirror (:mod:`dataprep.ops.phash`), its size and
   measures. Results come back in input order through the runner and are appended, synced, to
   ``features.jsonl`` in the output folder: a rerun reads it and computes only the images that
   are new or changed (same path, size and modification time, or the same bytes for shard
   samples);
2. :mod:`dataprep.jobs.audit_findings`: duplicates, near-duplicate clusters, leakage, label
   conflicts, odd images, per-split statistics (pure functions over the features);
3. :mod:`dataprep.jobs.audit_drift` (optional, ``--weights``) and
   :mod:`dataprep.jobs.audit_report` (``audit.json``, ``report.md``, contact sheets, all
   written atomically).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import ImageError, SourceError, UsageError
from dataprep.io import durable
from dataprep.io.decode import DEFAULT_MAX_PIXELS, open_image, record_bytes
from dataprep.ops import phash as ph
from dataprep.records import Record

FEATURES_NAME = "features.jsonl"
FEATURES_VERSION = 1  # bump when a feature's definition changes: older lines are recomputed
SYNC_EVERY = 64  # journal lines between fsyncs (a kill loses at most these)
SPLIT_ORDER = ("train", "val", "test")
Log = Callable[[str], None]


@dataclass
class Audited:
    """One audited image: where it is, its split and class, its features (None: skipped)."""

    key: str
    path: str
    split: str
    class_name: str
    features: dict[str, Any] | None = None
    error: str | None = None

    def describe(self) -> dict[str, str]:
        return {"split": self.split, "class": self.class_name, "key": self.key,
                "path": self.path}


# --- sources ---------------------------------------------------------------------------------


def _manifests(folder: Path) -> list[Path]:
    """The split manifests of a folder ``dataprep split`` wrote, as its ``dataprep.json``
    names them (train, val, test first); [] for any other folder (images or shards, read by
    :func:`dataprep.io.scan.scan`): a stray ``*.jsonl`` there is never taken for a split."""
    from dataprep.io.files import read_json_file

    ledger_path = folder / "dataprep.json"
    if not ledger_path.is_file():
        return []
    ledger = read_json_file(ledger_path, SourceError)
    if not isinstance(ledger, dict) or ledger.get("command") != "split":
        return []
    counts = ledger.get("counts")
    if not isinstance(counts, dict) or not counts or not all(
            isinstance(n, str) and n and "/" not in n and n not in (".", "..") for n in counts):
        raise SourceError(f"{ledger_path}: damaged, 'counts' does not name the splits; rerun "
                          "`dataprep split` into it")
    names = sorted(counts, key=lambda n: (
        SPLIT_ORDER.index(n) if n in SPLIT_ORDER else len(SPLIT_ORDER), n))
    found = [folder / f"{n}.jsonl" for n in names]
    missing = [p.name for p in found if not p.is_file()]
    if missing:
        raise SourceError(f"{folder}: the split's manifest {missing[0]} is missing; rerun "
                          "`dataprep split` into it")
    return found


def gather(srcs: Sequence[str | os.PathLike], root: str | os.PathLike | None = None,
           ) -> tuple[Iterator[Record], list[dict[str, str]], list[str], int | None]:
    """The records of every source, each with its split, as one stream; the inputs the scans
    could not use; the input paths (for the -o overlap check); the record count (None when a
    shard source does not say).

    Splits: a manifest's, the split of a shard file, else the source's name when several
    sources are given (``audit data/train data/val``), else ``all``.
    """
    from dataprep.io.scan import scan

    if not srcs:
        raise UsageError("give at least one SRC: an image folder, a list file, a manifest, the "
                         "folder `dataprep split` wrote, or shards")
    sources: list[tuple[Any, str]] = []
    inputs: list[str] = []
    for src in srcs:
        p = Path(src)
        inputs.append(str(src))
        manifests = _manifests(p) if p.is_dir() else []
        if manifests:
            sources += [(scan(m, root=root), m.stem) for m in manifests]
        else:
            name = "all" if len(srcs) == 1 else (p.stem or p.name or str(src))
            sources.append((scan(p, root=root), name))
    errors = [e for s, _ in sources for e in (s.errors or [])]
    total: int | None = 0
    for s, _ in sources:
        try:
            total = None if total is None else total + len(s)
        except TypeError:
            total = None

    def stream() -> Iterator[Record]:
        for source, default in sources:
            for r in source:
                if not r.split:
                    r.split = default
                yield r

    return stream(), errors, inputs, total


def identity(r: Record) -> str:
    """What a journaled result is valid for: the record's file (path, size, modification time),
    or the digest of the bytes a shard sample carries. Features depend on the bytes only, so a
    result is reused whatever the record's split or class (``split --audit DIR`` reuses an
    audit's features for the unsplit source)."""
    if r.data is not None:
        return f"data:{len(r.data)}:{hashlib.blake2b(r.data, digest_size=16).hexdigest()}"
    try:
        st = os.stat(r.path)
        return f"file:{r.path}:{st.st_size}:{st.st_mtime_ns}"
    except OSError as exc:
        return f"file:{r.path}:unreadable:{exc.errno}"


# --- the worker task -------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureTask:
    """Worker side: one record -> its features (a dict of JSON values). Unusable images raise
    :class:`ImageError` (the runner makes them data)."""

    max_pixels: int = DEFAULT_MAX_PIXELS

    def __call__(self, record: Record) -> Any:
        data = record_bytes(record)
        img = open_image(data, max_pixels=self.max_pixels, name=record.path or record.key)
        return features_of(data, img)


def features_of(data: bytes, img: Any) -> dict[str, Any]:
    """The features of one decoded image (``img``: RGB) and its file bytes (see the module
    docstring of :mod:`dataprep.ops.phash` for the hashes and measures)."""
    small = ph.analysis_image(img)
    gray = small.convert("L")
    p, pm = ph.phash_pair(gray)
    d, dm = ph.dhash_pair(gray)
    m = ph.measure(small, gray)
    return {
        "sha256": hashlib.sha256(data).hexdigest(), "pixels": ph.pixel_digest(img),
        "phash": f"{p:016x}", "phash_mirror": f"{pm:016x}",
        "dhash": f"{d:016x}", "dhash_mirror": f"{dm:016x}",
        "width": img.width, "height": img.height, "bytes": len(data),
        "mean": round(m.mean, 3), "std": round(m.std, 3),
        "colorfulness": round(m.colorfulness, 3), "chroma": round(m.chroma, 3),
        "blur": round(m.blur, 2),
    }


def _own_names() -> set[str]:
    """The files an audit writes into its -o (each also under its temporary name)."""
    from dataprep.jobs.audit_drift import EMBEDDINGS_NAME
    from dataprep.jobs.audit_report import ERRORS_NAME, SHEETS
    from dataprep.jobs.output_names import LOCK_NAME

    names = {FEATURES_NAME, "audit.json", "report.md", ERRORS_NAME, EMBEDDINGS_NAME, *SHEETS}
    return names | {f".{n}.tmp" for n in names} | {LOCK_NAME}


def _is_journal(path: Path) -> bool:
    """``path`` starts with the header an audit writes (of any feature version)."""
    try:
        with open(path, "rb") as f:
            head = json.loads(f.readline(200))
    except (OSError, ValueError):
        return False
    return isinstance(head, dict) and "audit_features" in head


def check_out(out: Path) -> None:
    """Refuse an -o that holds what an audit did not write: a ``dataprep.json`` (the folder
    of another verb), or, without the ``audit.json`` of an earlier audit, any file but those
    an audit writes (a run killed before its report: resumed). Nothing is touched."""
    if not out.is_dir():
        return
    if os.path.lexists(out / "dataprep.json"):
        raise UsageError(f"-o {out} holds dataprep.json: it is another command's output; "
                         "choose a new or empty folder for the audit")
    if (out / "audit.json").is_file():
        return
    from dataprep.jobs.output_names import LOCK_NAME

    present = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
    own = _own_names()
    strangers = [n for n in present if n not in own]
    if present and not strangers and not _is_journal(out / FEATURES_NAME):
        strangers = present  # no audit's journal: these files are someone else's
    if strangers:
        raise UsageError(f"-o {out} is not empty and holds no audit.json ({strangers[0]!r} "
                         "is not an audit's); choose a new or empty folder for the audit")


# --- the journal -----------------------------------------------------------------------------


def read_features(path: Path) -> dict[str, dict[str, Any]]:
    """identity -> journaled line of a ``features.jsonl`` (``{}`` without one, or when it was
    written by another feature version). A torn or damaged line is left out: its image is
    computed again."""
    if not path.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    with open(path, "rb") as f:
        header = f.readline()
        try:
            if json.loads(header).get("audit_features") != FEATURES_VERSION:
                return {}
        except (ValueError, AttributeError):
            return {}
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and (
                    isinstance(entry.get("features"), dict) or isinstance(entry.get("error"),
                                                                          str)):
                out[entry["id"]] = entry
    return out


def _header() -> bytes:
    return json.dumps({"audit_features": FEATURES_VERSION}).encode() + b"\n"


def _line(ident: str, image: Audited) -> bytes:
    entry: dict[str, Any] = {"id": ident, "key": image.key, "path": image.path,
                             "split": image.split, "class": image.class_name}
    if image.error is not None:
        entry["error"] = image.error
    else:
        entry["features"] = image.features
    return json.dumps(entry, sort_keys=True).encode("utf-8", "surrogatepass") + b"\n"


class FeatureJournal:
    """``features.jsonl`` while a run appends to it: started fresh when it is not there (or
    of another version), appended to otherwise; each line synced every ``SYNC_EVERY``."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        if fresh:
            durable.write_atomic(path, _header())
        self.file = durable.open_new(path, append=True)
        self.pending = 0

    def add(self, ident: str, image: Audited) -> None:
        self.file.write(_line(ident, image))
        self.pending += 1
        if self.pending >= SYNC_EVERY:
            self.sync()

    def sync(self) -> None:
        durable.fsync(self.file)
        self.pending = 0

    def close(self) -> None:
        self.sync()
        self.file.close()


def compute_features(records: Iterable[Record], *, jobs: int | None = None,
                     total: int | None = None, journal: Path | None = None,
                     cache: dict[str, dict[str, Any]] | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool | None = None,
                     on_error: str = "skip") -> tuple[list[Audited], list[str], int]:
    """Features of every record, in input order, computed by ``jobs`` workers through the
    runner; those found in ``cache`` (identity -> journaled line) are reused. With ``journal``
    each newly computed image is appended to that ``features.jsonl``. Returns the images,
    their identities (:func:`identity`) and how many came from the cache."""
    from tqdm import tqdm

    from dataprep.runner import map_records, resolve_jobs

    cache = cache or {}
    n_jobs = resolve_jobs(jobs)
    images: list[Audited | None] = []
    ids: list[str] = []
    reused = 0
    todo: list[tuple[int, str]] = []  # (position, identity) of the records to compute

    def to_compute() -> Iterator[Record]:
        nonlocal reused
        for r in records:
            ident = identity(r)
            ids.append(ident)
            hit = cache.get(ident)
            if hit is not None:
                images.append(Audited(r.key, r.path, r.split, r.class_name,
                                     hit.get("features"), hit.get("error")))
                reused += 1
                continue
            todo.append((len(images), ident))
            images.append(None)
            yield r

    fresh = journal is not None and not cache
    writer = FeatureJournal(journal, fresh) if journal is not None else None
    bar = tqdm(total=total, unit="img", desc="audit", file=sys.stderr, leave=False,
               disable=None if progress is None else not progress)
    done = 0
    try:
        for record, result, error in map_records(FeatureTask(max_pixels), to_compute(), n_jobs,
                                                 None if total is None else max(total, 1)):
            if error is not None and on_error == "raise":
                raise ImageError(error)
            pos, ident = todo[done]
            done += 1
            image = Audited(record.key, record.path, record.split, record.class_name,
                           None if error else result, error)  # type: ignore[arg-type]
            images[pos] = image
            if writer is not None:
                writer.add(ident, image)
            bar.update(1)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return [i for i in images if i is not None], ids, reused


def rewrite_features(path: Path, records_ids: list[str], images: list[Audited]) -> None:
    """Replace ``features.jsonl`` by exactly the current images, in input order (lines of
    images no longer in the sources are dropped)."""
    body = b"".join(_line(ident, img) for ident, img in zip(records_ids, images, strict=True))
    durable.write_atomic(path, _header() + body)


# --- the verb --------------------------------------------------------------------------------


@dataclass
class AuditResult:
    """What ``dataprep audit`` found and wrote."""

    out_dir: str
    findings: dict[str, Any]
    files: list[str]
    seconds: float
    computed: int
    reused: int
    jobs: int
    errors: list[dict[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        from dataprep.jobs.audit_report import summary_lines

        n = self.computed + self.reused
        rate = self.computed / self.seconds if self.seconds > 0 else 0.0
        skipped = int(self.findings.get("skipped", len(self.errors)))
        out = [f"audit: {n - skipped:,} images audited of {n:,} inputs ({self.computed:,} read, "
               f"{self.reused:,} reused from {FEATURES_NAME}) in {self.seconds:.1f} s, "
               f"{rate:,.1f} inputs/s on {self.jobs} workers; {skipped:,} skipped"]
        out += summary_lines(self.findings)
        out.append(f"wrote {', '.join(self.files)} to {self.out_dir}")
        return out

    def leaks(self) -> int:
        """Cross-split duplicate pairs (exact or near)."""
        return sum(p["near"] for p in self.findings["leakage"]["pairs"].values())

    def exact_leaks(self) -> int:
        """Cross-split pairs of identical pixels."""
        return sum(p["exact"] for p in self.findings["leakage"]["pairs"].values())

    def conflicts(self) -> int:
        return len(self.findings["label_conflicts"])


def audit(srcs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
          jobs: int | None = None, root: str | os.PathLike | None = None,
          threshold: int | None = None, weights: str | os.PathLike | None = None,
          model: str = "mobilenet_v2", embed_size: int = 224, reference: str = "train",
          max_pixels: int = DEFAULT_MAX_PIXELS, on_error: str = "skip",
          sheets: bool = True, progress: bool | None = None,
          thresholds: dict[str, float] | None = None, log: Log | None = None) -> AuditResult:
    """Audit the images of ``srcs`` into the folder ``out`` (see the module docstring).

    ``threshold``: Hamming distance (of 64 bits) up to which two images are near duplicates
    (default :data:`dataprep.jobs.audit_findings.NEAR_THRESHOLD`). ``thresholds``: overrides
    of :data:`dataprep.jobs.audit_findings.ODD_THRESHOLDS`. ``weights``: a torchvision
    ``model`` state_dict for the drift between ``reference`` and the other splits (needs the
    ``train`` extra). Returns an :class:`AuditResult`; writes ``features.jsonl``,
    ``audit.json``, ``report.md``, the contact sheets and (if any image was skipped)
    ``audit-errors.jsonl``. An -o that holds other files than an earlier audit's is refused
    (:func:`check_out`).
    """
    from dataprep.jobs import audit_findings as af
    from dataprep.jobs.audit_report import write_outputs
    from dataprep.jobs.output import OutputFolder
    from dataprep.runner import resolve_jobs

    if on_error not in ("skip", "raise"):
        raise UsageError(f"--on-error {on_error!r} is not supported; choose skip or raise")
    if threshold is not None and not 0 <= threshold < ph.BITS:
        raise UsageError(f"--threshold {threshold} must be between 0 and {ph.BITS - 1} bits")
    log = log or (lambda line: None)
    start = time.perf_counter()
    stream, scan_errors, inputs, total = gather(srcs, root)
    folder = OutputFolder(out)
    folder.check_target()
    folder.check_inputs(inputs)
    check_out(folder.path)
    if weights is not None:
        from dataprep.jobs.audit_drift import check_weights

        check_weights(weights)
    with folder.locked():
        path = folder.path / FEATURES_NAME
        cache = read_features(path)
        images, ids, reused = compute_features(stream, jobs=jobs, total=total,
                                          journal=path, cache=cache, max_pixels=max_pixels,
                                          progress=progress, on_error=on_error)
        rewrite_features(path, ids, images)
        findings = af.find(images, threshold=af.NEAR_THRESHOLD if threshold is None
                           else threshold, thresholds=thresholds)
        if weights is not None:
            from dataprep.jobs.audit_drift import EMBEDDINGS_NAME, drift

            findings["drift"] = drift(images, lambda: gather(srcs, root)[0], weights,
                                      model=model, size=embed_size, reference=reference,
                                      jobs=jobs, max_pixels=max_pixels, log=log, ids=ids,
                                      cache=folder.path / EMBEDDINGS_NAME)
        errors = [{"key": i.key, "path": i.path, "split": i.split, "reason": i.error or ""}
                  for i in images if i.error is not None]
        errors += [dict(e, split="") for e in scan_errors]
        files = write_outputs(folder.path, findings, errors, max_pixels=max_pixels,
                              records=(lambda: gather(srcs, root)[0]) if sheets else None)
    seconds = time.perf_counter() - start
    return AuditResult(str(folder.path), findings, [FEATURES_NAME, *files], seconds,
                       len(images) - reused, reused, resolve_jobs(jobs), errors)

