"""Tar packing: samples as the tar members a WebDataset shard holds.

What runs where the task runs (a worker): each sample becomes ``{key}.{ext}``, ``{key}.cls``
and ``{key}.json`` members, packed once into one buffer a record (:class:`PackedGroup`) that
the writing process only appends and hashes. The member names and the json are also what
readers and re-shards rely on (:func:`member_key`, :func:`sample_json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dataprep.io import tarformat
from dataprep.records import MAX_MEMBER_NAME, Sample, schema_meta, short_key

TAR_MTIME = 946684800  # 2000-01-01: fixed so equal inputs give byte-identical shards


def sample_json(sample: Sample, key: str | None = None) -> bytes:
    """The json member of ``sample``: :data:`dataprep.records.SAMPLE_SCHEMA`'s keys, always
    (null where one does not apply), then any other metadata. ``key``: the key the sample is
    stored under when it had to be shortened (``key_full`` keeps the full one)."""
    key_full = sample.key
    full_before = sample.meta.get("key_full")
    if (key in (None, sample.key) and isinstance(full_before, str)
            and member_key(full_before, sample.ext) == sample.key):
        key_full = full_before  # a sample read back whose key was shortened when written
    meta = schema_meta(sample.meta, sample.key if key is None else key, key_full)
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def member_key(key: str, ext: str) -> str:
    """The key ``key`` is stored under in a tar shard: every member name ``{key}.{field}``
    (fields ``ext``, ``cls``, ``json``) fits a 100-byte ustar name, so no reader meets a GNU
    long-name or pax header (see :func:`dataprep.records.short_key`)."""
    longest = max(len(ext.encode()), len("json"))
    return short_key(key, MAX_MEMBER_NAME - 1 - longest)


def tar_file_bytes(member_bytes: int) -> int:
    """Size of a tar file holding ``member_bytes`` of members: two zero blocks close it and
    the whole is padded to tarfile's 10240-byte records."""
    end = member_bytes + 2 * tarformat.BLOCK
    return end + (-end % tarformat.RECORD)


@dataclass(frozen=True)
class PackedGroup:
    """The samples of one record already packed as tar members, as :class:`TarShardWriter`
    writes them. Packed where the task runs (a worker), so the writing process only appends
    and hashes one ``bytes`` a record. ``len()`` is the number of samples."""

    tar: bytes
    count: int
    image_bytes: int  # sum of the samples' encoded image sizes
    shortened: tuple[tuple[str, str], ...] = ()  # (stored key, full key) of shortened keys

    def __len__(self) -> int:
        return self.count


def pack_group(samples: list[Sample]) -> PackedGroup:
    """The tar members of ``samples``: per sample ``{key}.{ext}``, ``{key}.cls``, ``{key}.json``
    (the bytes ``tarfile`` writes in GNU format, fixed owner and mtime), ``key`` shortened by
    :func:`member_key` where the names would pass 100 bytes."""
    chunks: list[bytes] = []
    shortened = []
    for sample in samples:
        key = member_key(sample.key, sample.ext)
        if key != sample.key:
            shortened.append((key, sample.key))
        chunks += tarformat.member_chunks(f"{key}.{sample.ext}", sample.image, TAR_MTIME)
        chunks += tarformat.member_chunks(f"{key}.cls", str(sample.cls).encode(), TAR_MTIME)
        chunks += tarformat.member_chunks(f"{key}.json", sample_json(sample, key), TAR_MTIME)
    return PackedGroup(b"".join(chunks), len(samples), sum(s.nbytes for s in samples),
                       tuple(shortened))


def image_bytes(group: list[Sample] | PackedGroup) -> int:
    """Encoded image bytes of one record's samples, packed or not."""
    if isinstance(group, PackedGroup):
        return group.image_bytes
    return sum(s.nbytes for s in group)


@dataclass(frozen=True)
class TarPackingTask:
    """``task`` with its samples packed as tar members (:func:`pack_group`) where it runs: for
    WebDataset output, so encoded images cross to the writing process as one buffer a record
    and the per-member work is spread over the workers."""

    task: Any

    def __call__(self, record: Any) -> PackedGroup:
        return pack_group(self.task(record))
