"""The loader's JPEG path (torchvision's decoder, crops on arrays) gives the pixels of the Pillow
path it stands in for: same decode, same crop and flip for the same seed, same batches."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataprep.io.decode import open_image
from dataprep.io.tarsink import TarShardWriter
from dataprep.ops.resize import resize_short_side
from dataprep.ops.rng import sample_rng
from dataprep.records import Sample
from dataprep.train import data, jpeg
from dataprep.train.data import ShardStream
from dataprep.train.jpeg import decode_jpeg_array
from dataprep.train.pixels import (
    Augment,
    eval_array,
    eval_pixels,
    online_augment,
    train_array,
    train_pixels,
)
from dataprep.train.sources import resolve_source

REPO = Path(__file__).resolve().parents[2]
PHOTOS = sorted((REPO / "examples" / "photos").rglob("*.jpg"))
EDGE = REPO / "tests" / "data" / "edge"
EDGE_JPEGS = sorted(p for d in ("exif_orientation", "cmyk", "grayscale")
                    for p in (EDGE / d).glob("*.jpg"))


def jpeg_at(img: Image.Image, short_side: int, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    resize_short_side(img, short_side).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(params=["simplejpeg", "torchvision"])
def decoder(request, monkeypatch):
    """Each fast decoder in turn: simplejpeg where it applies (then torchvision), or
    torchvision alone."""
    if request.param == "simplejpeg":
        pytest.importorskip("simplejpeg")
        monkeypatch.setattr(jpeg, "_simplejpeg", None)  # looked up again
    else:
        monkeypatch.setattr(jpeg, "_simplejpeg", False)  # as if not installed
    return request.param


@pytest.mark.parametrize("path", PHOTOS[:8] + EDGE_JPEGS, ids=lambda p: p.name)
def test_decode_equals_open_image_exif_cmyk_and_gray_included(path, decoder):
    raw = path.read_bytes()
    expected = np.asarray(open_image(raw))
    got = decode_jpeg_array(raw)
    assert got is not None
    assert got.shape == expected.shape
    # the same libjpeg-turbo decode; a CMYK file's inversion may round differently by one
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= (1 if "cmyk" in path.name
                                                                    else 0)


def test_jpeg_header_reads_the_frame_header():
    from dataprep.train.jpeg import _jpeg_header

    def jpeg_size(raw: bytes):
        head = _jpeg_header(raw)
        return None if head is None else head[:2]

    for path in PHOTOS[:8]:
        with Image.open(path) as img:
            assert jpeg_size(path.read_bytes()) == img.size
    png = io.BytesIO()
    Image.new("RGB", (5, 4)).save(png, "PNG")
    assert jpeg_size(png.getvalue()) is None
    assert jpeg_size(b"\xff\xd8\xff\xe0\x00") is None


def test_simplejpeg_decodes_plain_jpegs_and_leaves_exif_to_torchvision(monkeypatch):
    simplejpeg = pytest.importorskip("simplejpeg")
    calls = []

    def counted(raw, **kwargs):
        calls.append(raw)
        return simplejpeg.decode_jpeg(raw, **kwargs)

    monkeypatch.setattr(jpeg, "_simplejpeg", type("M", (), {"decode_jpeg": staticmethod(counted)}))
    plain = jpeg_at(Image.open(PHOTOS[0]).convert("RGB"), 64)
    rotated = (EDGE / "exif_orientation" / "pil__hopper_orientation_6.jpg").read_bytes()
    cmyk = next((EDGE / "cmyk").glob("*.jpg")).read_bytes()
    for raw in (plain, rotated, cmyk):
        assert decode_jpeg_array(raw) is not None
    assert calls == [plain]


def test_what_the_fast_path_does_not_take_returns_none(decoder):
    png = io.BytesIO()
    Image.new("RGB", (5, 4)).save(png, "PNG")
    assert decode_jpeg_array(png.getvalue()) is None
    raw = PHOTOS[0].read_bytes()
    assert decode_jpeg_array(raw, max_pixels=100) is None  # open_image refuses it, with reason
    # a cut file is left to open_image, which refuses it with its reason (never half an image)
    assert decode_jpeg_array(raw[: len(raw) // 2]) is None
    for name in ("ski__truncated.jpg", "pil__truncated_jpeg.jpg"):
        assert decode_jpeg_array((EDGE / "corrupt" / name).read_bytes()) is None


@pytest.mark.parametrize("seed", range(6))
def test_train_and_eval_arrays_equal_the_pillow_functions(seed, decoder):
    raw = jpeg_at(Image.open(PHOTOS[seed % len(PHOTOS)]).convert("RGB"), 64)
    aug = online_augment(48, 64)
    img, arr = open_image(raw), decode_jpeg_array(raw)
    for key in ("a", "b", "c", "d"):
        expected = train_pixels(img, False, aug, sample_rng(seed, key))
        got = train_array(arr, aug, sample_rng(seed, key))
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(eval_array(arr, aug), eval_pixels(img, False, aug))


@pytest.mark.parametrize("lighting", [False, True])
def test_arrays_written_into_batch_slots_equal_the_pillow_functions(lighting):
    aug = online_augment(48, 64, pca_lighting=0.1 if lighting else 0.0)
    slots = np.zeros((9, 48, 48, 3), np.uint8)
    for i, path in enumerate(PHOTOS[:4]):
        raw = jpeg_at(Image.open(path).convert("RGB"), 64)
        img, arr = open_image(raw), decode_jpeg_array(raw)
        for j, key in enumerate(("a", "b")):
            expected = train_pixels(img, False, aug, sample_rng(i, key))
            slot = slots[2 * i + j]
            assert train_array(arr, aug, sample_rng(i, key), slot) is slot
            np.testing.assert_array_equal(slot, expected)
    eval_array(arr, aug, slots[8])
    np.testing.assert_array_equal(slots[8], eval_pixels(img, False, aug))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("stored", [40, 48])  # at --short-side, or decoded once then resized
def test_stream_batches_equal_with_and_without_the_fast_path(tmp_path, monkeypatch, train,
                                                              stored, decoder):
    writer = TarShardWriter(tmp_path, "train", max_count=10)
    for i, path in enumerate(PHOTOS[:12]):
        img = open_image(path)
        writer.write(Sample(f"k{i:02d}", jpeg_at(img, stored), "jpg", i % 3, {"label": i % 3}))
    writer.close()
    source = resolve_source(str(tmp_path / "train-{000000..000001}.tar"), "train")

    def batches() -> list:
        stream = ShardStream(source.parts, train=train, batch_size=4,
                             aug=Augment(img_size=32, short_side=40), seed=3,
                             batches=3 if train else None)
        return [(x.clone(), y.clone()) for x, y in stream]

    fast = batches()
    monkeypatch.setattr(jpeg, "_decode_jpeg", False)  # the Pillow path: no fast decoder
    monkeypatch.setattr(jpeg, "_simplejpeg", False)
    slow = batches()
    assert len(fast) == len(slow) == 3
    for (xf, yf), (xs, ys) in zip(fast, slow, strict=True):
        assert xf.shape == (4, 3, 32, 32)
        assert xf.equal(xs) and yf.equal(ys)


def _exif_after_frame_header(raw: bytes) -> bytes:
    """The JPEG with its APP1 (Exif) segment moved after its frame header (SOF0), as some
    writers place it."""
    pos, segments = 2, []
    while raw[pos + 1] != 0xDA:
        length = int.from_bytes(raw[pos + 2:pos + 4], "big")
        segments.append(raw[pos:pos + 2 + length])
        pos += 2 + length
    app1 = next(s for s in segments if s[1] == 0xE1)
    rest = [s for s in segments if s is not app1]
    sof = next(i for i, s in enumerate(rest) if s[1] == 0xC0)
    rest.insert(sof + 1, app1)
    return raw[:2] + b"".join(rest) + raw[pos:]


def test_exif_after_the_frame_header_is_still_applied(decoder):
    raw = _exif_after_frame_header(
        (EDGE / "exif_orientation" / "pil__hopper_orientation_6.jpg").read_bytes())
    expected = np.asarray(open_image(raw))
    with Image.open(io.BytesIO(raw)) as img:
        assert img.getexif().get(0x0112) == 6
        assert not np.array_equal(np.asarray(img.convert("RGB")), expected)  # it is turned
    got = decode_jpeg_array(raw)
    assert got is not None
    np.testing.assert_array_equal(got, expected)


def test_simplejpeg_serves_when_torchvision_cannot(monkeypatch):
    pytest.importorskip("simplejpeg")
    monkeypatch.setattr(jpeg, "_simplejpeg", None)
    monkeypatch.setattr(jpeg, "_decode_jpeg", False)  # as if torchvision had no decoder
    raw = jpeg_at(Image.open(PHOTOS[1]).convert("RGB"), 64)
    np.testing.assert_array_equal(decode_jpeg_array(raw), np.asarray(open_image(raw)))
    rotated = (EDGE / "exif_orientation" / "pil__hopper_orientation_6.jpg").read_bytes()
    assert decode_jpeg_array(rotated) is None  # Exif: left to Pillow, which orients it


@pytest.mark.parametrize("workers", [0, 1])  # 1: batches built in a worker's shared memory
def test_eval_batches_skip_bad_samples_and_end_with_a_short_batch(tmp_path, workers):
    writer = TarShardWriter(tmp_path, "val", max_count=100)
    good = []
    for i, path in enumerate(PHOTOS[:8]):
        raw = jpeg_at(open_image(path), 40)
        if i == 2:
            raw = raw[: len(raw) // 3]  # cut: skipped, its slot taken by the next sample
        else:
            good.append((raw, i % 3))
        writer.write(Sample(f"k{i:02d}", raw, "jpg", i % 3, {"label": i % 3}))
    writer.close()
    source = resolve_source(str(tmp_path / "val-000000.tar"), "val")
    stream = ShardStream(source.parts, train=False, batch_size=4,
                         aug=Augment(img_size=32, short_side=40), seed=0)
    got = [(x.clone(), y.clone()) for x, y in data.make_loader(stream, workers)]
    assert [tuple(x.shape) for x, _ in got] == [(4, 3, 32, 32), (3, 3, 32, 32)]
    images = torch.cat([x for x, _ in got]).permute(0, 2, 3, 1).numpy()
    labels = torch.cat([y for _, y in got]).tolist()
    assert labels == [cls for _, cls in good]
    aug = Augment(img_size=32, short_side=40)
    for image, (raw, _) in zip(images, good, strict=True):
        np.testing.assert_array_equal(image, eval_pixels(open_image(raw), False, aug))
