"""Sinks: ``WRITERS = {"folder": ..., "webdataset": ..., "lmdb": ...}``.

Every writer receives samples in their final order from one process, and finalizes atomically:
a shard is written under a temporary name and renamed only when whole (DESIGN 6).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

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


class Writer(Protocol):
    def write(self, sample: Sample) -> None: ...
    def close(self) -> list[ShardInfo]: ...
    def abort(self) -> None: ...


class TarShardWriter:
    """WebDataset shards ``{split}-{n:06d}.tar`` with fields ``{ext}``, ``cls``, ``json``.

    A new shard starts when the current one holds ``max_count`` samples or the next sample
    would push it past ``max_bytes`` (a shard always holds at least one sample).
    """

    def __init__(self, out_dir: str | Path, split: str, max_count: int = 10_000,
                 max_bytes: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.split = split
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.shards: list[ShardInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0
        self._bytes = 0

    @staticmethod
    def _member_bytes(size: int) -> int:
        return 512 + (size + 511) // 512 * 512

    def _sample_bytes(self, sample: Sample, meta: bytes) -> int:
        return sum(self._member_bytes(n) for n in (len(sample.image), len(str(sample.cls)), len(meta)))

    def _path(self, index: int) -> Path:
        return self.out_dir / f"{self.split}-{index:06d}.tar"

    def _open(self) -> None:
        path = self._path(len(self.shards))
        self._tar = tarfile.open(str(path) + TMP_SUFFIX, "w", format=tarfile.GNU_FORMAT)
        self._count = 0
        self._bytes = 0

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = TAR_MTIME
        info.mode = 0o644
        info.uname = info.gname = ""
        assert self._tar is not None
        self._tar.addfile(info, io.BytesIO(data))

    def write(self, sample: Sample) -> None:
        meta = sample_json(sample)
        nbytes = self._sample_bytes(sample, meta)
        if self._tar is not None and (
            self._count >= self.max_count
            or (self.max_bytes is not None and self._bytes + nbytes > self.max_bytes)
        ):
            self._finish()
        if self._tar is None:
            self._open()
        self._add(f"{sample.key}.{sample.ext}", sample.image)
        self._add(f"{sample.key}.cls", str(sample.cls).encode())
        self._add(f"{sample.key}.json", meta)
        self._count += 1
        self._bytes += nbytes

    def _finish(self) -> None:
        assert self._tar is not None
        self._tar.close()
        self._tar = None
        final = self._path(len(self.shards))
        tmp = Path(str(final) + TMP_SUFFIX)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self.shards.append(ShardInfo(final.name, self._count, final.stat().st_size, sha256_file(final)))

    def close(self) -> list[ShardInfo]:
        if self._tar is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
            Path(str(self._path(len(self.shards))) + TMP_SUFFIX).unlink(missing_ok=True)


class LmdbWriter:
    """One LMDB environment ``{split}.lmdb`` (layout in :mod:`dataprep.io.readers`).

    Built under ``{split}.lmdb.tmp`` and renamed when complete; the map doubles on demand;
    commits are batched every ``commit_every`` samples.
    """

    def __init__(self, out_dir: str | Path, split: str, classes: list[str] | None = None,
                 commit_every: int = 256, map_size: int = 1 << 28, **_: object) -> None:
        import lmdb

        self.final = Path(out_dir) / f"{split}.lmdb"
        self.tmp = Path(str(self.final) + TMP_SUFFIX)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.env = lmdb.open(str(self.tmp), map_size=map_size, subdir=True, lock=True,
                             metasync=False, sync=False)
        self.classes = classes or []
        self.commit_every = commit_every
        self.pending: list[tuple[bytes, bytes]] = []
        self.count = 0

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

    def write(self, sample: Sample) -> None:
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
        if self.count % self.commit_every == 0:
            self._put_all(self.pending)
            self.pending = []

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
        self.env.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class FolderWriter:
    """``DST/<class_name>/{key}.{ext}``: the layout other tools (ImageFolder) read."""

    def __init__(self, out_dir: str | Path, split: str, **_: object) -> None:
        self.out_dir = Path(out_dir)
        self.count = 0
        self.bytes = 0

    def write(self, sample: Sample) -> None:
        class_name = str(sample.meta.get("class_name", sample.cls))
        folder = self.out_dir / class_name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{sample.key}.{sample.ext}"
        tmp = folder / f".{sample.key}.{sample.ext}{TMP_SUFFIX}"
        tmp.write_bytes(sample.image)
        os.replace(tmp, final)
        self.count += 1
        self.bytes += len(sample.image)

    def close(self) -> list[ShardInfo]:
        return []

    def abort(self) -> None:
        pass


WRITERS = {"folder": FolderWriter, "webdataset": TarShardWriter, "lmdb": LmdbWriter}


def make_writer(fmt: str, out_dir: str | Path, split: str, *, max_count: int = 10_000,
                max_bytes: int | None = None, classes: list[str] | None = None) -> Writer:
    if fmt == "webdataset":
        return TarShardWriter(out_dir, split, max_count=max_count, max_bytes=max_bytes)
    if fmt == "lmdb":
        return LmdbWriter(out_dir, split, classes=classes)
    if fmt == "folder":
        return FolderWriter(out_dir, split)
    raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(WRITERS)}")
