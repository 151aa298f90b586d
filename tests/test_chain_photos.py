"""The whole chain on the bundled photos: split -> tencrop train -> shard val, read back with
the stock WebDataset reader; lazy views stored once per record."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dataprep.cli import cli
from dataprep.jobs.tencrop import ResizeTask
from dataprep.ops.crop import VIEW_NAMES, ten_crop
from dataprep.records import Record

wds = pytest.importorskip("webdataset")


def invoke(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def stock_read(out: Path, split: str) -> list[dict]:
    info = json.loads((out / "_info.json").read_text())["splits"][split]
    urls = [str(out / name) for name in info["filenames"]]
    return list(wds.WebDataset(urls, shardshuffle=False))


@pytest.fixture(scope="module")
def chain(photos, tmp_path_factory):
    base = tmp_path_factory.mktemp("chain")
    invoke("split", photos, "-o", base / "splits", "--ratio", "0.8", "--seed", "0")
    invoke("tencrop", base / "splits" / "train.jsonl", "-o", base / "shards", "--short-side",
           "80", "--crop", "64", "--jobs", "1", "--max-count", "100")
    invoke("shard", base / "splits" / "val.jsonl", "-o", base / "shards", "--jobs", "1")
    return base


def manifest(base: Path, split: str) -> list[dict]:
    path = base / "splits" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_split_of_the_photos(chain, photos):
    train, val = manifest(chain, "train"), manifest(chain, "val")
    files = sorted(p for p in photos.rglob("*") if p.suffix in (".jpg", ".png"))
    assert len(train) + len(val) == len(files) == 28
    classes = json.loads((chain / "splits" / "classes.json").read_text())
    assert list(classes) == ["animals", "food", "plants", "scenes", "vehicles"]
    per_class = Counter(p.parent.name for p in files)
    train_counts = Counter(r["class_name"] for r in train)
    for name, n in per_class.items():
        assert train_counts[name] == min(max(round(0.8 * n), 1), n - 1)


def test_tencrop_train_read_with_the_stock_reader(chain):
    train = manifest(chain, "train")
    samples = stock_read(chain / "shards", "train")
    assert len(samples) == 10 * len(train)
    keys = [s["__key__"] for s in samples]
    assert keys == [f"{r['key']}_v{i}" for r in train for i in range(10)]
    for s in samples:
        assert set(s) >= {"__key__", "jpg", "cls", "json"}
        meta = json.loads(s["json"])
        assert meta["view_name"] == VIEW_NAMES[meta["view"]]
        assert meta["source"] + f"_v{meta['view']}" == s["__key__"]
        assert int(s["cls"]) == meta["label"]
        assert Image.open(io.BytesIO(s["jpg"])).size == (64, 64)
    info = json.loads((chain / "shards" / "_info.json").read_text())["splits"]["train"]
    assert info["num_samples"] == len(samples)
    assert all(n <= 100 and n % 10 == 0 for n in info["shard_lengths"])


def test_stored_views_are_the_ten_crops_of_the_photo(chain):
    """The first record's views decode to (JPEG-close) copies of ten_crop of the resized photo."""
    record = manifest(chain, "train")[0]
    samples = [s for s in stock_read(chain / "shards", "train")
               if s["__key__"].startswith(record["key"] + "_v")]
    resized = ResizeTask(short_side=80, upscale=True).resized(Record.from_json(record))
    expected = [np.asarray(v, np.int16) for v in ten_crop(resized, 64)]
    assert len(samples) == 10
    for i, s in enumerate(samples):
        got = np.asarray(Image.open(io.BytesIO(s["jpg"])).convert("RGB"), np.int16)
        diffs = [np.abs(got - want).mean() for want in expected]
        assert diffs[i] < 8, (s["__key__"], diffs[i])  # JPEG noise only
        assert int(np.argmin(diffs)) == i, (s["__key__"], diffs)  # and no other view is closer


def test_val_shard_holds_the_original_bytes(chain):
    val = manifest(chain, "val")
    samples = stock_read(chain / "shards", "val")
    assert [s["__key__"] for s in samples] == [r["key"] for r in val]
    for s, r in zip(samples, val, strict=True):
        # one image field: RGB JPEG photos are stored as they are, the rest as RGB JPEG
        original = Path(r["path"]).read_bytes()
        with Image.open(io.BytesIO(original)) as src:
            as_is = src.format == "JPEG" and src.mode == "RGB"
        assert not {"png", "webp"} & set(s)
        assert (s["jpg"] == original) == as_is, r["path"]
        with Image.open(io.BytesIO(s["jpg"])) as got:
            assert got.format == "JPEG" and got.mode == "RGB"
        assert int(s["cls"]) == r["label"]
    ledger = json.loads((chain / "shards" / "dataprep.json").read_text())
    assert set(ledger["splits"]) == {"train", "val"}


def test_lazy_views_store_one_sample_per_record(photo_subset, tmp_path):
    out = tmp_path / "lazy"
    invoke("tencrop", photo_subset, "-o", out, "--short-side", "80", "--crop", "64",
           "--views", "lazy", "--jobs", "1")
    samples = stock_read(out, "train")
    assert len(samples) == 10
    for s in samples:
        meta = json.loads(s["json"])
        assert meta["views"] == {"kind": "tencrop", "crop": 64, "flip": True}
        img = Image.open(io.BytesIO(s["jpg"]))
        assert min(img.size) == 80 and list(img.size) == meta["size"]
        assert "_v" not in s["__key__"]
    # a five-crop lazy record says so
    out5 = tmp_path / "lazy5"
    invoke("tencrop", photo_subset, "-o", out5, "--short-side", "80", "--crop", "64",
           "--views", "lazy", "--five", "--jobs", "1")
    meta = json.loads(stock_read(out5, "train")[0]["json"])
    assert meta["views"] == {"kind": "fivecrop", "crop": 64, "flip": False}


def test_lazy_views_are_much_smaller_than_materialized(photo_subset, tmp_path):
    for views in ("lazy", "materialize"):
        invoke("tencrop", photo_subset, "-o", tmp_path / views, "--short-side", "128", "--crop",
               "112", "--views", views, "--jobs", "1")
    size = {v: sum(p.stat().st_size for p in (tmp_path / v).glob("*.tar"))
            for v in ("lazy", "materialize")}
    assert size["lazy"] * 3 < size["materialize"]


def test_expanded_lazy_views_equal_materialized_views(photo_subset, tmp_path):
    """Lossless PNG storage: expanding a lazy record gives exactly the materialized samples."""
    from dataprep.io.dataset import open_dataset

    for views in ("lazy", "materialize"):
        invoke("tencrop", photo_subset, "-o", tmp_path / views, "--short-side", "40", "--crop",
               "32", "--views", views, "--image-format", "png", "--jobs", "1")
    lazy = list(open_dataset(tmp_path / "lazy"))
    materialized = list(open_dataset(tmp_path / "materialize"))
    assert len(lazy) == len(materialized) == 100
    for a, b in zip(lazy, materialized, strict=True):
        assert (a.key, a.label, a.meta) == (b.key, b.label, b.meta)
        np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image), err_msg=a.key)
