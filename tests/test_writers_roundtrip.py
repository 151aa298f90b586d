"""Every writer in ``WRITERS``: write, then read back with the stock reader of its format.

WebDataset shards are read with ``webdataset.WebDataset`` itself, LMDB with plain ``lmdb``
(the layout documented in ``dataprep.io.readers``), folders through the filesystem. Ledgers:
``_info.json`` in timm's schema, ``dataprep.json`` with per-shard sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from dataprep.io.lmdbread import LMDB_FORMAT
from dataprep.io.readers import iter_samples
from dataprep.io.tarsink import TarShardWriter
from dataprep.io.writers import WRITERS, LmdbWriter, make_writer
from dataprep.jobs.shard import shard
from dataprep.records import SAMPLE_SCHEMA, Sample


@pytest.fixture
def samples(gradient, encode) -> list[Sample]:
    """Eleven samples of mixed formats, labels and metadata (unicode included)."""
    out = []
    fmts = [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")]
    for i in range(11):
        ext, pil = fmts[i % 3]
        img = gradient(20 + i, 15 + 2 * i)
        meta = {"key": f"cls{i % 4}__img-{i:02d}", "label": i % 4, "class_name": f"cls{i % 4}",
                "note": "café ☕" if i == 3 else "", "size": [img.width, img.height]}
        out.append(Sample(meta["key"], encode(img, pil), ext, i % 4, meta))
    return out


def read_webdataset(out_dir: Path, split: str) -> list[dict]:
    import webdataset as wds

    urls = sorted(str(p) for p in out_dir.glob(f"{split}-*.tar"))
    got = []
    for d in wds.WebDataset(urls, shardshuffle=False):
        ext = next(e for e in ("jpg", "png", "webp") if e in d)
        got.append({"key": d["__key__"], "ext": ext, "image": d[ext], "cls": int(d["cls"]),
                    "meta": json.loads(d["json"])})
    return got


def read_lmdb(out_dir: Path, split: str) -> list[dict]:
    import lmdb

    env = lmdb.open(str(out_dir / f"{split}.lmdb"), readonly=True, lock=False, subdir=True)
    got = []
    with env.begin() as txn:
        assert json.loads(txn.get(b"__format__")) == LMDB_FORMAT
        classes = json.loads(txn.get(b"__classes__"))
        assert classes == ["cls0", "cls1", "cls2", "cls3"]
        for i in range(int(txn.get(b"__len__"))):
            meta = json.loads(txn.get(f"{i:08d}.json".encode()))
            got.append({"key": meta["key"], "ext": meta["ext"],
                        "image": txn.get(f"{i:08d}.image".encode()),
                        "cls": int(txn.get(f"{i:08d}.cls".encode())), "meta": meta})
        n = txn.stat()["entries"]
    env.close()
    assert n == 3 * len(got) + 3, "unexpected entries in the LMDB"
    return got


def read_folder(out_dir: Path, split: str) -> list[dict]:
    got = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        class_name = path.parent.name
        got.append({"key": path.stem, "ext": path.suffix[1:], "image": path.read_bytes(),
                    "cls": int(class_name[3:]), "meta": None})
    return got


READERS = {"webdataset": read_webdataset, "lmdb": read_lmdb, "folder": read_folder}


def test_every_writer_has_a_round_trip_reader():
    assert set(READERS) == set(WRITERS)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_write_then_read_back_with_the_stock_reader(fmt, samples, tmp_path):
    writer = make_writer(fmt, tmp_path, "train", max_count=4,
                         classes=["cls0", "cls1", "cls2", "cls3"])
    for s in samples:
        writer.write(s)
    writer.close()
    got = READERS[fmt](tmp_path, "train")
    if fmt == "folder":  # no order in a folder; compare as sets
        got = sorted(got, key=lambda d: d["key"])
        want = sorted(samples, key=lambda s: s.key)
    else:
        want = samples
    assert [g["key"] for g in got] == [s.key for s in want]
    for g, s in zip(got, want, strict=True):
        assert g["ext"] == s.ext
        assert g["image"] == s.image
        assert g["cls"] == s.cls
        if fmt == "lmdb":  # the same schema as the tar json, and the image's format
            assert g["meta"] == dict(dict.fromkeys(SAMPLE_SCHEMA), **s.meta, key_full=s.key,
                                     ext=s.ext)
        elif fmt == "webdataset":  # the one schema: every key, null where it does not apply
            assert g["meta"] == dict(dict.fromkeys(SAMPLE_SCHEMA), **s.meta, key_full=s.key)
            assert g["meta"]["source"] is None and g["meta"]["views"] is None
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*"))


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_dataprep_readers_read_what_the_writers_wrote(fmt, samples, tmp_path):
    writer = make_writer(fmt, tmp_path, "val", max_count=5, classes=["a"])
    for s in samples:
        writer.write(s)
    writer.close()
    got = list(iter_samples(tmp_path, "val"))
    assert [(g.key, g.ext, g.cls, g.image) for g in got] == [
        (s.key, s.ext, s.cls, s.image) for s in samples]
    assert got[3].meta["note"] == "café ☕"


def test_tar_members_are_reproducible(samples, tmp_path):
    w = TarShardWriter(tmp_path, "train")
    for s in samples:
        w.write(s)
    (info,) = w.close()
    with tarfile.open(tmp_path / info.name) as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == [f"{samples[0].key}.jpg", f"{samples[0].key}.cls",
                                             f"{samples[0].key}.json"]
    assert {m.mtime for m in members} == {946684800}
    assert {(m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, "", "", 0o644)}


def _stored_key(key: str) -> str:
    """The rule for keys of tar members, restated: a key whose "{key}.json" would pass 100
    bytes keeps its first 84 bytes, then "~" and 10 hex digits of its sha1."""
    raw = key.encode()
    if len(raw) + len(".json") <= 100:
        return key
    return raw[:84].decode("utf-8", "ignore") + "~" + hashlib.sha1(raw).hexdigest()[:10]


def _tarfile_shard(groups: list[list[Sample]]) -> bytes:
    """What ``tarfile`` writes (GNU format) for the samples' members, for comparison."""
    from dataprep.io.tarpack import TAR_MTIME, sample_json

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for s in (s for g in groups for s in g):
            k = _stored_key(s.key)
            for name, data in ((f"{k}.{s.ext}", s.image), (f"{k}.cls", str(s.cls).encode()),
                               (f"{k}.json", sample_json(s, k))):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_groups_packed_in_workers_write_what_tarfile_writes(samples, tmp_path, gradient,
                                                             encode):
    from dataprep.io.tarpack import pack_group

    long_key = "k" * 150  # stored shortened: no GNU long-name member
    groups = [samples[i:i + 3] for i in range(0, len(samples), 3)]
    groups.append([Sample(long_key, encode(gradient(9, 7), "PNG"), "png", 1, {"key": long_key})])
    w = TarShardWriter(tmp_path, "train", max_count=4, max_bytes=60_000)
    for g in groups:
        group = pack_group(g)
        assert len(group) == len(g)
        assert group.image_bytes == sum(len(s.image) for s in g)
        w.write_group(group)
    shards = w.close()
    assert len(shards) > 1 and sum(s.num_samples for s in shards) == 12
    # each shard holds whole groups, in order, as tarfile would write them
    start = 0
    for info in shards:
        end, count = start, 0
        while count < info.num_samples:
            count += len(groups[end])
            end += 1
        assert count == info.num_samples
        assert (tmp_path / info.name).read_bytes() == _tarfile_shard(groups[start:end])
        start = end
    assert start == len(groups)


def test_max_count_cuts_shards(samples, tmp_path):
    w = TarShardWriter(tmp_path, "train", max_count=3)
    for s in samples:
        w.write(s)
    shards = w.close()
    assert [s.name for s in shards] == [f"train-{i:06d}.tar" for i in range(4)]
    assert [s.num_samples for s in shards] == [3, 3, 3, 2]
    keys = [[d["key"] for d in read_webdataset_one(tmp_path / s.name)] for s in shards]
    assert sum(keys, []) == [s.key for s in samples]


def read_webdataset_one(path: Path) -> list[dict]:
    import webdataset as wds

    return [{"key": d["__key__"]} for d in wds.WebDataset([str(path)], shardshuffle=False)]


@pytest.mark.parametrize("max_bytes", [6_000, 15_000, 25_000, 60_000])
def test_max_bytes_keeps_every_shard_file_under_the_limit(samples, tmp_path, max_bytes):
    w = TarShardWriter(tmp_path, "train", max_bytes=max_bytes)
    for s in samples:
        w.write(s)
    shards = w.close()
    assert sum(s.num_samples for s in shards) == len(samples)
    for s in shards:
        size = (tmp_path / s.name).stat().st_size
        assert size == s.bytes
        if s.num_samples > 1:  # a single sample larger than the limit still gets a shard
            assert size <= max_bytes, f"{s.name}: {size} bytes > --max-bytes {max_bytes}"
    if max_bytes >= 60_000:
        assert len(shards) == 1


def tar_size_with(shard_path: Path, extra: Sample) -> int:
    """Size of the shard's tar had ``extra`` been appended (built independently with tarfile)."""
    import io

    buf = io.BytesIO()
    with tarfile.open(shard_path) as src, tarfile.open(fileobj=buf, mode="w",
                                                       format=tarfile.GNU_FORMAT) as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
        meta = json.dumps(extra.meta, sort_keys=True, separators=(",", ":")).encode()
        members = ((f"{extra.key}.{extra.ext}", extra.image),
                   (f"{extra.key}.cls", str(extra.cls).encode()), (f"{extra.key}.json", meta))
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return len(buf.getvalue())


def test_max_bytes_packs_greedily(samples, tmp_path):
    """A shard is closed only when the next sample would push the file past the limit."""
    limit = 15_000
    w = TarShardWriter(tmp_path, "train", max_bytes=limit)
    for s in samples:
        w.write(s)
    shards = w.close()
    assert len(shards) > 2
    start = 0
    for s in shards[:-1]:
        start += s.num_samples
        assert tar_size_with(tmp_path / s.name, samples[start]) > limit, s


def test_long_keys_are_shortened_within_100_byte_names(gradient, encode, tmp_path):
    """Keys whose member names would pass 100 bytes are cut and given a hash of the whole key
    (kept in json.key_full); no member gets a GNU long-name or pax header; the size budget
    still holds."""
    img = encode(gradient(10, 10), "PNG")
    w = TarShardWriter(tmp_path, "train", max_bytes=12_000)
    keys = [f"{'k' * 150}{i:03d}" for i in range(10)] + ["é" * 60, "short"]
    for key in keys:
        w.write(Sample(key, img, "png", 0, {"key": key}))
    shards = w.close()
    for s in shards:
        assert s.bytes <= 12_000 or s.num_samples == 1, s
    stored = [d["key"] for s in shards for d in read_webdataset_one(tmp_path / s.name)]
    assert stored == [_stored_key(k) for k in keys]
    assert len(set(stored)) == len(keys) and stored[-1] == "short"
    assert "~" in stored[0] and stored[-2].startswith("é" * 42 + "~")
    for s in shards:
        with tarfile.open(tmp_path / s.name) as tar:
            members = tar.getmembers()
            metas = [json.loads(tar.extractfile(m).read()) for m in members
                     if m.name.endswith(".json")]
        assert {m.type for m in members} == {tarfile.REGTYPE}  # no "L" / "x" headers
        assert max(len(m.name.encode()) for m in members) <= 100
        raw = (tmp_path / s.name).read_bytes()
        assert b"././@LongLink" not in raw and b"PaxHeader" not in raw
        for meta in metas:
            assert meta["key_full"] in keys and _stored_key(meta["key_full"]) == meta["key"]


def test_two_keys_shortened_alike_are_an_error(tmp_path, gradient, encode, monkeypatch):
    from dataprep.errors import OutputError
    from dataprep.io import tarpack

    # a real sha1 collision cannot be made; make the hash digits too few to tell keys apart
    monkeypatch.setattr(tarpack, "short_key", lambda key, limit: key[:limit])
    img = encode(gradient(10, 10), "PNG")
    w = TarShardWriter(tmp_path, "train")
    w.write(Sample("a" * 120 + "1", img, "png", 0, {}))
    with pytest.raises(OutputError, match="both shorten to"):
        w.write(Sample("a" * 120 + "2", img, "png", 0, {}))
    w.abort()


def test_lmdb_map_grows_on_demand(samples, tmp_path):
    w = LmdbWriter(tmp_path, "train", classes=["cls0", "cls1", "cls2", "cls3"], map_size=1 << 15,
                   commit_every=4)
    for _ in range(6):
        for s in samples:
            w.write(s)
    (info,) = w.close()
    assert info.num_samples == 66
    assert len(read_lmdb(tmp_path, "train")) == 66
    assert sorted(p.name for p in (tmp_path / "train.lmdb").iterdir()) == ["data.mdb"]


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_abort_leaves_no_partial_shard(fmt, samples, tmp_path):
    w = make_writer(fmt, tmp_path, "train", max_count=4)
    for s in samples[:6]:
        w.write(s)
    w.abort()
    finished = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp"))
    # webdataset keeps the finished first shard (it is whole); LMDB has no finished part
    assert finished == (["train-000000.tar"] if fmt == "webdataset" else [])
    if fmt == "webdataset":
        assert [s.key for s in iter_samples(tmp_path / "train-000000.tar")] == [
            s.key for s in samples[:4]]


# --- ledgers -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_ledgers_describe_the_shards(fmt, image_folder, tmp_path):
    out = tmp_path / "out"
    report = shard(image_folder, out, fmt=fmt, max_count=5, jobs=1, split="train")
    ledger = json.loads((out / "dataprep.json").read_text())
    entry = ledger["splits"]["train"]
    assert entry["command"] == "shard" and entry["format"] == fmt
    assert entry["records_in"] == entry["samples_out"] == 12 and entry["skipped"] == 0
    assert entry["classes"] == ["ant", "bee", "cat"]
    assert entry["params"]["max_count"] == 5
    assert "dataprep_version" in ledger
    assert entry["shards"], "no shard listed"
    for s in entry["shards"]:
        path = out / s["name"]
        data = path.read_bytes()
        assert s["sha256"] == hashlib.sha256(data).hexdigest()
        assert s["bytes"] == len(data)
    assert sum(s["num_samples"] for s in entry["shards"]) == 12
    assert [s.to_json() for s in report.shards["train"]] == entry["shards"]
    if fmt == "webdataset":
        assert [s["num_samples"] for s in entry["shards"]] == [5, 5, 2]
        info = json.loads((out / "_info.json").read_text())
        split = info["splits"]["train"]
        # timm's reader_wds needs these keys (name, num_samples, filenames, shard_lengths)
        assert set(split) >= {"name", "num_samples", "filenames", "shard_lengths"}
        assert split["name"] == "train" and split["num_samples"] == 12
        assert split["filenames"] == [f"train-{i:06d}.tar" for i in range(3)]
        assert split["shard_lengths"] == [5, 5, 2]
        assert all((out / f).is_file() for f in split["filenames"])
        assert isinstance(info["name"], str)
    else:
        assert not (out / "_info.json").exists()


def test_two_splits_merge_into_one_info_and_ledger(image_folder, tmp_path):
    out = tmp_path / "out"
    shard(image_folder, out, split="train", jobs=1)
    shard(image_folder, out, split="val", jobs=1, max_count=4)
    info = json.loads((out / "_info.json").read_text())
    assert list(info["splits"]) == ["train", "val"]
    assert info["splits"]["val"]["shard_lengths"] == [4, 4, 4]
    assert list(json.loads((out / "dataprep.json").read_text())["splits"]) == ["train", "val"]


def test_existing_split_needs_overwrite(image_folder, tmp_path):
    from dataprep.errors import UsageError

    out = tmp_path / "out"
    shard(image_folder, out, jobs=1, max_count=5)
    with pytest.raises(UsageError, match="--overwrite"):
        shard(image_folder, out, jobs=1)
    shard(image_folder, out, jobs=1, max_count=100, overwrite=True)
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar"]
    assert json.loads((out / "_info.json").read_text())["splits"]["train"]["shard_lengths"] == [12]


def test_folder_file_names_fit_255_bytes(tmp_path, gradient, encode):
    from dataprep.io.foldersink import FolderWriter

    key = "ü" * 200  # 400 bytes: no file system takes it as one name
    w = FolderWriter(tmp_path, "train")
    w.write(Sample(key, encode(gradient(9, 7), "PNG"), "png", 0, {"class_name": "c"}))
    (info,) = w.close()
    (path,) = (tmp_path / "c").iterdir()
    assert len(path.name.encode()) <= 255 and path.name.endswith(".png")
    assert path.name.startswith("ü" * 120) and "~" in path.name
    assert info.name == f"c/{path.name}"
