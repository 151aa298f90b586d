"""Sinks: ``WRITERS = {"folder": ..., "webdataset": ..., "lmdb": ...}``.

Every writer receives samples in their final order from one process, and finalizes atomically:
a shard is written under a temporary name and renamed only when whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from dataprep.io import tarformat
from dataprep.io.readers import LMDB_FORMAT, lmdb_key
from dataprep.records import Sample

TAR_MTIME = 946684800  # 2000-01-01: fixed so equal inputs give byte-identical shards
TMP_SUFFIX = ".tmp"


@dataclass
class ShardInfo:
    name: str
    num_samples: int
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return asdict(self)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sample_json(sample: Sample) -> bytes:
    return json.dumps(sample.meta, sort_keys=True, separators=(",", ":")).encode()


def _padded(n: int) -> int:
    return (n + 511) // 512 * 512


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

    def __len__(self) -> int:
        return self.count


def pack_group(samples: list[Sample]) -> PackedGroup:
    """The tar members of ``samples``: per sample ``{key}.{ext}``, ``{key}.cls``, ``{key}.json``
    (the bytes ``tarfile`` writes in GNU format, fixed owner and mtime)."""
    chunks: list[bytes] = []
    for sample in samples:
        chunks += tarformat.member_chunks(f"{sample.key}.{sample.ext}", sample.image, TAR_MTIME)
        chunks += tarformat.member_chunks(f"{sample.key}.cls", str(sample.cls).encode(),
                                          TAR_MTIME)
        chunks += tarformat.member_chunks(f"{sample.key}.json", sample_json(sample), TAR_MTIME)
    return PackedGroup(b"".join(chunks), len(samples), sum(s.nbytes for s in samples))


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


class Writer(Protocol):
    """A sink. ``write_group`` takes the samples of one record (kept together in one shard) and
    returns True when everything written *before* that group has become durable: a checkpoint
    from which :meth:`state` lets a later run resume (see ``resume=`` of each writer)."""

    def write_group(self, samples: list[Sample] | PackedGroup) -> bool: ...
    def write(self, sample: Sample) -> None: ...
    def state(self) -> dict: ...
    def close(self) -> list[ShardInfo]: ...
    def abort(self) -> None: ...


class TarShardWriter:
    """WebDataset shards ``{split}-{n:06d}.tar`` with fields ``{ext}``, ``cls``, ``json``.

    The views of one record stay in one shard: a new shard starts before a record whose samples
    would push the current one past ``max_count`` samples or ``max_bytes`` (a shard always holds
    at least one record). ``resume={"shards": [...]}`` continues after those finished shards.

    Members are packed by :mod:`dataprep.io.tarformat` (the bytes ``tarfile`` writes in GNU
    format) and hashed as they are written, so a finished shard is not read back.
    """

    def __init__(self, out_dir: str | Path, split: str, max_count: int = 10_000,
                 max_bytes: int | None = None, resume: dict | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.split = split
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.shards: list[ShardInfo] = [ShardInfo(**d) for d in (resume or {}).get("shards", [])]
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._count = 0
        self._bytes = 0

    def _path(self, index: int) -> Path:
        return self.out_dir / f"{self.split}-{index:06d}.tar"

    def _open(self) -> None:
        path = self._path(len(self.shards))
        self._file = open(str(path) + TMP_SUFFIX, "wb", buffering=1 << 20)  # noqa: SIM115
        self._hash = hashlib.sha256()
        self._count = 0
        self._bytes = 0

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._hash.update(data)
        self._file.write(data)

    def write_group(self, samples: list[Sample] | PackedGroup) -> bool:
        group = samples if isinstance(samples, PackedGroup) else pack_group(samples)
        nbytes = len(group.tar)
        checkpoint = False
        if self._file is not None and (
            self._count + group.count > self.max_count
            or (self.max_bytes is not None
                and tar_file_bytes(self._bytes + nbytes) > self.max_bytes)
        ):
            self._finish()
            checkpoint = True
        if self._file is None:
            self._open()
        self._write(group.tar)
        self._count += group.count
        self._bytes += nbytes
        return checkpoint

    def write(self, sample: Sample) -> None:
        self.write_group([sample])

    def state(self) -> dict:
        return {"shards": [s.to_json() for s in self.shards]}

    def _finish(self) -> None:
        assert self._file is not None
        self._write(tarformat.closing(self._bytes))
        self._file.flush()  # on failure (disk full), abort() still finds and removes the file
        os.fsync(self._file.fileno())
        f, self._file = self._file, None
        f.close()
        final = self._path(len(self.shards))
        os.replace(str(final) + TMP_SUFFIX, final)
        self.shards.append(ShardInfo(final.name, self._count, final.stat().st_size,
                                     self._hash.hexdigest()))

    def close(self) -> list[ShardInfo]:
        if self._file is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            try:
                f.close()  # flushes what is buffered: may fail again when the disk is full
            except OSError:
                pass
            Path(str(self._path(len(self.shards))) + TMP_SUFFIX).unlink(missing_ok=True)


class LmdbWriter:
    """One LMDB environment ``{split}.lmdb`` (layout in :mod:`dataprep.io.readers`).

    Built under ``{split}.lmdb.tmp`` and renamed when complete; the map doubles on demand;
    commits are batched (at record boundaries) every ``commit_every`` samples, and each commit
    is a checkpoint: ``resume={"count": n}`` reopens the temporary environment and continues
    at sample ``n`` (entries past it, from an interrupted run, are overwritten with equal ones).
    """

    def __init__(self, out_dir: str | Path, split: str, classes: list[str] | None = None,
                 commit_every: int = 64, map_size: int = 1 << 28, resume: dict | None = None,
                 **_: object) -> None:
        import lmdb

        self.final = Path(out_dir) / f"{split}.lmdb"
        self.tmp = Path(str(self.final) + TMP_SUFFIX)
        if resume is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.env = lmdb.open(str(self.tmp), map_size=map_size, subdir=True, lock=True,
                             metasync=False, sync=False)
        self.classes = classes or []
        self.commit_every = commit_every
        self.pending: list[tuple[bytes, bytes]] = []
        self.count = self.committed = int((resume or {}).get("count", 0))

    def _put_all(self, items: list[tuple[bytes, bytes]]) -> None:
        import lmdb

        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for k, v in items:
                        txn.put(k, v)
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def write_group(self, samples: list[Sample]) -> bool:
        checkpoint = False
        if self.count - self.committed >= self.commit_every:
            self._put_all(self.pending)
            self.pending = []
            self.committed = self.count
            checkpoint = True
        for sample in samples:
            meta = dict(sample.meta)
            meta.setdefault("key", sample.key)
            meta["ext"] = sample.ext
            i = self.count
            self.pending += [
                (lmdb_key(i, "image"), sample.image),
                (lmdb_key(i, "cls"), str(sample.cls).encode()),
                (lmdb_key(i, "json"), json.dumps(meta, sort_keys=True).encode()),
            ]
            self.count += 1
        return checkpoint

    def write(self, sample: Sample) -> None:
        self.write_group([sample])

    def state(self) -> dict:
        return {"count": self.committed}

    def close(self) -> list[ShardInfo]:
        self.pending += [
            (b"__len__", str(self.count).encode()),
            (b"__classes__", json.dumps(self.classes).encode()),
            (b"__format__", json.dumps(LMDB_FORMAT).encode()),
        ]
        self._put_all(self.pending)
        self.pending = []
        self.env.sync(True)
        self.env.close()
        # the lock file is process-local state, not data: leave only data.mdb behind
        (self.tmp / "lock.mdb").unlink(missing_ok=True)
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
        data = self.final / "data.mdb"
        return [ShardInfo(f"{self.final.name}/data.mdb", self.count, data.stat().st_size,
                          sha256_file(data))]

    def abort(self) -> None:
        """Close without finishing; the committed part stays in ``{split}.lmdb.tmp`` to resume."""
        self.env.close()


class FolderWriter:
    """``DST/<class_name>/{key}.{ext}``: the layout other tools (ImageFolder) read."""

    checkpoint_every = 64  # records; every file is written atomically, so any point is safe

    def __init__(self, out_dir: str | Path, split: str, resume: dict | None = None,
                 **_: object) -> None:
        self.out_dir = Path(out_dir)
        self.count = int((resume or {}).get("count", 0))
        self.durable = self.count  # files written before the current group
        self.groups = 0

    def write_group(self, samples: list[Sample]) -> bool:
        self.groups += 1
        checkpoint = self.groups % self.checkpoint_every == 0
        self.durable = self.count
        for sample in samples:
            self.write(sample)
        return checkpoint

    def state(self) -> dict:
        return {"count": self.durable}

    def write(self, sample: Sample) -> None:
        # class names and keys may come from untrusted shards: never let them leave out_dir
        class_name = safe_name(str(sample.meta.get("class_name", sample.cls)))
        folder = self.out_dir / class_name
        folder.mkdir(parents=True, exist_ok=True)
        key = safe_name(sample.key)
        final = folder / f"{key}.{sample.ext}"
        tmp = folder / f".{key}.{sample.ext}{TMP_SUFFIX}"
        tmp.write_bytes(sample.image)
        os.replace(tmp, final)
        self.count += 1

    def close(self) -> list[ShardInfo]:
        return []

    def abort(self) -> None:
        pass


WRITERS = {"folder": FolderWriter, "webdataset": TarShardWriter, "lmdb": LmdbWriter}


def safe_name(text: str) -> str:
    """A single safe path component: no separators, no leading dots, never empty."""
    cleaned = re.sub(r"[^\w\-.]+", "_", text).lstrip(".")  # any script's letters stay distinct
    return cleaned or "_"


def make_writer(fmt: str, out_dir: str | Path, split: str, *, max_count: int = 10_000,
                max_bytes: int | None = None, classes: list[str] | None = None,
                resume: dict | None = None) -> Writer:
    if fmt == "webdataset":
        return TarShardWriter(out_dir, split, max_count=max_count, max_bytes=max_bytes,
                              resume=resume)
    if fmt == "lmdb":
        return LmdbWriter(out_dir, split, classes=classes, resume=resume)
    if fmt == "folder":
        return FolderWriter(out_dir, split, resume=resume)
    raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(WRITERS)}")
