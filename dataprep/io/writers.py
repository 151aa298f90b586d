"""Sinks: ``WRITERS = {"folder": ..., "webdataset": ..., "lmdb": ...}``.

Every writer receives samples in their final order from one process and writes unfinished
shards in a stage folder; a shard is renamed into place only when whole and synced (the
protocol is :class:`Writer`'s, driven by :mod:`dataprep.jobs.output`).
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from dataprep.errors import OutputError
from dataprep.io import caffe, durable, tarformat
from dataprep.io.lmdbread import LMDB_FORMAT, lmdb_key
from dataprep.records import MAX_MEMBER_NAME, Sample, schema_meta, short_key
from dataprep.settings import RunSetting

TAR_MTIME = 946684800  # 2000-01-01: fixed so equal inputs give byte-identical shards


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


@dataclass(frozen=True)
class Staged:
    """A finished shard (a file, or an LMDB folder) made durable under a temporary name in the
    split's stage folder, not yet renamed into place. ``info.name`` is the shard's name in the
    output folder (``train-000003.tar``, ``train.lmdb/data.mdb``, ``cat/img_v0.jpg``)."""

    tmp: Path
    final: Path
    info: ShardInfo


MAX_FILE_NAME = 255  # bytes of one file name on common file systems
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


class _StagedWriter:
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


class TarShardWriter(_StagedWriter):
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


LMDB_LAYOUTS = ("dataprep", "caffe")
LMDB_LAYOUT = RunSetting("--lmdb-layout", LMDB_LAYOUTS, "dataprep")


def lmdb_layout(layout: str) -> AbstractContextManager[None]:
    """Write the LMDB output of the jobs run inside in ``layout``: ``dataprep`` (the default,
    see :mod:`dataprep.io.readers`) or ``caffe`` (what Caffe's ``convert_imageset --encoded``
    writes, see :mod:`dataprep.io.caffe`). The CLI's ``--lmdb-layout`` sets it."""
    return LMDB_LAYOUT.use(layout)


def current_lmdb_layout() -> str:
    """The layout :func:`lmdb_layout` set (``dataprep`` outside it)."""
    return LMDB_LAYOUT.current()


class LmdbWriter(_StagedWriter):
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
        LMDB_LAYOUT.check(layout)
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


class FolderWriter(_StagedWriter):
    """``DST/<class_name>/{key}.{ext}``: the layout other tools (ImageFolder) read.

    Every file is one shard of the ledger (name, size, sha256). Files are written and synced
    in the stage folder and renamed into place at each checkpoint (every
    ``checkpoint_every`` records). Two class names that map to one folder name are an error.
    """

    checkpoint_every = 64  # records

    def __init__(self, out_dir: str | Path, split: str, resume: dict | None = None,
                 stage_dir: str | Path | None = None, **_: object) -> None:
        super().__init__(out_dir, split, stage_dir)
        self.count = int((resume or {}).get("count", 0))
        self.groups = 0
        self.sealed: list[Staged] = []
        self.folders: dict[str, str] = {}  # folder name -> the class name written there

    def due(self, samples: list[Sample] | PackedGroup) -> bool:
        return self.groups >= self.checkpoint_every

    def _append(self, samples: list[Sample] | PackedGroup) -> None:
        assert not isinstance(samples, PackedGroup), "folders take samples, not tar members"
        self.groups += 1
        for sample in samples:
            self._write_file(sample)

    def _write_file(self, sample: Sample) -> None:
        # class names and keys may come from untrusted shards: never let them leave out_dir
        class_name = str(sample.meta.get("class_name", sample.cls))
        folder = safe_name(class_name)
        if self.folders.setdefault(folder, class_name) != class_name:
            raise OutputError(f"classes {self.folders[folder]!r} and {class_name!r} would both "
                              f"be written to the folder {folder!r}; rename one of them")
        # a file name fits the 255 bytes file systems allow (a longer key is shortened)
        stem = short_key(safe_name(sample.key), MAX_FILE_NAME - 1 - len(sample.ext))
        name = f"{folder}/{stem}.{sample.ext}"
        tmp = self.stage / name
        tmp.parent.mkdir(exist_ok=True)
        with open(tmp, "xb") as f:
            f.write(sample.image)
            durable.fsync(f)
        self.sealed.append(Staged(tmp, self.out_dir / name, ShardInfo(
            name, 1, len(sample.image), hashlib.sha256(sample.image).hexdigest())))
        self.count += 1

    def checkpoint(self) -> list[Staged]:
        self.groups = 0
        sealed, self.sealed = self.sealed, []
        return sealed

    def state(self) -> dict:
        return {"count": self.count}

    def abort(self) -> None:
        self._drop_stage()  # in a job, the output folder removes the stage folder


WRITERS = {"folder": FolderWriter, "webdataset": TarShardWriter, "lmdb": LmdbWriter}


def safe_name(text: str) -> str:
    """A single safe path component: no separators, no leading dots, never empty."""
    cleaned = re.sub(r"[^\w\-.]+", "_", text).lstrip(".")  # any script's letters stay distinct
    return cleaned or "_"


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
