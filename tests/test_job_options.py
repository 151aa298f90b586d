"""Job options through the library: upscale, image formats, split names, sources of shards."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from dataprep.errors import UsageError
from dataprep.io.readers import iter_samples
from dataprep.jobs.shard import shard
from dataprep.jobs.tencrop import resize, tencrop


def test_tencrop_without_upscale_skips_images_smaller_than_the_crop(image_folder, tmp_path):
    out = tmp_path / "o"
    report = tencrop(image_folder, out, short_side=64, crop=48, upscale=False, jobs=1)
    # 99x101 -> 64x65; 53x53, 64x48 and 50x50 stay as they are; the other short sides are < 48
    assert (report.records_in, report.samples_out, report.skipped) == (12, 40, 8)
    reasons = [json.loads(x)["reason"] for x in (out / "errors.jsonl").read_text().splitlines()]
    assert all("smaller than --crop 48" in r for r in reasons)
    assert any("40x71 after resize" in r for r in reasons)


def test_one_pixel_image_upscaled_to_ten_equal_views(tmp_path):
    d = tmp_path / "src" / "dot"
    d.mkdir(parents=True)
    Image.new("RGB", (1, 1), (200, 30, 90)).save(d / "px.png")
    out = tmp_path / "o"
    report = tencrop(tmp_path / "src", out, short_side=16, crop=8, image_format="png", jobs=1)
    assert report.samples_out == 10
    for s in iter_samples(out):
        arr = np.asarray(Image.open(io.BytesIO(s.image)))
        assert arr.shape == (8, 8, 3) and (arr == (200, 30, 90)).all()


@pytest.mark.parametrize(("image_format", "pil"), [("png", "PNG"), ("webp", "WEBP"),
                                                   ("jpg", "JPEG")])
def test_image_format_is_the_stored_encoding(image_folder, tmp_path, image_format, pil):
    import webdataset as wds

    out = tmp_path / "o"
    resize(image_folder, out, short_side=24, image_format=image_format, jobs=1)
    urls = [str(p) for p in sorted(out.glob("*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 12
    for d in samples:
        assert image_format in d
        assert Image.open(io.BytesIO(d[image_format])).format == pil


def test_png_output_is_lossless_resize(image_folder, tmp_path):
    from dataprep.ops.resize import resize_short_side

    out = tmp_path / "o"
    resize(image_folder, out, short_side=24, image_format="png", jobs=1, fmt="folder")
    src = Image.open(image_folder / "cat" / "img0.png").convert("RGB")
    got = Image.open(out / "cat" / "cat__img0.png")
    np.testing.assert_array_equal(np.asarray(got), np.asarray(resize_short_side(src, 24)))


def test_split_option_names_the_output(image_folder, tmp_path):
    out = tmp_path / "o"
    resize(image_folder, out, short_side=24, split="val", jobs=1)
    assert sorted(p.name for p in out.glob("*.tar")) == ["val-000000.tar"]
    assert all(s.meta["split"] == "val" for s in iter_samples(out, "val"))


def test_manifest_splits_go_to_their_own_shards(image_folder, tmp_path):
    from dataprep.jobs.split import split

    split(image_folder, tmp_path / "s", ratio=0.5)
    out = tmp_path / "o"
    for name in ("train", "val"):
        resize(tmp_path / "s" / f"{name}.jsonl", out, short_side=24, jobs=1)
    info = json.loads((out / "_info.json").read_text())["splits"]
    assert info["train"]["num_samples"] + info["val"]["num_samples"] == 12
    assert info["train"]["filenames"] == ["train-000000.tar"]


def test_interpolation_changes_pixels_and_bad_values_are_refused(image_folder, tmp_path):
    for interp in ("nearest", "bicubic"):
        resize(image_folder, tmp_path / interp, short_side=24, interpolation=interp,
               image_format="png", jobs=1)
    a = [s.image for s in iter_samples(tmp_path / "nearest")]
    b = [s.image for s in iter_samples(tmp_path / "bicubic")]
    assert a != b
    with pytest.raises(UsageError, match="interpolation"):
        resize(image_folder, tmp_path / "x", interpolation="cubic")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"short_side": 0}, "--short-side"),
    ({"quality": 0}, "--quality"),
    ({"image_format": "gif"}, "--image-format"),
    ({"crop": 300}, "--crop 300 is larger than --short-side 256"),
    ({"views": "eager"}, "--views"),
])
def test_tencrop_parameter_errors(image_folder, tmp_path, kwargs, match):
    with pytest.raises(UsageError, match=match):
        tencrop(image_folder, tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_shard_refuses_folder_format_and_zero_count(image_folder, tmp_path):
    with pytest.raises(UsageError, match="webdataset or lmdb"):
        shard(image_folder, tmp_path / "o", fmt="folder")
    with pytest.raises(UsageError, match="--max-count"):
        shard(image_folder, tmp_path / "o", max_count=0)


def test_shard_reencode_converts_every_image(image_folder, tmp_path):
    out = tmp_path / "o"
    shard(image_folder, out, reencode=True, image_format="jpg", quality=80, jobs=1)
    assert {Image.open(io.BytesIO(s.image)).format for s in iter_samples(out)} == {"JPEG"}


def test_report_lines(image_folder, tmp_path):
    report = resize(image_folder, tmp_path / "o", short_side=24, jobs=1, max_count=5)
    text = "\n".join(report.lines())
    assert "12 records in -> 12 samples out, 0 skipped" in text
    assert "train: 12 samples in 3 shards" in text
    assert "images/s" in text and str(tmp_path / "o") in text


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_tencrop_of_a_shard_source(image_folder, tmp_path, fmt):
    """Records can come from shards too: their bytes are decoded, views cut as from files;
    each record exactly once (the source is streamed, not listed)."""
    shard(image_folder, tmp_path / "wds", jobs=1, fmt=fmt, keep_formats=True)  # the PNG bytes
    report = tencrop(tmp_path / "wds", tmp_path / "t", short_side=32, crop=24, jobs=1)
    direct = tencrop(image_folder, tmp_path / "d", short_side=32, crop=24, jobs=1)
    assert report.samples_out == direct.samples_out == 120
    a = [(s.key, s.image) for s in iter_samples(tmp_path / "t")]
    b = [(s.key, s.image) for s in iter_samples(tmp_path / "d")]
    assert a == b


def test_tencrop_of_a_val_shard_source_plans_the_val_split(image_folder, tmp_path):
    shard(image_folder, tmp_path / "wds", split="val", jobs=1)
    out = tmp_path / "t"
    tencrop(tmp_path / "wds", out, short_side=32, crop=24, jobs=1)
    assert sorted(p.name for p in out.glob("*.tar")) == ["val-000000.tar"]
    assert not list(out.glob(".journal-*")), "a journal was left for a split never written"
    # changed parameters on the same output: refused for the split that is really there
    with pytest.raises(UsageError, match="split 'val'"):
        tencrop(tmp_path / "wds", out, short_side=30, crop=24, jobs=1)


def test_tasks_survive_pickle(image_folder):
    """Tasks travel to worker processes: they pickle, and behave the same afterwards."""
    import pickle

    from dataprep.io.scan import scan
    from dataprep.jobs.shard import ShardTask
    from dataprep.jobs.tencrop import ResizeTask, TencropTask

    record = next(iter(scan(image_folder)))
    for task in (ResizeTask(short_side=24), TencropTask(short_side=24, crop=16, views="lazy"),
                 ShardTask(reencode=True)):
        clone = pickle.loads(pickle.dumps(task))
        assert clone == task
        a, b = task(record), clone(record)
        assert [(s.key, s.image, s.meta) for s in a] == [(s.key, s.image, s.meta) for s in b]


def test_resize_keeps_the_bytes_of_an_upright_rgb_jpeg_it_does_not_change(tmp_path):
    """Re-encoding an image that needs no resize would only add loss: its bytes are kept; an
    image that is resized, rotated by EXIF or stored in another format is encoded anew."""
    import io

    from PIL import Image

    from dataprep.jobs.tencrop import ResizeTask
    from dataprep.records import Record

    def jpeg(size, orientation=None):
        buf = io.BytesIO()
        img = Image.new("RGB", size, (200, 40, 10))
        exif = Image.Exif()
        if orientation:
            exif[0x0112] = orientation
        img.save(buf, "JPEG", quality=75, exif=exif.tobytes())
        return buf.getvalue()

    small, big, turned = jpeg((60, 40)), jpeg((600, 400)), jpeg((60, 40), orientation=6)
    task = ResizeTask(short_side=64)
    assert task(Record("a", "", 0, "c", data=small))[0].image == small
    assert task(Record("b", "", 0, "c", data=big))[0].image != big
    rotated = task(Record("c", "", 0, "c", data=turned))[0]
    assert rotated.image != turned and rotated.meta["size"] == [40, 60]
    as_png = ResizeTask(short_side=64, image_format="png")(Record("d", "", 0, "c", data=small))
    assert as_png[0].image != small and as_png[0].ext == "png"
