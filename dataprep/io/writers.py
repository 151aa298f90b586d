"""Sinks: ``WRITERS = {"folder": ..., "webdataset": ..., "lmdb": ...}``, and the LMDB sink.

Every writer receives samples in their final order from one process and writes unfinished
shards in a stage folder; a shard is renamed into place only when whole and synced (the
protocol is :class:`~dataprep.io.staging.Writer`'s, driven by :mod:`dataprep.jobs.output`).
The tar sink lives in :mod:`dataprep.io.tarsink` (its packing in :mod:`dataprep.io.tarpack`),
the folder sink in :mod:`dataprep.io.foldersink`; the LMDB sink (both layouts) here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dataprep.errors import OutputError
from dataprep.io import caffe, durable
from dataprep.io.foldersink import FolderWriter
from dataprep.io.lmdbread import LMDB_FORMAT, lmdb_key
from dataprep.io.staging import ShardInfo, Staged, StagedWriter, Writer, sha256_file
from dataprep.io.tarpack import PackedGroup
from dataprep.io.tarsink import TarShardWriter
from dataprep.records import Sample, schema_meta, short_key

# dataprep: keys %08d.image / .cls / .json (dataprep.io.lmdbread); caffe: what Caffe's
# convert_imageset --encoded writes, %08d_<key> -> caffe.Datum (dataprep.io.caffe)
LMDB_LAYOUTS = ("dataprep", "caffe")


class LmdbWriter(StagedWriter):
    """One LMDB environment ``{split}.lmdb``, in dataprep's layout (:mod:`dataprep.io.lmdbread`)
    or Caffe's (``layout="caffe"``, :mod:`dataprep.io.caffe`).

    Built in the stage folder and renamed into place when complete; the map doubles on
    demand. Samples are committed in batches (at record boundaries) of ``commit_every``
    samples, so a later run knows which commit the environment holds: dataprep's layout stores
    ``__len__`` (the samples committed) in every commit, Caffe's holds nothing but samples, so
    its entry count is that number. ``resume={"count": n}`` reopens it and continues at sample
    ``n``. Commits are synced to the disk. The Caffe layout's sidecar (class names, sample
    count) is written, synced, before the final commit: the environment is whole when the
    sidecar's count equals its entries.
    """

    def __init__(self, out_dir: str | Path, split: str, classes: list[str] | None = None,
                 commit_every: int = 64, map_size: int = 1 << 28, resume: dict | None = None,
                 stage_dir: str | Path | None = None, layout: str = "dataprep",
                 **_: object) -> None:
        if layout not in LMDB_LAYOUTS:
            raise ValueError(f"unknown LMDB layout {layout!r}; expected one of {LMDB_LAYOUTS}")
        super().__init__(out_dir, split, stage_dir)
        self.layout = layout
        self.final = self.out_dir / f"{split}.lmdb"
        self.tmp = self.stage / f"{split}.lmdb"
        if resume is None:
            durable.rmtree(self.tmp)
        # resumed: map_size 0 keeps the size the environment had grown to (its meta pages
        # then stay those of an uninterrupted run)
        self.env = self._open_env(0 if resume else map_size)
        self.classes = classes or []
        self.commit_every = commit_every
        self.pending: list[tuple[bytes, bytes]] = []
        self.count = self.committed = int((resume or {}).get("count", 0))
        self._open = True

    def _open_env(self, map_size: int) -> Any:
        import lmdb

        return lmdb.open(str(self.tmp), map_size=map_size, subdir=True, lock=True,
                         metasync=False, sync=False)

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

    def due(self, samples: list[Sample] | PackedGroup) -> bool:
        return self.count - self.committed >= self.commit_every

    def _append(self, samples: list[Sample] | PackedGroup) -> None:
        assert not isinstance(samples, PackedGroup), "LMDB takes samples, not tar members"
        for sample in samples:
            meta = schema_meta(sample.meta, sample.key, sample.meta.get("key_full"))
            meta["ext"] = sample.ext
            i = self.count
            if self.layout == "caffe":
                self.pending.append(_caffe_entry(i, sample, meta))
            else:
                self.pending += [
                    (lmdb_key(i, "image"), sample.image),
                    (lmdb_key(i, "cls"), str(sample.cls).encode()),
                    (lmdb_key(i, "json"), json.dumps(meta, sort_keys=True).encode()),
                ]
            self.count += 1

    def checkpoint(self) -> list[Staged]:
        return []  # nothing is finished before the end; commit() makes the batch durable

    def state(self) -> dict:
        return {"count": self.count}  # what the environment holds once commit() is done

    def commit(self) -> None:
        if not self._open:
            return
        if self.layout != "caffe":
            self.pending.append((b"__len__", str(self.count).encode()))
        if self.pending:
            self._put_all(self.pending)
        self.pending = []
        self.committed = self.count
        durable.sync_lmdb(self.env)
        # reopened after every commit, as a resumed run reopens it: LMDB keeps free-page
        # lists of an open environment in memory, so without this a resumed run would place
        # pages elsewhere and write other bytes
        self.env.close()
        self.env = self._open_env(0)

    def finish(self) -> list[Staged]:
        if self.layout == "caffe":
            durable.write_atomic(self.tmp / caffe.SIDECAR, json.dumps(
                caffe.sidecar(self.count, self.classes), sort_keys=True, indent=1).encode())
            return []
        self.pending += [
            (b"__classes__", json.dumps(self.classes).encode()),
            (b"__format__", json.dumps(LMDB_FORMAT).encode()),
        ]
        return []

    def finished(self) -> list[Staged]:
        """After the final commit: the environment, closed, ready to be renamed."""
        self.env.close()
        self._open = False
        # the lock file is process-local state, not data: leave only data.mdb behind
        durable.unlink(self.tmp / "lock.mdb")
        data = self.tmp / "data.mdb"
        return [Staged(self.tmp, self.final, ShardInfo(
            f"{self.final.name}/data.mdb", self.count, data.stat().st_size, sha256_file(data)))]

    def abort(self) -> None:
        """Close without finishing; the committed part stays in the stage folder to resume."""
        if self._open:
            self._open = False
            self.env.close()
        self._drop_stage()


def _caffe_entry(index: int, sample: Sample, meta: dict[str, Any]) -> tuple[bytes, bytes]:
    """Sample ``index`` as Caffe's key and serialized Datum (the json in its meta field)."""
    if index >= caffe.MAX_SAMPLES:
        raise OutputError(f"the Caffe LMDB layout holds at most {caffe.MAX_SAMPLES:,} samples "
                          "per split (its keys have 8 digits); split the output, or use "
                          "--lmdb-layout dataprep")
    try:
        channels, height, width = caffe.image_shape(sample.image)
    except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise OutputError(f"sample {sample.key!r:.120}: its image has no readable header "
                          f"({exc}); a Caffe Datum needs its height and width") from None
    datum = caffe.Datum(channels=channels, height=height, width=width, data=sample.image,
                        label=sample.cls, encoded=True,
                        meta=json.dumps(meta, sort_keys=True).encode())
    # LMDB keys hold at most 511 bytes: a longer name is shortened (the json keeps it whole)
    return (caffe.caffe_key(index, short_key(sample.key, caffe.MAX_KEY_BYTES - 9)),
            caffe.encode_datum(datum))



WRITERS = {"folder": FolderWriter, "webdataset": TarShardWriter, "lmdb": LmdbWriter}


def make_writer(fmt: str, out_dir: str | Path, split: str, *, max_count: int = 10_000,
                max_bytes: int | None = None, classes: list[str] | None = None,
                resume: dict | None = None, stage_dir: str | Path | None = None,
                lmdb_layout: str = "dataprep") -> Writer:
    """A writer for one split; ``stage_dir`` (from the output folder) puts it under the
    output folder's checkpoint protocol, without it ``close()`` renames as it goes.
    ``lmdb_layout``: ``dataprep`` or ``caffe`` (LMDB only)."""
    if fmt == "webdataset":
        return TarShardWriter(out_dir, split, max_count=max_count, max_bytes=max_bytes,
                              resume=resume, stage_dir=stage_dir)
    if fmt == "lmdb":
        return LmdbWriter(out_dir, split, classes=classes, resume=resume, stage_dir=stage_dir,
                          layout=lmdb_layout)
    if fmt == "folder":
        return FolderWriter(out_dir, split, resume=resume, stage_dir=stage_dir)
    raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(WRITERS)}")
