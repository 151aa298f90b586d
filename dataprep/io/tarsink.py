"""The WebDataset sink: tar shards ``{split}-{n:06d}.tar`` of packed samples."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from dataprep.errors import OutputError
from dataprep.io import durable, tarformat
from dataprep.io.staging import ShardInfo, Staged, StagedWriter
from dataprep.io.tarpack import PackedGroup, pack_group, tar_file_bytes
from dataprep.records import Sample


class TarShardWriter(StagedWriter):
    """WebDataset shards ``{split}-{n:06d}.tar`` with fields ``{ext}``, ``cls``, ``json``.

    Every member name fits the 100 bytes of a ustar header: a longer key is stored shortened
    (:func:`member_key`; the json's ``key_full`` keeps it whole); two keys of one run that
    shorten alike are an :class:`OutputError`.

    The views of one record stay in one shard: a new shard starts before a record whose samples
    would push the current one past ``max_count`` samples or ``max_bytes`` (a shard always holds
    at least one record). ``resume={"shards": n}`` continues after n finished shards.

    Members are packed by :mod:`dataprep.io.tarformat` (the bytes ``tarfile`` writes in GNU
    format) and hashed as they are written, so a finished shard is not read back.
    """

    def __init__(self, out_dir: str | Path, split: str, max_count: int = 10_000,
                 max_bytes: int | None = None, resume: dict | None = None,
                 stage_dir: str | Path | None = None) -> None:
        super().__init__(out_dir, split, stage_dir)
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.next_shard = int((resume or {}).get("shards", 0))
        self.sealed: list[Staged] = []
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._count = 0
        self._bytes = 0
        self.shortened: dict[str, str] = {}  # stored key -> full key, for this run's samples

    def _name(self, index: int) -> str:
        return f"{self.split}-{index:06d}.tar"

    def _open(self) -> None:
        path = self.stage / self._name(self.next_shard)
        self._file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
        self._hash = hashlib.sha256()
        self._count = 0
        self._bytes = 0

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._hash.update(data)
        self._file.write(data)

    def due(self, samples: list[Sample] | PackedGroup) -> bool:
        if self._file is None:
            return False
        nbytes = len(samples.tar) if isinstance(samples, PackedGroup) else None
        if self._count + len(samples) > self.max_count:
            return True
        if self.max_bytes is None:
            return False
        if nbytes is None:
            nbytes = len(pack_group(samples).tar)
        return tar_file_bytes(self._bytes + nbytes) > self.max_bytes

    def _append(self, samples: list[Sample] | PackedGroup) -> None:
        group = samples if isinstance(samples, PackedGroup) else pack_group(samples)
        for key, full in group.shortened:
            if self.shortened.setdefault(key, full) != full:
                raise OutputError(
                    f"keys {self.shortened[key]!r} and {full!r} of split {self.split!r} both "
                    f"shorten to {key!r} (tar member names are kept within 100 bytes); "
                    "rename one of the files")
        if self._file is None:
            self._open()
        self._write(group.tar)
        self._count += group.count
        self._bytes += len(group.tar)

    def state(self) -> dict:
        return {"shards": self.next_shard}

    def _seal(self) -> None:
        """Close the open shard durably under its temporary name."""
        assert self._file is not None
        self._write(tarformat.closing(self._bytes))
        f, self._file = self._file, None
        try:
            durable.fsync(f)  # on failure (disk full), abort() still finds and removes the file
        finally:
            f.close()
        name = self._name(self.next_shard)
        tmp = self.stage / name
        self.sealed.append(Staged(tmp, self.out_dir / name, ShardInfo(
            name, self._count, tmp.stat().st_size, self._hash.hexdigest())))
        self.next_shard += 1

    def checkpoint(self) -> list[Staged]:
        if self._file is not None:
            self._seal()
        sealed, self.sealed = self.sealed, []
        return sealed

    def abort(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            try:
                f.close()  # flushes what is buffered: may fail again when the disk is full
            except OSError:
                pass
            durable.unlink(self.stage / self._name(self.next_shard))
        self._drop_stage()
