"""Caffe's LMDB layout (``--format lmdb --lmdb-layout caffe``) against the real readers.

The reference for the values is ``protobuf`` itself: the ``caffe.Datum`` message class is built
at run time from the text of Caffe's proto, and our plain-Python encoder and decoder must agree
with it byte for byte. The LMDB files are read with the plain ``lmdb`` package (a cursor over
the main database, as Caffe's and DALI's readers do), then with dataprep's readers, ``verify``
and the trainer, beside the same output in dataprep's own layout.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import traceback
from pathlib import Path

import lmdb
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dataprep.cli import cli
from dataprep.io import caffe, durable
from dataprep.io.lmdbread import iter_lmdb, lmdb_header
from dataprep.io.readers import iter_samples
from dataprep.jobs.tencrop import tencrop
from dataprep.jobs.verify import verify

pytest.importorskip("google.protobuf", reason="pip install 'dataprep[caffe]'")

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "examples" / "photos"

# caffe/src/caffe/proto/caffe.proto, message Datum, as Caffe ships it
CAFFE_PROTO = """
syntax = "proto2";
package caffe;
message Datum {
  optional int32 channels = 1;
  optional int32 height = 2;
  optional int32 width = 3;
  // the actual image data, in bytes
  optional bytes data = 4;
  optional int32 label = 5;
  // Optionally, the datum could also hold float data.
  repeated float float_data = 6;
  // If true data contains an encoded image that need to be decoded
  optional bool encoded = 7 [default = false];
}
"""


def _datum_class():
    """``caffe.Datum`` built by protobuf from :data:`CAFFE_PROTO`'s field lines."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    types = {"int32": field.TYPE_INT32, "bytes": field.TYPE_BYTES, "float": field.TYPE_FLOAT,
             "bool": field.TYPE_BOOL}
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_datum.proto", package="caffe",
                                               syntax="proto2")
    message = proto.message_type.add(name="Datum")
    lines = re.findall(r"(optional|repeated) (\w+) (\w+) = (\d+)(?: \[default = (\w+)\])?;",
                       CAFFE_PROTO)
    assert len(lines) == 7
    for label, kind, name, number, default in lines:
        f = message.field.add(name=name, number=int(number), type=types[kind],
                              label=field.LABEL_OPTIONAL if label == "optional"
                              else field.LABEL_REPEATED)
        if default:
            f.default_value = default
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.Datum"))


Datum = _datum_class()
FIELDS = ("channels", "height", "width", "data", "label", "encoded")


def pb_datum(**fields):
    msg = Datum()
    for name, value in fields.items():
        if name == "float_data":
            msg.float_data.extend(value)
        else:
            setattr(msg, name, value)
    return msg


def parse(raw: bytes):
    msg = Datum()
    msg.ParseFromString(raw)
    return msg


def jpeg(size=(37, 23), color=(200, 30, 90), mode="RGB") -> bytes:
    img = Image.new(mode, size, color if mode == "RGB" else color[0])
    img.putpixel((3, 4), (0, 255, 0) if mode == "RGB" else 255)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


# -- the codec against protobuf -------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    dict(channels=3, height=23, width=37, data=jpeg(), label=0, encoded=True),  # label 0
    dict(channels=1, height=1, width=1, data=b"", label=-1, encoded=False),  # negative label
    dict(channels=3, height=4000, width=3000, data=bytes(range(256)) * 20_000,  # 5 MB
         label=2**31 - 1, encoded=True),
    dict(channels=0, height=0, width=0, data=b"\x00", label=-(2**31), encoded=True),
    dict(channels=3, height=2, width=2, data=b"abc", label=7, encoded=False,
         float_data=[0.5, -1.25, 3e38]),
])
def test_encoder_writes_the_bytes_protobuf_writes(fields):
    ours = caffe.encode_datum(caffe.Datum(**fields))
    assert ours == pb_datum(**fields).SerializeToString()
    back = caffe.decode_datum(pb_datum(**fields).SerializeToString())
    for name, value in fields.items():
        got = getattr(back, name)
        assert got == (pytest.approx(value, rel=1e-6) if name == "float_data" else value), name
    if fields["label"] < 0:
        assert len(caffe._varint(fields["label"])) == 10  # int32 < 0: a 10-byte varint


def test_decoder_reads_unset_fields_packed_floats_and_unknown_fields():
    sparse = pb_datum(data=b"xyz").SerializeToString()  # protobuf leaves unset fields out
    d = caffe.decode_datum(sparse)
    assert (d.channels, d.height, d.width, d.data, d.label, d.encoded, d.meta) == (
        0, 0, 0, b"xyz", 0, False, None)
    floats = np.array([1.5, -2.0, 0.25], "<f4").tobytes()
    packed = b"\x32" + bytes([len(floats)]) + floats + b"\x28\x05"  # field 6 packed, label 5
    assert caffe.decode_datum(packed).float_data == [1.5, -2.0, 0.25]
    assert list(parse(packed).float_data) == [1.5, -2.0, 0.25] and parse(packed).label == 5
    # fields Caffe's Datum does not know (wire types 0, 1, 2, 5) are skipped, as protobuf does
    extra = (b"\x48\x96\x01" + b"\x51" + bytes(8) + b"\x5a\x02hi" + b"\x65" + bytes(4)
             + pb_datum(label=3).SerializeToString())
    assert caffe.decode_datum(extra).label == parse(extra).label == 3
    # proto2: the last value of a field wins
    twice = pb_datum(label=1).SerializeToString() + pb_datum(label=9).SerializeToString()
    assert caffe.decode_datum(twice).label == parse(twice).label == 9


def test_protobuf_parses_the_datum_with_dataprep_metadata():
    from google.protobuf.unknown_fields import UnknownFieldSet

    meta = json.dumps({"key": "cat_001", "ext": "jpg"}).encode()
    raw = caffe.encode_datum(caffe.Datum(3, 23, 37, jpeg(), 4, encoded=True, meta=meta))
    msg = parse(raw)
    assert (msg.channels, msg.height, msg.width, msg.data, msg.label, msg.encoded) == (
        3, 23, 37, jpeg(), 4, True)
    unknown = UnknownFieldSet(msg)
    assert [(u.field_number, u.data) for u in unknown] == [(caffe.META_FIELD, meta)]
    assert caffe.decode_datum(raw).meta == meta


@settings(max_examples=60, deadline=None)
@given(channels=st.integers(-(2**31), 2**31 - 1), height=st.integers(0, 2**31 - 1),
       width=st.integers(0, 70000), label=st.integers(-(2**31), 2**31 - 1),
       data=st.binary(max_size=600), encoded=st.booleans())
def test_codec_agrees_with_protobuf_on_any_datum(channels, height, width, label, data, encoded):
    fields = dict(channels=channels, height=height, width=width, data=data, label=label,
                  encoded=encoded)
    raw = pb_datum(**fields).SerializeToString()
    assert caffe.encode_datum(caffe.Datum(**fields)) == raw
    back = caffe.decode_datum(raw)
    assert {f: getattr(back, f) for f in FIELDS} == fields


@pytest.mark.parametrize("raw", [
    b"\x08",  # a varint cut short
    b"\x22\x05abc",  # data claims 5 bytes, 3 follow
    b"\x0b",  # wire type 3 (a group): never in a Datum
    b"\x08" + b"\xff" * 11,  # a varint over 10 bytes
    b"\x35\x00\x00",  # a 32-bit float cut short
])
def test_bytes_that_are_no_datum_are_refused(raw):
    with pytest.raises(caffe.DatumError):
        caffe.decode_datum(raw)


def test_keys_are_caffes_format_int_and_sort_in_insertion_order():
    assert caffe.caffe_key(0, "cat_1") == b"00000000_cat_1"
    assert caffe.caffe_key(12345, "x") == b"00012345_x"
    keys = [caffe.caffe_key(i, name) for i, name in enumerate(["zz", "a", "m_9", "0", "B"] * 30)]
    assert sorted(keys) == keys
    assert caffe.split_key(b"00000042_dog/b.jpg") == (42, b"dog/b.jpg")
    assert caffe.split_key(b"00000042.image") is None and caffe.split_key(b"__len__") is None


# -- the job's output, both layouts ------------------------------------------------------


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    """``examples/photos`` packed by ``shard`` into an LMDB of each layout."""
    base = tmp_path_factory.mktemp("caffe")
    out = {}
    for layout in ("dataprep", "caffe"):
        out[layout] = base / layout
        invoke("shard", str(PHOTOS), "-o", str(out[layout]), "--format", "lmdb",
               "--lmdb-layout", layout, "--jobs", "1")
    return out


def lmdb_items(env_path: Path) -> list[tuple[bytes, bytes]]:
    """Every entry of the main database, by cursor, as Caffe's and DALI's readers walk it."""
    env = lmdb.open(str(env_path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return [(bytes(k), bytes(v)) for k, v in txn.cursor()]
    finally:
        env.close()


def test_caffe_layout_holds_one_datum_per_sample_in_insertion_order(outputs):
    env = outputs["caffe"] / "train.lmdb"
    items = lmdb_items(env)
    ours = list(iter_lmdb(outputs["dataprep"] / "train.lmdb"))  # the same run, dataprep layout
    assert len(items) == len(ours) == 28
    ledger = json.loads((outputs["caffe"] / "dataprep.json").read_text())
    for i, ((key, value), want) in enumerate(zip(items, ours, strict=True)):
        assert key == f"{i:08d}_{want.key}".encode()  # every key: a line id and the name
        msg = parse(value)  # and every value a Datum: no entry of another kind
        assert msg.data == want.image and msg.label == want.cls and msg.encoded is True
        with Image.open(io.BytesIO(msg.data)) as img:
            assert (msg.height, msg.width) == (img.height, img.width)
            assert msg.channels == (1 if img.mode == "L" else 3)
        assert list(msg.float_data) == []
    side = json.loads((env / caffe.SIDECAR).read_text())
    assert side["layout"] == "caffe" and side["num_samples"] == 28
    assert side["classes"] == ledger["splits"]["train"]["identity"]["classes"]
    assert sorted(os.listdir(env)) == sorted(["data.mdb", caffe.SIDECAR])


def test_dataprep_readers_read_both_layouts_alike(outputs):
    a = list(iter_samples(outputs["dataprep"]))
    b = list(iter_samples(outputs["caffe"]))
    assert [(s.key, s.image, s.ext, s.cls, s.meta) for s in a] == [
        (s.key, s.image, s.ext, s.cls, s.meta) for s in b]
    assert lmdb_header(outputs["caffe"] / "train.lmdb") == lmdb_header(
        outputs["dataprep"] / "train.lmdb")


def test_verify_passes_both_layouts_and_checks_the_caffe_sidecar(outputs, tmp_path):
    for layout in outputs:
        assert verify(outputs[layout], jobs=1).ok, layout
    copy = tmp_path / "copy"
    shutil.copytree(outputs["caffe"], copy)
    side_path = copy / "train.lmdb" / caffe.SIDECAR
    side = json.loads(side_path.read_text())
    side_path.write_text(json.dumps(dict(side, classes=side["classes"][:2])))
    report = verify(copy, jobs=1)
    assert not report.ok and any("but the LMDB names 2 classes" in p
                                 for c in report.checks for p in c.problems)
    side_path.write_text(json.dumps(dict(side, classes=side["classes"][::-1])))
    assert any("its metadata says class" in p for c in verify(copy, jobs=1).checks
               for p in c.problems)
    side_path.write_text(json.dumps(dict(side, num_samples=27)))
    assert any("says 27 samples but the LMDB holds 28" in p
               for c in verify(copy, jobs=1).checks for p in c.problems)
    side_path.unlink()
    report = verify(copy, jobs=1)
    assert not report.ok and any(f"{caffe.SIDECAR} is missing" in p
                                 for c in report.checks for p in c.problems)


def test_a_caffe_lmdb_is_a_source_and_the_layout_is_part_of_the_identity(outputs, tmp_path):
    wds = tmp_path / "wds"
    invoke("shard", str(outputs["caffe"]), "-o", str(wds), "--jobs", "1")
    got = [(s.key, s.cls, s.image) for s in iter_samples(wds)]
    assert got == [(s.key, s.cls, s.image) for s in iter_samples(outputs["dataprep"])]
    result = CliRunner().invoke(cli, ["shard", str(PHOTOS), "-o", str(outputs["caffe"]),
                                      "--format", "lmdb", "--jobs", "1"])  # other layout
    assert result.exit_code == 1 and "already holds output" in result.output
    result = CliRunner().invoke(cli, ["shard", str(PHOTOS), "-o", str(tmp_path / "x"),
                                      "--lmdb-layout", "caffe"])  # webdataset
    assert result.exit_code == 1 and "applies to LMDB output" in result.output
    assert not (tmp_path / "x").exists()


def test_an_lmdb_that_caffe_wrote_reads_as_a_source(tmp_path):
    """No sidecar, no metadata: file-name keys, one raw-pixel Datum (BGR, channels first)."""
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3) * 2
    env = lmdb.open(str(tmp_path / "caffe_train_lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"00000000_cat/a.jpg", pb_datum(data=jpeg(), label=0,
                                                encoded=True).SerializeToString())
        txn.put(b"00000001_dog/b.png", pb_datum(
            channels=3, height=5, width=7, label=1,
            data=rgb[:, :, ::-1].transpose(2, 0, 1).tobytes()).SerializeToString())
    env.close()
    samples = list(iter_lmdb(tmp_path / "caffe_train_lmdb"))
    assert [(s.key, s.cls, s.ext) for s in samples] == [("cat__a", 0, "jpg"),
                                                         ("dog__b", 1, "png")]
    assert samples[0].image == jpeg()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(samples[1].image))), rgb)
    assert lmdb_header(tmp_path / "caffe_train_lmdb") == (2, [])
    out = tmp_path / "packed"
    invoke("shard", str(tmp_path / "caffe_train_lmdb"), "-o", str(out), "--jobs", "1")
    assert [(s.key, s.cls) for s in iter_samples(out)] == [("cat__a", 0), ("dog__b", 1)]


# -- a crash, then the rerun -------------------------------------------------------------


def _in_child(job, crash_at: int | None) -> int:
    """Run ``job`` in a forked child that dies (exit 77) at its ``crash_at``-th LMDB sync."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            seen = [0]
            sync = durable.sync_lmdb

            def counted(env):
                seen[0] += 1
                if seen[0] == crash_at:
                    os._exit(77)
                sync(env)

            durable.sync_lmdb = counted
            job()
            code = 0
        except BaseException:  # noqa: BLE001 - the exit code says it
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _tencrop_caffe(out: Path):
    def job():
        tencrop(PHOTOS, out, short_side=40, crop=32, jobs=1, fmt="lmdb", lmdb_layout="caffe")
    return job


# 280 samples, a commit every 64 or more (at record boundaries): 70, 140, 210, then the final
@pytest.mark.parametrize("crash_at, committed", [(2, 140), (4, 280)])
def test_a_crash_at_a_commit_then_a_rerun_keeps_the_line_ids_contiguous(crash_at, committed,
                                                                         tmp_path):
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    assert _in_child(_tencrop_caffe(clean), None) == 0
    assert _in_child(_tencrop_caffe(crashed), crash_at) == 77
    staged = crashed / ".dataprep-tmp" / "train" / "train.lmdb"
    done = lmdb_items(staged)  # the commits before the crash: line ids 0..n-1, no gap
    assert len(done) == committed
    assert [caffe.split_key(k)[0] for k, _ in done] == list(range(len(done)))
    assert _in_child(_tencrop_caffe(crashed), None) == 0
    want, got = lmdb_items(clean / "train.lmdb"), lmdb_items(crashed / "train.lmdb")
    assert got == want and len(got) == 280
    assert [caffe.split_key(k)[0] for k, _ in got] == list(range(280))
    assert (crashed / "train.lmdb" / "data.mdb").read_bytes() == (
        clean / "train.lmdb" / "data.mdb").read_bytes()
    assert verify(crashed, jobs=1).ok


# -- the trainer ---------------------------------------------------------------------------


def test_train_one_epoch_on_a_caffe_layout_lmdb(tmp_path):
    pytest.importorskip("torch", reason="pip install 'dataprep[train]'")
    from dataprep.train.config import TrainConfig
    from dataprep.train.loop import train
    from dataprep.train.reading import iter_part
    from dataprep.train.sources import resolve_source

    data = tmp_path / "data"
    for split in ("train", "val"):
        invoke("resize", str(PHOTOS), "-o", str(data), "--short-side", "40", "--format",
               "lmdb", "--lmdb-layout", "caffe", "--split", split, "--jobs", "1")
    src = resolve_source(str(data), "train")
    assert src.num_samples == 28 and len(src.classes) == 5
    part = src.parts[0]
    window = type(part)(url=part.url, kind="lmdb", num_samples=4, start=5, stop=9)
    everything = list(iter_lmdb(data / "train.lmdb"))
    assert [s.key for s in iter_part(window, None)] == [s.key for s in everything[5:9]]
    result = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), model="tiny_cnn",
                               img_size=32, short_side=36, batch_size=8, workers=0,
                               progress=False, lr=0.05, epochs=1))
    assert result.history[0]["train_samples"] == 24  # 3 full batches of 8
    assert result.history[0]["val_samples"] == 28


def _write_env(path: Path, items: list[tuple[bytes, bytes]]) -> Path:
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in items:
            txn.put(k, v)
    env.close()
    return path


GOOD = pb_datum(data=jpeg(), label=0, encoded=True).SerializeToString()


@pytest.mark.parametrize("items, message", [
    ([(b"00000000_a", b"\x22\xff\xff\xff\x0f")], "not a Caffe Datum"),  # data: 4 GB claimed
    ([(b"00000000_a", pb_datum(data=jpeg(), label=-5, encoded=True).SerializeToString())],
     "is not a class index"),
    ([(b"00000000_a", pb_datum(data=b"not an image", encoded=True).SerializeToString())],
     "image format None"),
    ([(b"00000000_a", pb_datum(data=b"\x01\x02", channels=3, height=9, width=9)
       .SerializeToString())], "does not hold 3x9x9 uint8 pixels"),
    ([(b"00000000_a", GOOD), (b"zz_meta", GOOD)], "the keys are not Caffe's line ids in order"),
])
def test_a_damaged_caffe_lmdb_is_a_clear_error(items, message, tmp_path):
    from dataprep.errors import ShardError

    env = _write_env(tmp_path / "bad_lmdb", items)
    with pytest.raises(ShardError, match=message):
        list(iter_lmdb(env))
    result = CliRunner().invoke(cli, ["shard", str(env), "-o", str(tmp_path / "out"),
                                      "--jobs", "1"])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_an_lmdb_caffe_wrote_with_gaps_in_its_line_ids_reads_whole(tmp_path):
    """convert_imageset skips an image it cannot read but not its line id: 0, 1, 3, 4, 5."""
    ids = [0, 1, 3, 4, 5]
    items = [(f"{i:08d}_img{i}.jpg".encode(), pb_datum(data=jpeg(color=(i * 40, 0, 0)), label=i % 2,
                                                     encoded=True).SerializeToString())
             for i in ids]
    env = _write_env(tmp_path / "gaps_lmdb", items)
    got = list(iter_lmdb(env))
    assert [s.key for s in got] == [f"img{i}" for i in ids]
    assert [s.cls for s in got] == [i % 2 for i in ids]
    invoke("shard", str(env), "-o", str(tmp_path / "out"), "--jobs", "1")
    assert sum(1 for _ in iter_samples(tmp_path / "out")) == 5
    from dataprep.train.reading import _iter_lmdb_range
    from dataprep.train.sources import Part

    part = list(_iter_lmdb_range(Part(kind="lmdb", url=str(env), start=2, stop=4)))
    assert [s.key for s in part] == ["img3", "img4"]  # places 2 and 3, ids 3 and 4


def test_overwrite_replaces_one_layout_by_the_other_with_nothing_left(tmp_path):
    out = tmp_path / "out"
    invoke("shard", str(PHOTOS), "-o", str(out), "--format", "lmdb", "--lmdb-layout", "caffe",
           "--jobs", "1")
    assert (out / "train.lmdb" / caffe.SIDECAR).is_file()
    invoke("shard", str(PHOTOS), "-o", str(out), "--format", "lmdb", "--jobs", "1",
           "--overwrite")
    assert sorted(os.listdir(out / "train.lmdb")) == ["data.mdb"]  # the sidecar went with it
    assert b"__len__" in dict(lmdb_items(out / "train.lmdb"))
    invoke("shard", str(PHOTOS), "-o", str(out), "--format", "lmdb", "--lmdb-layout", "caffe",
           "--jobs", "1", "--overwrite")
    assert all(caffe.split_key(k) for k, _ in lmdb_items(out / "train.lmdb"))
    assert verify(out, jobs=1).ok


def test_a_rerun_writes_a_lost_sidecar_again_from_the_ledger(tmp_path):
    out = tmp_path / "out"
    args = ("shard", str(PHOTOS), "-o", str(out), "--format", "lmdb", "--lmdb-layout", "caffe",
            "--jobs", "1")
    invoke(*args)
    side = out / "train.lmdb" / caffe.SIDECAR
    want = json.loads(side.read_text())
    side.unlink()
    assert not verify(out, jobs=1).ok
    assert f"{caffe.SIDECAR} was missing or damaged; written again" in invoke(*args)
    assert json.loads(side.read_text()) == want
    assert verify(out, jobs=1).ok
