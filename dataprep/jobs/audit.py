"""``dataprep audit``: per-image features on every core, journaled, then the findings.

Three stages, each its own module:

1. here: the sources (any mix of folders, lists, manifests, the folder ``split`` wrote,
   shards) become one list of audited images, each with its split;
   :mod:`dataprep.jobs.audit_features` computes per image the hashes, size and measures, on
   every core, and journals them in ``features.jsonl`` in the output folder: a rerun computes
   only the images that are new or changed;
2. :mod:`dataprep.jobs.audit_findings`: duplicates, near-duplicate clusters, leakage, label
   conflicts, odd images, per-split statistics (pure functions over the features);
3. :mod:`dataprep.jobs.audit_drift` (optional, ``--weights``) and
   :mod:`dataprep.jobs.audit_report` (``audit.json``, ``report.md``, contact sheets, all
   written atomically).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import SourceError, UsageError
from dataprep.io.decode import DEFAULT_MAX_PIXELS
from dataprep.jobs.audit_features import (
    FEATURES_NAME,
    compute_features,
    read_features,
    rewrite_features,
)
from dataprep.jobs.output import OutputFolder
from dataprep.ops import phash as ph
from dataprep.records import Record

SPLIT_ORDER = ("train", "val", "test")
Log = Callable[[str], None]


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


def _check_flags(on_error: str, threshold: int | None) -> None:
    if on_error not in ("skip", "raise"):
        raise UsageError(f"--on-error {on_error!r} is not supported; choose skip or raise")
    if threshold is not None and not 0 <= threshold < ph.BITS:
        raise UsageError(f"--threshold {threshold} must be between 0 and {ph.BITS - 1} bits")


def _output_folder(out: str | os.PathLike, inputs: list[str],
                   weights: str | os.PathLike | None) -> OutputFolder:
    """The -o of an audit, checked before any work: a folder (or creatable), outside the
    inputs, holding nothing but an earlier audit's files; and the drift weights readable."""
    folder = OutputFolder(out)
    folder.check_target()
    folder.check_inputs(inputs)
    check_out(folder.path)
    if weights is not None:
        from dataprep.jobs.audit_drift import check_weights

        check_weights(weights)
    return folder


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
    from dataprep.pool import resolve_jobs

    _check_flags(on_error, threshold)
    log = log or (lambda line: None)
    start = time.perf_counter()
    stream, scan_errors, inputs, total = gather(srcs, root)
    folder = _output_folder(out, inputs, weights)
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

