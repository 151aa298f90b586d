"""Recovery of an interrupted run from its journal, and :class:`SplitPlan`, what a run does
with a split. Every shard the journal names is checked (size, sha256) and renamed into place if
still staged; a finished journal is committed; otherwise the run resumes after the last
checkpoint (LMDB: the checkpoint the staged environment's last commit holds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import DataprepError
from dataprep.io import durable
from dataprep.io.caffe import SIDECAR as CAFFE_SIDECAR
from dataprep.io.lmdbread import caffe_entries, read_caffe_sidecar
from dataprep.io.staging import ShardInfo, Staged, sha256_file
from dataprep.jobs.output_files import FolderFiles, Log, finish_entry, shard_info, staged_json
from dataprep.journal import Journal, JournalState


@dataclass


class SplitPlan:
    """What a run does with one split: ``new``, ``resume`` (after ``point``, with the shards
    ``files`` already in place), or ``complete`` (left as it is)."""

    state: str
    point: dict[str, Any] | None = None
    files: list[ShardInfo] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    finished_now: bool = False  # an interrupted run's last step was done by this plan


def recover(folder: FolderFiles, split: str, fmt: str, state: JournalState, log: Log
            ) -> SplitPlan:
    """Settle what the interrupted run of ``state`` left: finish it when everything was
    written, resume it after its last checkpoint, or (a named shard being lost) start over."""
    Journal(folder.path, split).rewrite(state.header, state.checkpoints, state.finish)
    for f in state.files():
        if not _settle(folder, f):
            log(f"{split}: {f.get('name')} of the interrupted run is missing or changed; "
                "writing the split again")
            folder.remove_split(split)
            return SplitPlan("new")
    checkpoints = state.checkpoints
    if fmt == "lmdb" and state.finish is None:
        checkpoints = lmdb_checkpoints(folder, split, checkpoints)
    files = [shard_info(f) for c in checkpoints for f in c.get("files", [])]
    errors = [e for c in checkpoints for e in c.get("errors", [])]
    last = checkpoints[-1] if checkpoints else None
    if state.finish is not None or (last is not None and last.get("final")):
        if state.finish is not None:
            entry = {k: v for k, v in state.finish.items() if k != "staged"}
        else:
            staged = _staged_lmdb(folder, split) if fmt == "lmdb" else []
            # the final commit is done (an LMDB environment is whole): as finish() would,
            # journal the entry and what is still staged before renaming anything
            entry = finish_entry(state.header, last or {},
                                 files + [s.info for s in staged], errors)
            Journal(folder.path, split).append({"finish": dict(
                entry, staged=[staged_json(folder.path, s) for s in staged])})
            folder.publish(staged)
        folder.commit(split, entry, errors)
        Journal(folder.path, split).remove()
        folder.drop_stage(split)
        log(f"{split}: the interrupted run had written everything; finished its last step")
        return SplitPlan("complete", finished_now=True)
    if last is None:
        folder.drop_stage(split)
        Journal(folder.path, split).remove()
        return SplitPlan("new")
    if fmt != "lmdb":
        folder.drop_stage(split)  # only the unfinished shard was there
    # the journal goes on from exactly what is resumed: no torn last line, no checkpoint
    # an LMDB never committed (a later recovery would count it)
    Journal(folder.path, split).rewrite(state.header, checkpoints)
    return SplitPlan("resume", last, files, errors)


def _settle(folder: FolderFiles, f: dict[str, Any]) -> bool:
    """A journaled shard is in place and intact (renamed there now if it was still
    staged); False when it is neither in place nor staged intact."""
    info = shard_info(f)
    final = folder.named(str(f.get("final", info.name)))
    tmp = folder.named(str(f.get("tmp", "")))
    data_in = Path(info.name).relative_to(Path(str(f.get("final", info.name))))

    def intact(base: Path) -> bool:
        path = base / data_in if str(data_in) != "." else base
        return (path.is_file() and path.stat().st_size == info.bytes
                and sha256_file(path) == info.sha256)

    if final.exists():
        return intact(final)
    if tmp.exists() and intact(tmp):
        durable.publish(tmp, final)
        durable.fsync_dir(final.parent)
        return True
    return False


def _staged_lmdb(folder: FolderFiles, split: str) -> list[Staged]:
    """The staged environment of a split whose final commit is done, ready to rename."""
    env = folder.stage(split) / f"{split}.lmdb"
    durable.unlink(env / "lock.mdb")
    data = env / "data.mdb"
    info = ShardInfo(f"{split}.lmdb/data.mdb", int(lmdb_committed(env) or 0),
                     data.stat().st_size, sha256_file(data))
    return [Staged(env, folder.path / f"{split}.lmdb", info)]


def lmdb_checkpoints(folder: FolderFiles, split: str, checkpoints: list[dict[str, Any]],
                     ) -> list[dict[str, Any]]:
    """The checkpoints up to the one the staged environment's last commit holds (the
    journal is written before each commit, so it may be one ahead)."""
    committed = lmdb_committed(folder.stage(split) / f"{split}.lmdb")
    if committed is None:
        return []
    for i in range(len(checkpoints) - 1, -1, -1):
        if checkpoints[i].get("writer", {}).get("count") == committed:
            done = checkpoints[: i + 1]
            if done[-1].get("final") and not lmdb_closed(
                    folder.stage(split) / f"{split}.lmdb"):
                done = done[:-1]
            return done
    return []


def lmdb_committed(path: Path) -> int | None:
    """``__len__`` of the last commit of a staged LMDB environment (Caffe's layout: its entry
    count; None: no usable one)."""
    import lmdb

    if not (path / "data.mdb").is_file():
        return None
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, subdir=True, map_size=0)
        try:
            with env.begin() as txn:
                raw = txn.get(b"__len__")
                if raw is None:  # the sidecar may be ahead: the entries are what is committed
                    return caffe_entries(txn, (path / CAFFE_SIDECAR).is_file())
        finally:
            env.close()
        return int(raw)
    except (lmdb.Error, ValueError, DataprepError):
        return None


def lmdb_closed(path: Path) -> bool:
    """Whether a staged environment holds its final commit (``__format__`` is written last;
    Caffe's layout: its sidecar, written before the final commit, counts the entries)."""
    import lmdb

    try:
        env = lmdb.open(str(path), readonly=True, lock=False, subdir=True, map_size=0)
        try:
            with env.begin() as txn:
                if txn.get(b"__format__") is not None:
                    return True
                side = read_caffe_sidecar(path)
                return side is not None and caffe_entries(txn, True) == side["num_samples"]
        finally:
            env.close()
    except (lmdb.Error, DataprepError):
        return False
