"""Shard sources: WebDataset tars and LMDB environments read back as records.

A shard source lists its shards (or environments) and what their ledgers or headers say (the
class names, the sample count), then streams its samples as records that carry their encoded
bytes. A sample that cannot be used is a record with the reason (``meta[NO_IMAGE]``), counted
and listed by the job; two samples whose keys, made safe, would meet are a
:class:`SourceError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dataprep.errors import ShardError, SourceError
from dataprep.io.fields import IMAGE_FIELDS
from dataprep.io.files import read_json_file
from dataprep.io.labels import MAX_CLASSES
from dataprep.io.lmdbread import Skip, iter_lmdb_source, list_lmdbs, lmdb_header
from dataprep.io.readers import (
    ALLOWED_FIELDS,
    IGNORED,
    iter_tar,
    list_tar_shards,
    read_info,
    to_sample,
)
from dataprep.io.source import Source
from dataprep.io.tarpack import member_key
from dataprep.records import NO_IMAGE, Record, Sample, safe_key

REMOTE = ("http://", "https://", "pipe:")  # locations streamed, not listed: no ledger to read


@dataclass(frozen=True)
class _Plan:
    """What a shard source reads: its parts, (split, shard or environment) in reading order,
    and what is known before reading them."""

    kind: str  # webdataset | lmdb
    location: str
    parts: list[tuple[str, str]]
    classes: list[str]
    num: int | None  # the number of samples, when the ledger or headers tell it


def shard_source(kind: str, location: str, split: str | None) -> Source:
    """The WebDataset (``kind="webdataset"``) or LMDB source at ``location`` (one split if
    given): listed now, its samples streamed as records on every iteration."""
    plan = _lmdb_plan(location, split) if kind == "lmdb" else _tar_plan(location, split)
    source = Source(kind, location, plan.classes, None, partial(_records, plan), plan.num)
    source.splits = sorted({name for name, _ in plan.parts})
    return source


def _lmdb_plan(location: str, split: str | None) -> _Plan:
    envs = list_lmdbs(location, split)
    classes: list[str] = []
    num = 0
    for env in envs:
        n, classes = lmdb_header(env)
        num += n
    return _Plan("lmdb", location, [(split or _split_of(env, ".lmdb"), env) for env in envs],
                 classes, num)


def _tar_plan(location: str, split: str | None) -> _Plan:
    shards = list_tar_shards(location, split)
    parts = [(split or _split_of(shard, ".tar"), shard) for shard in shards]
    folder = Path(shards[0]).parent
    num: int | None = None
    info = read_info(folder) if not location.startswith(REMOTE) else None
    if info is not None:
        splits = info["splits"]
        names = [split] if split else list(splits)
        if all("num_samples" in splits.get(n, {}) for n in names):
            num = sum(splits[n]["num_samples"] for n in names)
    classes = _ledger_classes(folder) if not location.startswith(REMOTE) else []
    return _Plan("webdataset", location, parts, classes, num)


def _records(plan: _Plan) -> Iterator[Record]:
    """The records of ``plan``'s samples, in order. A source none of whose samples can be
    used is a :class:`SourceError` once all are read."""
    keys = _Keys()
    read = usable = 0
    first_skip = ""
    for part_split, part in plan.parts:
        samples: Iterator[Sample | dict | Skip]
        if plan.kind == "lmdb":
            samples = iter_lmdb_source(part)
        else:
            samples = iter_tar(part, note_ignored=True)
        for s in samples:
            r = _shard_record(s, part_split)
            keys.add(part, s, r.key)
            read += 1
            if NO_IMAGE in (r.meta or {}):
                first_skip = first_skip or str(r.meta[NO_IMAGE])
            else:
                usable += 1
            yield r
    if not usable:
        if read:
            raise SourceError(f"{plan.location}: none of its {read:,} samples can be used, "
                              f"e.g. {first_skip}")
        raise SourceError(f"{plan.location}: holds no samples (its "
                          f"{'environments' if plan.kind == 'lmdb' else 'tar shards'} are "
                          "empty); expected samples of an image and a label")


class _Keys:
    """Every key yielded (made safe), so that two samples never share one output key; the
    original of a key that safe_key changed, to name it when another collides."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.renamed: dict[str, str] = {}

    def add(self, part: str, s: Sample | dict | Skip, key: str) -> None:
        """Note the record key ``key`` of sample ``s`` of ``part``; one read before is a
        :class:`SourceError`."""
        original = s.key if not isinstance(s, dict) else str(s.get("__key__", ""))
        if key in self.seen:
            raise SourceError(_duplicate_key(part, original, self.renamed.get(key, key), key))
        self.seen.add(key)
        if original != key:
            self.renamed[key] = original


def _duplicate_key(part: str, key: str, earlier: str, safe: str) -> str:
    """The error of a shard sample whose key (made safe) was read before."""
    if key == earlier:
        how = f"sample key {key!r:.120} was read before in this source"
    else:
        how = (f"sample keys {earlier!r:.120} (read before) and {key!r:.120} both become "
               f"{safe!r:.120} once made safe ('/' -> '__', other characters -> '_')")
    return (f"{part}: {how}; two samples would share one output key: keys must be unique, "
            "rename one")


def _shard_record(s: Sample | dict | object, part_split: str) -> Record:
    """A shard sample (an LMDB :class:`Sample` or :class:`~dataprep.io.lmdbread.Skip`, or a raw tar
    sample) as a record.

    A sample that cannot be used (a tar sample without an image member, one without a label)
    becomes a record with ``data=b""`` and the reason in ``meta[NO_IMAGE]``: the task skips
    and lists it (``record_bytes``), the run goes on. A tar sample with more than one image
    member is a :class:`ShardError`."""
    if isinstance(s, Skip):
        return _skipped(s.key, s.reason, part_split)
    if isinstance(s, dict):
        where = f"{s.get('__url__')}: sample {s.get('__key__')!r:.120}"
        key = str(s.get("__key__", ""))
        images = [f for f in IMAGE_FIELDS if f in s]
        if len(images) > 1:
            raise ShardError(f"{where} has {len(images)} image members ({', '.join(images)}); "
                             "expected one image per sample: the shard is damaged or not "
                             "made for dataprep")
        if not images:
            return _skipped(key, f"{where} has no image member "
                            f"({', '.join(IMAGE_FIELDS)}); it is left out"
                            f"{_ignored_note(s)}", part_split)
        sample = to_sample(s)
        if "cls" not in s and "label" not in sample.meta:
            return _skipped(key, f"{where} has no label (no .cls member and no 'label' in "
                            f"its .json); it is left out{_ignored_note(s)}", part_split)
        s = sample
    assert isinstance(s, Sample)
    meta = dict(s.meta)
    if "split" in meta and part_split:  # the shard's own split name is the truth
        meta["split"] = part_split
    return Record(key=_full_key(s, meta), path=str(meta.get("path", "")), label=s.cls,
                  class_name=str(meta.get("class_name", s.cls)), split=part_split,
                  data=s.image, ext=s.ext, meta=meta)


def _full_key(s: Sample, meta: dict) -> str:
    """The record key of a shard sample: its full key when the sample was stored under a
    shortened one (``json.key_full``, which must shorten to the stored key), so a re-shard
    shortens it alike and keeps ``key_full``; else the stored key made safe."""
    full = meta.get("key_full")
    if (isinstance(full, str) and full != s.key and safe_key(full) == full
            and member_key(full, s.ext) == s.key):
        del meta["key_full"]
        return full
    return safe_key(s.key)


def _skipped(key: str, reason: str, part_split: str) -> Record:
    return Record(key=safe_key(key), path="", label=-1, class_name="", split=part_split,
                  data=b"", ext="", meta={NO_IMAGE: reason})


def _ignored_note(s: dict) -> str:
    """Why a tar sample's dotted members (``a.b.c.png``) were not read, or ""."""
    names = s.get(IGNORED)
    if not names:
        return ""
    name = names[0]
    base = name.rsplit("/", 1)[-1]
    stem, ext = base.rsplit(".", 1)
    fixed = name[: len(name) - len(base)] + stem.replace(".", "_") + "." + ext
    more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
    return (f"; member {name!r:.120}{more} was not read: a webdataset key ends at the first "
            f"dot of the file name, so its field is {base.split('.', 1)[1]!r:.40}, not one "
            f"of {', '.join(sorted(ALLOWED_FIELDS))}: rename it {fixed!r:.120}")


def _ledger_classes(folder: Path) -> list[str]:
    """The class names a shard folder's ``dataprep.json`` records ([] without one); a damaged
    ledger is a :class:`SourceError` naming it."""
    path = folder / "dataprep.json"
    if not os.path.lexists(path):
        return []
    ledger = read_json_file(path, SourceError)
    splits = ledger.get("splits") if isinstance(ledger, dict) else None
    if not isinstance(splits, dict):
        raise SourceError(f"{path}: damaged, no 'splits' object; remove it to read the shards "
                          "without it (class names then come from the samples)")
    for entry in splits.values():
        names = entry.get("classes") if isinstance(entry, dict) else None
        if names:
            if not isinstance(names, list) or not all(isinstance(c, str) for c in names) \
                    or len(names) > MAX_CLASSES:
                raise SourceError(f"{path}: 'classes' is not a list of class names; the "
                                  "ledger is damaged")
            return names
    return []


def _split_of(path: str, suffix: str) -> str:
    """Split name of a shard file or LMDB: ``val-000003.tar`` -> val, ``train.lmdb`` -> train;
    "" when the name follows neither pattern (the job's default split is used)."""
    name = Path(path).name
    if suffix == ".tar":
        m = re.fullmatch(r"(.+)-\d+\.tar", name)
        return m.group(1) if m else ""
    return name[: -len(suffix)] if name.endswith(suffix) else ""

