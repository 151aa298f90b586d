"""What the trainer reads: a data argument resolved into parts with known sample counts.

A *part* is the unit the loader hands to a worker: one tar shard (local path, ``http(s)://`` or
``pipe:`` URL) or an index range of an LMDB environment. Counts come from ``_info.json`` (timm's
schema) beside the shards, from an LMDB's ``__len__``, or, for local tars without ``_info.json``,
from reading their headers. Class names come from ``dataprep.json``, the LMDB's ``__classes__`` or
the sidecar of an LMDB in Caffe's layout.
Only stdlib here: sources resolve in the parent process, before any worker starts.
"""

from __future__ import annotations

import json
import os
import posixpath
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import MissingSourceError, SourceError
from dataprep.io.lmdbread import is_lmdb, list_lmdbs, lmdb_header
from dataprep.io.readers import expand_braces, iter_tar, list_tar_shards
from dataprep.train.cache import is_remote

LMDB_PART = 1024  # samples per LMDB part: small enough to spread a split over many workers


@dataclass(frozen=True)
class Part:
    """One tar shard, or samples ``[start, stop)`` of an LMDB environment."""

    url: str
    kind: str  # "tar" | "lmdb"
    num_samples: int | None = None  # stored samples; None when nothing says
    start: int = 0
    stop: int | None = None


@dataclass
class Source:
    spec: str
    split: str
    parts: list[Part]
    classes: list[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int | None:
        counts = [p.num_samples for p in self.parts]
        return None if any(c is None for c in counts) else sum(counts)  # type: ignore[misc]

    @property
    def remote(self) -> bool:
        return any(is_remote(p.url) for p in self.parts)


def _fetch_json(url: str, timeout_s: float = 30.0) -> Any:
    """A small JSON document over http(s), or None when the server says it is not there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310
            return json.loads(resp.read(16 << 20))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise SourceError(f"cannot read {url}: HTTP {exc.code}") from exc
    except OSError as exc:
        raise SourceError(f"cannot read {url}: {exc}") from exc


def _read_json(base: str, name: str) -> Any:
    if base.startswith(("http://", "https://")):
        return _fetch_json(base.rstrip("/") + "/" + name)
    path = Path(base) / name
    return json.loads(path.read_text()) if path.is_file() else None


def _classes(ledger: Any, split: str) -> list[str]:
    splits = (ledger or {}).get("splits", {})
    entry = splits.get(split) or next(iter(splits.values()), {})
    classes = entry.get("classes") or (ledger or {}).get("classes") or []
    return [str(c) for c in classes]


def count_tar_samples(path: str) -> int:
    return sum(1 for _ in iter_tar(path))


def _tar_parts(files: list[str], info: Any) -> list[Part]:
    """Parts of the tar ``files``, with counts matched by file name against ``_info.json``."""
    lengths: dict[str, int] = {}
    for entry in (info or {}).get("splits", {}).values():
        for name, n in zip(entry.get("filenames", []), entry.get("shard_lengths", []),
                           strict=False):
            lengths[posixpath.basename(name)] = int(n)
    parts = []
    for f in files:
        n = lengths.get(posixpath.basename(f.split("?", 1)[0]))
        if n is None and not is_remote(f):
            n = count_tar_samples(f)
        parts.append(Part(url=f, kind="tar", num_samples=n))
    return parts


def _lmdb_parts(src: str, split: str) -> Source:
    parts: list[Part] = []
    classes: list[str] = []
    for env in list_lmdbs(src, split):
        n, classes = lmdb_header(env)
        for start in range(0, n, LMDB_PART):
            stop = min(start + LMDB_PART, n)
            parts.append(Part(url=env, kind="lmdb", num_samples=stop - start, start=start,
                              stop=stop))
    return Source(src, split, parts, classes)


def resolve_source(spec: str, split: str) -> Source:
    """Resolve a data argument (directory, URL, brace pattern, ``pipe:``, LMDB) for ``split``.

    Raises :class:`SourceError` when nothing readable is found.
    """
    s = str(spec)
    if s.startswith("pipe:"):
        parts = [Part(url=u, kind="tar") for u in expand_braces(s)]
        return Source(s, split, parts)
    if s.startswith(("http://", "https://")):
        if "{" in s or s.split("?", 1)[0].endswith(".tar"):
            files = expand_braces(s)
            base = posixpath.dirname(files[0].split("?", 1)[0])
            info = _read_json(base, "_info.json")
        else:
            base = s.rstrip("/")
            info = _read_json(base, "_info.json")
            if info is None:
                raise SourceError(f"{base}/_info.json not found: a remote directory needs it to "
                                  "list its shards; pass a brace pattern of the shard URLs instead")
            entry = info.get("splits", {}).get(split)
            if entry is None:
                raise SourceError(f"{base} has no split {split!r}; it has "
                                  f"{sorted(info.get('splits', {}))}")
            files = [f"{base}/{name}" for name in entry["filenames"]]
        ledger = _read_json(base, "dataprep.json")
        return Source(s, split, _tar_parts(files, info), _classes(ledger, split))
    if "{" not in s and not os.path.exists(s):
        raise MissingSourceError(f"{s} does not exist; expected a folder of WebDataset shards "
                                 "or LMDB environments (as dataprep writes them), a .tar file, a "
                                 "brace pattern of shards, an http(s):// or pipe: URL")
    if is_lmdb(s) or (os.path.isdir(s) and os.path.isdir(os.path.join(s, f"{split}.lmdb"))):
        return _lmdb_parts(s, split)
    files = list_tar_shards(s, split)
    base = s if os.path.isdir(s) else os.path.dirname(files[0])
    info = _read_json(base, "_info.json")
    ledger = _read_json(base, "dataprep.json")
    source = Source(s, split, _tar_parts(files, info), _classes(ledger, split))
    if not source.parts:
        raise SourceError(f"{s} holds no shards for split {split!r}")
    return source


def has_split(spec: str, split: str) -> bool:
    """Whether the directory (or directory URL) ``spec`` holds a ``split`` split."""
    s = str(spec)
    if s.startswith("pipe:") or "{" in s or s.endswith(".tar"):
        return False
    try:
        info = _read_json(s, "_info.json")
    except SourceError:
        return False
    if info is not None:
        return split in info.get("splits", {})
    return os.path.isdir(s) and (
        os.path.isdir(os.path.join(s, f"{split}.lmdb"))
        or any(n.startswith(f"{split}-") and n.endswith(".tar") for n in os.listdir(s))
    )
