"""dataprep's output read by the readers users already have: stock ``webdataset``, ``wids``,
timm's ``wds/`` reader, Hugging Face ``datasets``, GNU-format ``tarfile`` (extra ``interop``).

The input mixes what breaks readers: real photos as JPEG, PNG with alpha, CMYK and grayscale
JPEG, a palette PNG, and a file name long enough that its key passes 100 bytes.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dataprep
from dataprep.records import SAMPLE_SCHEMA, make_key

PHOTOS = Path(__file__).resolve().parents[1] / "examples" / "photos"
LONG_NAME = "a-photo-whose-file-name-goes-on-" + "and-on-" * 14 + "until-its-key-passes-100-bytes"

wds = pytest.importorskip("webdataset")


def _small(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((96, 96))
        return img


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Two classes of real photos (small copies), in the modes that break readers."""
    root = tmp_path_factory.mktemp("mixed") / "images"
    photos = sorted(PHOTOS.glob("*/*.jpg"))[:8]
    a, b = root / "animals", root / "scenes"
    a.mkdir(parents=True)
    b.mkdir()
    imgs = [_small(p) for p in photos]
    imgs[0].save(a / "plain.jpg", quality=92)
    rgba = imgs[1].convert("RGBA")
    alpha = np.zeros((rgba.height, rgba.width), np.uint8)
    alpha[:, : rgba.width // 2] = 255  # left half opaque, right half transparent
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(a / "alpha.png")
    imgs[2].convert("CMYK").save(a / "cmyk.jpg", quality=92)
    imgs[3].save(a / f"{LONG_NAME}.jpg", quality=92)
    imgs[4].convert("L").save(b / "gray.jpg", quality=92)
    imgs[5].convert("P", palette=Image.Palette.ADAPTIVE).save(b / "palette.png")
    imgs[6].save(b / "plain.jpg", quality=92)
    imgs[7].save(b / "rgb.png")
    return root


@pytest.fixture(scope="module")
def outputs(mixed, tmp_path_factory) -> dict[str, Path]:
    """``demo``: tencrop train + resize val in one folder; ``shard``: the mixed folder packed
    as it is; ``keep``: the same with --keep-formats."""
    base = tmp_path_factory.mktemp("out")
    dataprep.split(mixed, base / "splits", ratio=0.5)
    demo = base / "demo"
    dataprep.tencrop(base / "splits" / "train.jsonl", demo, short_side=64, crop=48, jobs=1,
                     max_count=25)
    dataprep.resize(base / "splits" / "val.jsonl", demo, short_side=64, jobs=1)
    dataprep.shard(mixed, base / "shard", jobs=1, max_count=3)
    dataprep.shard(mixed, base / "keep", jobs=1, keep_formats=True)
    return {"demo": demo, "shard": base / "shard", "keep": base / "keep", "mixed": mixed}


def _tars(out: Path, split: str = "*") -> list[str]:
    return sorted(str(p) for p in out.glob(f"{split}-*.tar"))


def _info(out: Path) -> dict:
    return json.loads((out / "_info.json").read_text())


def test_stock_webdataset_to_tuple_reads_every_sample_as_rgb_jpg(outputs):
    files = sorted(p for p in outputs["mixed"].rglob("*") if p.is_file())
    for name in ("shard", "demo"):
        out = outputs[name]
        got = list(wds.WebDataset(_tars(out), shardshuffle=False).decode("pil")
                   .to_tuple("jpg", "cls", "json"))
        assert len(got) == sum(s["num_samples"] for s in _info(out)["splits"].values())
        for img, cls, meta in got:
            assert img.mode == "RGB" and img.size == tuple(meta["size"])
            assert cls == meta["label"] and sorted(meta) == sorted(SAMPLE_SCHEMA)
    assert len(got) > len(files) and len(list(wds.WebDataset(_tars(outputs["shard"])))) == 8
    for s in _info(outputs["shard"])["splits"].values():
        assert s["image_fields"] == ["jpg"]


def test_shard_converts_by_the_decoding_rules_and_keeps_rgb_jpegs_byte_for_byte(outputs):
    mixed = outputs["mixed"]
    stored = {d["__key__"]: d for d in wds.WebDataset(_tars(outputs["shard"]),
                                                      shardshuffle=False)}
    plain = stored[make_key("animals/plain.jpg")]
    assert plain["jpg"] == (mixed / "animals" / "plain.jpg").read_bytes()
    with Image.open(mixed / "animals" / "alpha.png") as src:
        white = Image.new("RGBA", src.size, (255, 255, 255, 255))
        want = np.asarray(Image.alpha_composite(white, src.convert("RGBA")).convert("RGB"),
                          np.int16)
    with Image.open(io.BytesIO(stored[make_key("animals/alpha.png")]["jpg"])) as got:
        assert got.format == "JPEG" and got.mode == "RGB"
        diff = np.abs(np.asarray(got, np.int16) - want)
    assert diff.mean() < 6  # JPEG's loss; a black background would differ by ~100
    assert np.asarray(got)[:, -4:].min() > 230  # the transparent half is white
    for name in ("animals/cmyk.jpg", "scenes/gray.jpg", "scenes/palette.png", "scenes/rgb.png"):
        with Image.open(io.BytesIO(stored[make_key(name)]["jpg"])) as img:
            assert img.format == "JPEG" and img.mode == "RGB", name


def test_keep_formats_keeps_each_files_bytes(outputs):
    mixed = outputs["mixed"]
    got = {json.loads(d["json"])["key_full"]: d
           for d in wds.WebDataset(_tars(outputs["keep"]), shardshuffle=False)}
    assert len(got) == 8
    for path in (p for p in mixed.rglob("*") if p.is_file()):
        d = got[make_key(str(path.relative_to(mixed)))]
        ext = {".jpg": "jpg", ".png": "png"}[path.suffix]
        assert d[ext] == path.read_bytes()
    assert _info(outputs["keep"])["splits"]["train"]["image_fields"] == ["jpg", "png", "webp"]
    # why it is not the default: one type per output is what to_tuple("jpg", ...) expects
    with pytest.raises(ValueError, match="jpg"):
        list(wds.WebDataset(_tars(outputs["keep"]), shardshuffle=False).to_tuple("jpg", "cls"))


def test_member_names_fit_100_bytes_without_long_name_headers(outputs):
    full = make_key(f"animals/{LONG_NAME}.jpg")
    assert len(f"{full}.json".encode()) > 100
    seen_full = []
    for name in ("demo", "shard", "keep"):
        for path in _tars(outputs[name]):
            raw = Path(path).read_bytes()
            assert b"././@LongLink" not in raw and b"PaxHeader" not in raw
            with tarfile.open(path) as tar:
                for m in tar.getmembers():
                    assert m.type == tarfile.REGTYPE and len(m.name.encode()) <= 100, m.name
                    if m.name.endswith(".json"):
                        meta = json.loads(tar.extractfile(m).read())
                        assert m.name == f"{meta['key']}.json"
                        if meta["key"] != meta["key_full"]:
                            seen_full.append(meta["key_full"])
    assert full in seen_full  # the whole key is kept in json.key_full


def test_wids_reads_the_written_index_with_random_access(outputs, tmp_path):
    wids = pytest.importorskip("wids")
    for name in ("demo", "shard"):
        out = outputs[name]
        for split, info in _info(out)["splits"].items():
            index = json.loads((out / f"{split}.wids.json").read_text())
            assert index["__kind__"] == "wids-shard-index-v1" and index["wids_version"] == 1
            ds = wids.ShardListDataset(str(out / f"{split}.wids.json"),
                                       cache_dir=str(tmp_path / name / split))
            assert len(ds) == info["num_samples"]
            in_order = [d["__key__"] for d in wds.WebDataset(_tars(out, split),
                                                             shardshuffle=False)]
            rng = np.random.default_rng(0)
            for i in rng.permutation(len(ds)):
                d = ds[int(i)]
                assert set(d) >= {".jpg", ".cls", ".json"}, sorted(d)
                meta = d[".json"]  # wids decodes json, images and cls by their field
                assert d["__key__"] == in_order[i] == meta["key"]
                assert d[".jpg"].mode == "RGB" and list(d[".jpg"].size) == meta["size"]
                assert int(d[".cls"]) == meta["label"]
            ds.close()


def test_wids_index_follows_append_overwrite_and_verify(outputs, tmp_path):
    out = tmp_path / "o"
    shutil.copytree(outputs["demo"], out)
    dataprep.resize(outputs["mixed"], out, short_side=48, jobs=1, split="extra", max_count=3)
    extra = json.loads((out / "extra.wids.json").read_text())
    assert [s["url"] for s in extra["shardlist"]] == [Path(p).name for p in _tars(out, "extra")]
    assert [s["nsamples"] for s in extra["shardlist"]] == [3, 3, 2]
    assert dataprep.verify(out).ok
    dataprep.resize(outputs["mixed"], out, short_side=40, jobs=1, split="extra", max_count=5,
                    overwrite=True)
    extra = json.loads((out / "extra.wids.json").read_text())
    assert [s["nsamples"] for s in extra["shardlist"]] == [5, 3]
    assert [s["filesize"] for s in extra["shardlist"]] == [
        Path(p).stat().st_size for p in _tars(out, "extra")]
    (out / "val.wids.json").unlink()
    (out / "extra.wids.json").write_text(json.dumps(dict(extra, shardlist=[])))
    problems = " ".join(dataprep.verify(out).problems)
    assert "val.wids.json is missing" in problems and "extra.wids.json does not list" in problems
    dataprep.resize(outputs["mixed"], out, short_side=40, jobs=1, split="extra", max_count=5)
    assert json.loads((out / "extra.wids.json").read_text()) == extra  # rewritten on rerun


def test_timm_wds_reader_counts_and_labels_match_info_json(outputs):
    pytest.importorskip("timm")
    pytest.importorskip("torch")
    from timm.data import create_dataset

    for name in ("demo", "shard"):
        out = outputs[name]
        for split, info in _info(out)["splits"].items():
            ds = create_dataset(f"wds/{name}", root=str(out), split=split, is_training=False)
            assert len(ds) == info["num_samples"]
            got = list(ds)
            want = [int(c) for (c,) in wds.WebDataset(_tars(out, split), shardshuffle=False)
                    .to_tuple("cls")]
            assert len(got) == info["num_samples"]
            assert [t for _, t in got] == want
            assert all(img.mode == "RGB" for img, _ in got)


def test_hugging_face_loads_tencrop_train_and_resize_val_in_one_call(outputs, tmp_path):
    pytest.importorskip("datasets")
    from datasets import load_dataset

    out = outputs["demo"]
    info = _info(out)["splits"]
    # datasets takes the json's types from the first samples of the last split listed:
    # list the one whose json fills the most fields (the ten-crop views) last
    ds = load_dataset("webdataset", data_files={"validation": _tars(out, "val"),
                                                "train": _tars(out, "train")},
                      cache_dir=str(tmp_path / "hf"))
    assert set(ds["train"].features["json"]) == set(SAMPLE_SCHEMA)
    for split, name in (("train", "train"), ("validation", "val")):
        rows = ds[split]
        assert len(rows) == info[name]["num_samples"]
        for row in rows:
            assert row["jpg"] is not None and row["jpg"].mode == "RGB"
            assert row["cls"] == row["json"]["label"] and row["json"]["key"] == row["__key__"]
    views = ds["train"]["json"]
    assert all(v["source"] is not None and v["view_name"] is not None for v in views)
    assert all(v["source"] is None and v["view"] is None for v in ds["validation"]["json"])


def test_hugging_face_loads_a_shard_of_mixed_input_with_every_image(outputs, tmp_path):
    pytest.importorskip("datasets")
    from datasets import load_dataset

    out = outputs["shard"]
    ds = load_dataset("webdataset", data_files={"train": _tars(out, "train")},
                      cache_dir=str(tmp_path / "hf"))["train"]
    assert len(ds) == 8 and all(row["jpg"] is not None for row in ds)
    assert {row["json"]["key_full"] for row in ds} >= {make_key(f"animals/{LONG_NAME}.jpg")}


@pytest.mark.slow  # a local Ray instance starts in ~10 s
def test_ray_data_reads_train_and_val_with_one_column_type(outputs):
    ray = pytest.importorskip("ray")
    out = outputs["demo"]
    ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        rows = ray.data.read_webdataset(_tars(out) + _tars(outputs["shard"])).take_all()
    finally:
        ray.shutdown()
    total = sum(s["num_samples"] for o in ("demo", "shard")
                for s in _info(outputs[o])["splits"].values())
    assert len(rows) == total
    for row in rows:
        assert row["jpg"].ndim == 3 and row["jpg"].shape[2] == 3  # RGB, never RGBA
        assert row["cls"] == row["json"]["label"] and set(row["json"]) == set(SAMPLE_SCHEMA)
        assert list(row["jpg"].shape[1::-1]) == row["json"]["size"]


def test_an_exif_rotated_jpeg_is_stored_upright(tmp_path):
    """Other readers do not apply EXIF orientation: a rotated JPEG is re-encoded upright."""
    folder = tmp_path / "in" / "c"
    folder.mkdir(parents=True)
    img = _small(sorted(PHOTOS.glob("*/*.jpg"))[1])  # not square: a turn swaps the sides
    assert img.width != img.height
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    img.save(folder / "rotated.jpg", exif=exif, quality=92)
    img.save(folder / "upright.jpg", quality=92)
    dataprep.shard(tmp_path / "in", tmp_path / "out", jobs=1)
    got = {d["__key__"]: d for d in wds.WebDataset(_tars(tmp_path / "out"), shardshuffle=False)
           .decode("pil")}
    assert got["c__rotated"]["jpg"].size == (img.height, img.width)
    assert got["c__upright"]["jpg"].size == img.size
    raw = {d["__key__"]: d["jpg"] for d in wds.WebDataset(_tars(tmp_path / "out"))}
    assert raw["c__upright"] == (folder / "upright.jpg").read_bytes()
    assert raw["c__rotated"] != (folder / "rotated.jpg").read_bytes()
    sizes = {d["__key__"]: d["json"]["size"]
             for d in wds.WebDataset(_tars(tmp_path / "out")).decode()}
    assert sizes == {"c__rotated": [img.height, img.width], "c__upright": list(img.size)}
    # --keep-formats keeps the rotated file's bytes, and json.size is still the upright size
    dataprep.shard(tmp_path / "in", tmp_path / "keep", jobs=1, keep_formats=True)
    kept = {d["__key__"]: d for d in wds.WebDataset(_tars(tmp_path / "keep")).decode()}
    assert bytes(kept["c__rotated"]["jpg"]) == (folder / "rotated.jpg").read_bytes()
    assert kept["c__rotated"]["json"]["size"] == [img.height, img.width]


@pytest.mark.parametrize("layout", ["dataprep", "caffe"])
def test_lmdb_json_has_the_tar_schema_and_long_keys_fit_lmdb(mixed, layout, tmp_path):
    """Plain ``lmdb`` reads of both layouts: every sample's json has the schema's keys, the
    same values as the tar json of the same run, and no key passes LMDB's 511 bytes."""
    import lmdb

    from dataprep.io import caffe

    long_root = tmp_path / "in"
    shutil.copytree(mixed, long_root)
    deep = long_root / "animals" / ("x" * 200) / ("y" * 200)  # a key of over 511 bytes
    deep.mkdir(parents=True)
    shutil.copy(long_root / "animals" / "plain.jpg", deep / f"{'z' * 200}.jpg")
    lm, tar = tmp_path / "lmdb", tmp_path / "tar"
    dataprep.shard(long_root, tar, jobs=1)
    dataprep.shard(long_root, lm, jobs=1, fmt="lmdb", lmdb_layout=layout)
    env = lmdb.open(str(lm / "train.lmdb"), readonly=True, lock=False)
    metas = []
    with env.begin() as txn:
        for k, v in txn.cursor():
            assert len(k) <= 511
            if layout == "caffe":
                metas.append(json.loads(caffe.decode_datum(bytes(v)).meta))
            elif k.endswith(b".json"):
                metas.append(json.loads(bytes(v)))
    env.close()
    tar_json = {}
    for path in _tars(tar):
        with tarfile.open(path) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    j = json.loads(tf.extractfile(m).read())
                    tar_json[j["key_full"]] = j
    assert len(metas) == len(tar_json) == 9
    for meta in metas:
        assert set(SAMPLE_SCHEMA) <= set(meta), sorted(set(SAMPLE_SCHEMA) - set(meta))
        want = tar_json[meta["key_full"]]
        assert {k: meta[k] for k in SAMPLE_SCHEMA if k != "key"} == {
            k: want[k] for k in SAMPLE_SCHEMA if k != "key"}
    assert any(len(m["key_full"].encode()) > 600 for m in metas)


def test_a_reshard_keeps_shortened_keys_and_their_full_key(outputs, tmp_path):
    """Shards of shards: a key shortened for 100-byte names is stored under the same short
    name again, and ``json.key_full`` still holds the whole key."""

    def names_and_full(out: Path) -> dict[str, str]:
        got = {}
        for path in _tars(out):
            with tarfile.open(path) as tf:
                for m in tf.getmembers():
                    if m.name.endswith(".json"):
                        j = json.loads(tf.extractfile(m).read())
                        got[m.name] = j["key_full"]
        return got

    first = names_and_full(outputs["shard"])
    assert any(len(full.encode()) > 100 for full in first.values())
    dataprep.shard(outputs["shard"], tmp_path / "again", jobs=1)
    assert names_and_full(tmp_path / "again") == first
