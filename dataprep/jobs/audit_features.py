"""The features ``dataprep audit`` computes per image, and their journal ``features.jsonl``.

A worker task (:class:`FeatureTask`) computes per image the sha256 of its bytes and of its
decoded pixels, perceptual hashes of it and of its mirror (:mod:`dataprep.ops.phash`), its
size and measures. Results come back in input order through the runner and are appended,
synced, to ``features.jsonl``: a rerun reads it and computes only the images that are new or
changed (:func:`identity`: same path, size and modification time, or the same bytes for shard
samples). ``dataprep split --group-by duplicates`` computes and reuses the same features.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep.errors import ImageError
from dataprep.io import durable
from dataprep.io.decode import DEFAULT_MAX_PIXELS, open_image, record_bytes
from dataprep.ops import phash as ph
from dataprep.records import Record

FEATURES_NAME = "features.jsonl"
FEATURES_VERSION = 1  # bump when a feature's definition changes: older lines are recomputed
SYNC_EVERY = 64  # journal lines between fsyncs (a kill loses at most these)


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

    from dataprep.pool import resolve_jobs
    from dataprep.runner import map_records

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
