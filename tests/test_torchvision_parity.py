"""Pixels equal torchvision's PIL path: ``Resize(s)`` then ``TenCrop(c)``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dataprep.io.decode import open_image
from dataprep.jobs.tencrop import ResizeTask
from dataprep.ops.crop import ten_crop
from dataprep.ops.resize import resize_short_side
from dataprep.records import Record

v2 = pytest.importorskip("torchvision.transforms.v2")

JPEG_PHOTOS = [
    "animals/opencv__butterfly.jpg",  # 493x356, odd width
    "plants/stdlib__acanthus-mollis.jpg",  # portrait
    "scenes/opencv__aero1.jpg",  # 640x480
    "plants/pillow__flower2.jpg",  # 300x225: upscaled to 256
]


def assert_same_pixels(ours: Image.Image, theirs: Image.Image, what: str) -> None:
    assert ours.size == theirs.size, what
    assert ours.mode == theirs.mode == "RGB", what
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=what)


def torchvision_tencrop(img: Image.Image, short_side: int, crop: int) -> list[Image.Image]:
    resized = v2.Resize(short_side)(img)
    return list(v2.TenCrop(crop)(resized))


def ours_tencrop(img: Image.Image, short_side: int, crop: int) -> list[Image.Image]:
    # torchvision always resizes, so compare with upscale allowed
    return ten_crop(resize_short_side(img, short_side, upscale=True), crop)


@pytest.mark.parametrize(
    ("width", "height"),
    [(101, 99), (99, 101), (301, 257), (257, 301), (640, 480), (480, 640), (9, 7), (1, 1),
     (256, 256), (1000, 667)],
)
def test_resize_equals_torchvision_on_generated_images(gradient, width, height):
    img = gradient(width, height)
    for short_side in (256, 64):
        ours = resize_short_side(img, short_side, upscale=True)
        theirs = v2.Resize(short_side)(img)
        assert_same_pixels(ours, theirs, f"{width}x{height} -> {short_side}")


@pytest.mark.parametrize(
    ("width", "height", "short_side", "crop"),
    [(101, 99, 256, 224), (301, 257, 256, 224), (257, 301, 256, 224), (640, 480, 256, 224),
     (480, 640, 256, 224), (9, 7, 11, 5)],
)
def test_tencrop_equals_torchvision_on_generated_images(gradient, width, height, short_side, crop):
    img = gradient(width, height)
    ours = ours_tencrop(img, short_side, crop)
    theirs = torchvision_tencrop(img, short_side, crop)
    assert len(ours) == len(theirs) == 10
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert_same_pixels(a, b, f"view {i} of {width}x{height}")


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos"])
def test_interpolations_match_torchvision(gradient, interpolation):
    img = gradient(301, 257)
    mode = getattr(v2.InterpolationMode, interpolation.upper())
    ours = resize_short_side(img, 128, interpolation)
    theirs = v2.Resize(128, interpolation=mode)(img)
    assert_same_pixels(ours, theirs, interpolation)


@pytest.mark.parametrize("name", JPEG_PHOTOS)
def test_tencrop_equals_torchvision_on_real_photos(photos, name):
    img = Image.open(photos / name).convert("RGB")
    for i, (a, b) in enumerate(zip(ours_tencrop(img, 256, 224), torchvision_tencrop(img, 256, 224),
                                   strict=True)):
        assert_same_pixels(a, b, f"{name} view {i}")


@pytest.mark.parametrize("name", JPEG_PHOTOS)
def test_exact_decode_then_resize_equals_torchvision(photos, name):
    """The ``--exact`` path: full decode (no draft), then resize."""
    path = photos / name
    ours = resize_short_side(open_image(path), 256, upscale=True)
    theirs = v2.Resize(256)(Image.open(path).convert("RGB"))
    assert_same_pixels(ours, theirs, name)


DRAFTED_PHOTOS = ["plants/opencv__aloeL.jpg", "animals/stdlib__march-pastoral.jpg",
                  "scenes/stdlib__nagasaki-boats.jpg", "scenes/stdlib__dust-bowl-home.jpg"]


def _record(path) -> Record:
    return Record(key="k", path=str(path), label=0, class_name="c")


@pytest.mark.parametrize("name", DRAFTED_PHOTOS)
@pytest.mark.parametrize("short_side", [128, 100])
def test_draft_path_gives_the_exact_output_size(photos, name, short_side):
    """The default (draft) path of resize/tencrop sizes its output as a full decode would."""
    path = photos / name
    with Image.open(path) as probe:
        full_size = probe.size
    drafted = open_image(path, draft_short_side=short_side)
    # the draft really decoded fewer pixels (1/2, 1/4 or 1/8 scale), yet not below the target
    assert drafted.width < full_size[0] and drafted.height < full_size[1]
    assert min(drafted.size) >= short_side
    ours = ResizeTask(short_side=short_side).resized(_record(path))
    exact = ResizeTask(short_side=short_side, exact=True).resized(_record(path))
    theirs = v2.Resize(short_side)(Image.open(path).convert("RGB"))
    assert ours.size == exact.size == theirs.size
    assert_same_pixels(exact, theirs, f"{name} exact")


@pytest.mark.parametrize("name", DRAFTED_PHOTOS[1:])
def test_draft_path_pixels_stay_close(photos, name):
    path = photos / name
    ours = ResizeTask(short_side=128).resized(_record(path))
    theirs = v2.Resize(128)(Image.open(path).convert("RGB"))
    diff = np.abs(np.asarray(ours, dtype=np.int16) - np.asarray(theirs, dtype=np.int16))
    assert 0 < diff.mean() < 2.5, f"{name}: mean abs diff {diff.mean():.2f}"


def test_draft_is_skipped_when_it_would_go_below_the_target(photos):
    path = photos / "plants/pillow__flower2.jpg"  # 300x225: halving would go below 200
    assert open_image(path, draft_short_side=200).size == (300, 225)
