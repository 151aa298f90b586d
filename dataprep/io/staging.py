"""What every sink shares: finished shards staged under temporary names, the checkpoint
protocol (:class:`Writer`) and its base class (:class:`StagedWriter`).

Every writer receives samples in their final order from one process and writes unfinished
shards in a stage folder; a shard is renamed into place only when whole and synced (the
protocol is driven by :mod:`dataprep.jobs.output`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from dataprep.io import durable
from dataprep.io.tarpack import PackedGroup
from dataprep.records import Sample


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


@dataclass(frozen=True)
class Staged:
    """A finished shard (a file, or an LMDB folder) made durable under a temporary name in the
    split's stage folder, not yet renamed into place. ``info.name`` is the shard's name in the
    output folder (``train-000003.tar``, ``train.lmdb/data.mdb``, ``cat/img_v0.jpg``)."""

    tmp: Path
    final: Path
    info: ShardInfo


STAGE_NAME = ".dataprep-tmp"  # per split, STAGE_NAME/{split}/ holds unfinished files


class Writer(Protocol):
    """A sink for one split. Samples arrive a record at a time (the views of one record stay
    in one shard). The output folder drives its checkpoints:

    1. ``due(group)``: a checkpoint should come before this group;
    2. ``checkpoint()``: make everything written so far durable; return the shards that are
       now finished (under temporary names);
    3. the output folder journals ``state()`` and those shards;
    4. ``commit()``: make the journaled state real (LMDB: commit the transaction);
    5. the output folder renames the finished shards into place.

    ``finish()`` ends the split the same way (steps 2-5) and ``finished()`` returns what the
    final commit produced (LMDB: the environment). Used alone (tests, scripts), ``close()``
    does all of it and returns the shards; ``abort()`` drops what is unfinished.
    """

    def due(self, samples: list[Sample] | PackedGroup) -> bool: ...
    def write_group(self, samples: list[Sample] | PackedGroup) -> None: ...
    def write(self, sample: Sample) -> None: ...
    def checkpoint(self) -> list[Staged]: ...
    def state(self) -> dict: ...
    def commit(self) -> None: ...
    def finish(self) -> list[Staged]: ...
    def finished(self) -> list[Staged]: ...
    def close(self) -> list[ShardInfo]: ...
    def abort(self) -> None: ...


class StagedWriter:
    """What the writers share: the stage folder, and ``close()`` for use without an output
    folder (every finished shard is renamed into place at once)."""

    def __init__(self, out_dir: str | Path, split: str, stage_dir: str | Path | None) -> None:
        self.out_dir = Path(out_dir)
        self.split = split
        self.alone = stage_dir is None
        self.stage = Path(stage_dir) if stage_dir is not None else (
            self.out_dir / STAGE_NAME / split)
        self.stage.mkdir(parents=True, exist_ok=True)
        self.published: list[ShardInfo] = []

    def write(self, sample: Sample) -> None:
        self.write_group([sample])

    def write_group(self, samples: list[Sample] | PackedGroup) -> None:
        """Write one record's samples (used alone: after a checkpoint when one is due)."""
        if self.alone and self.due(samples):
            staged = self.checkpoint()
            self.commit()
            self._publish(staged)
        self._append(samples)

    def _publish(self, staged: list[Staged]) -> None:
        for s in staged:
            durable.publish(s.tmp, s.final)
            self.published.append(s.info)

    def close(self) -> list[ShardInfo]:
        """Finish and rename every shard into place (use without an output folder)."""
        staged = self.finish()
        self.commit()
        self._publish(staged + self.finished())
        durable.rmtree(self.stage)  # only empty folders are left there
        try:
            self.stage.parent.rmdir()
        except OSError:
            pass
        return self.published

    def _drop_stage(self) -> None:
        """Used alone, an aborted writer leaves nothing unfinished (nothing could resume it)."""
        if self.alone:
            durable.rmtree(self.stage)
            try:
                self.stage.parent.rmdir()
            except OSError:
                pass

    # the protocol methods every writer defines
    def due(self, samples: list[Sample] | PackedGroup) -> bool:
        raise NotImplementedError

    def _append(self, samples: list[Sample] | PackedGroup) -> None:
        raise NotImplementedError

    def checkpoint(self) -> list[Staged]:
        raise NotImplementedError

    def commit(self) -> None:
        pass

    def finish(self) -> list[Staged]:
        return self.checkpoint()

    def finished(self) -> list[Staged]:
        return []
