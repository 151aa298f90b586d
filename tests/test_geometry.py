"""Geometry contracts: short-side size, center box, five boxes, ten-crop order."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dataprep.ops.crop import (
    VIEW_NAMES,
    center_box,
    center_crop,
    five_boxes,
    five_crop,
    ten_crop,
)
from dataprep.ops.resize import resize_short_side, short_side_size


@pytest.mark.parametrize(
    ("width", "height", "short_side", "upscale", "expected"),
    [
        (1000, 667, 256, False, (383, 256)),  # the documented case: 1000 * 256 / 667 = 383.8
        (667, 1000, 256, False, (256, 383)),  # portrait
        (500, 500, 256, False, (256, 256)),  # square
        (640, 480, 256, False, (341, 256)),  # 341.33 truncated
        (480, 640, 256, False, (256, 341)),
        (301, 257, 256, False, (299, 256)),  # 299.8 truncated, not rounded
        (257, 256, 256, False, (257, 256)),  # short side already equal: unchanged
        (200, 100, 256, False, (200, 100)),  # already small, no upscale: unchanged
        (100, 200, 256, False, (100, 200)),
        (200, 100, 256, True, (512, 256)),  # upscale
        (101, 99, 256, True, (261, 256)),  # 101 * 256 / 99 = 261.17
        (99, 101, 256, True, (256, 261)),
        (1, 1, 256, True, (256, 256)),  # 1 pixel
        (1, 1, 256, False, (1, 1)),
        (1, 7, 3, True, (3, 21)),
        (7, 1, 3, True, (21, 3)),
        (9, 7, 5, False, (6, 5)),  # 9 * 5 / 7 = 6.43
        (1000, 1, 1, False, (1000, 1)),
        (3, 1000, 2, False, (2, 666)),  # 666.67 truncated
    ],
)
def test_short_side_size_table(width, height, short_side, upscale, expected):
    assert short_side_size(width, height, short_side, upscale=upscale) == expected


@pytest.mark.parametrize(("width", "height", "short_side"), [(0, 5, 3), (5, 0, 3), (5, 5, 0)])
def test_short_side_size_rejects_nonpositive(width, height, short_side):
    with pytest.raises(ValueError, match="positive"):
        short_side_size(width, height, short_side)


def test_resize_short_side_returns_the_computed_size(gradient):
    img = gradient(101, 99)
    assert resize_short_side(img, 64).size == (65, 64)
    assert resize_short_side(img, 256).size == (101, 99)  # no upscale by default
    assert resize_short_side(img, 256, upscale=True).size == (261, 256)
    with pytest.raises(ValueError, match="interpolation"):
        resize_short_side(img, 64, interpolation="sinc")


@pytest.mark.parametrize(
    ("width", "height", "crop", "expected"),
    [
        (259, 259, 224, (18, 18, 242, 242)),  # (259 - 224) / 2 = 17.5 -> 18 (half to even)
        (257, 259, 224, (16, 18, 240, 242)),  # 16.5 -> 16 (half to even, as torchvision)
        (256, 256, 224, (16, 16, 240, 240)),
        (224, 224, 224, (0, 0, 224, 224)),
        (225, 224, 224, (0, 0, 224, 224)),  # 0.5 -> 0
        (227, 224, 224, (2, 0, 226, 224)),  # 1.5 -> 2
        (383, 256, 224, (80, 16, 304, 240)),  # 79.5 -> 80
        (9, 7, 5, (2, 1, 7, 6)),
        (101, 99, 1, (50, 49, 51, 50)),
        (1, 1, 1, (0, 0, 1, 1)),
    ],
)
def test_center_box_table(width, height, crop, expected):
    assert center_box(width, height, crop) == expected


def test_center_box_matches_torchvision_anchor():
    """torchvision: crop_top = int(round((image_height - crop_height) / 2.0))."""
    for m in range(1, 60):
        for c in range(1, m + 1):
            left, top, right, bottom = center_box(m, m, c)
            assert left == top == int(round((m - c) / 2.0))
            assert right - left == bottom - top == c


def test_crop_larger_than_image_names_both_sizes():
    with pytest.raises(ValueError, match=r"225x225.*224x300"):
        center_box(224, 300, 225)
    with pytest.raises(ValueError, match=r"10x10.*9x7"):
        five_boxes(9, 7, 10)
    with pytest.raises(ValueError, match="positive"):
        center_box(9, 7, 0)


def test_five_boxes_order():
    assert five_boxes(9, 7, 5) == [
        (0, 0, 5, 5),  # top-left
        (4, 0, 9, 5),  # top-right
        (0, 2, 5, 7),  # bottom-left
        (4, 2, 9, 7),  # bottom-right
        (2, 1, 7, 6),  # center
    ]
    assert five_boxes(300, 256, 224) == [
        (0, 0, 224, 224),
        (76, 0, 300, 224),
        (0, 32, 224, 256),
        (76, 32, 300, 256),
        (38, 16, 262, 240),
    ]


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def test_ten_crop_views_equal_manual_crops_of_image_and_mirror(gradient):
    img = gradient(41, 29)
    arr = _pixels(img)
    mirror = arr[:, ::-1]
    c = 17
    h, w = arr.shape[:2]
    cy, cx = int(round((h - c) / 2)), int(round((w - c) / 2))
    expected = [
        arr[:c, :c],
        arr[:c, w - c:],
        arr[h - c:, :c],
        arr[h - c:, w - c:],
        arr[cy:cy + c, cx:cx + c],
        mirror[:c, :c],
        mirror[:c, w - c:],
        mirror[h - c:, :c],
        mirror[h - c:, w - c:],
        mirror[cy:cy + c, cx:cx + c],
    ]
    views = ten_crop(img, c)
    assert len(views) == 10 == len(VIEW_NAMES)
    for i, (view, want) in enumerate(zip(views, expected, strict=True)):
        assert view.size == (c, c), VIEW_NAMES[i]
        np.testing.assert_array_equal(_pixels(view), want, err_msg=VIEW_NAMES[i])
    # the gradient makes every view distinct, so a swapped order cannot pass
    assert len({_pixels(v).tobytes() for v in views}) == 10


def test_mirrored_views_are_mirrors_of_the_opposite_corner(gradient):
    img = gradient(50, 38)
    views = [_pixels(v) for v in ten_crop(img, 30)]
    np.testing.assert_array_equal(views[5], views[1][:, ::-1])  # flip top-left = mirrored top-right
    np.testing.assert_array_equal(views[6], views[0][:, ::-1])
    np.testing.assert_array_equal(views[7], views[3][:, ::-1])
    np.testing.assert_array_equal(views[8], views[2][:, ::-1])


def test_five_crop_is_the_first_five_and_flip_false_stops_there(gradient):
    img = gradient(33, 45)
    ten = [_pixels(v) for v in ten_crop(img, 21)]
    five = [_pixels(v) for v in five_crop(img, 21)]
    no_flip = [_pixels(v) for v in ten_crop(img, 21, flip=False)]
    assert len(five) == len(no_flip) == 5
    for a, b, c in zip(ten[:5], five, no_flip, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(_pixels(center_crop(img, 21)), ten[4])


def test_crop_of_exact_size_gives_ten_copies_of_image_and_mirror(gradient):
    img = gradient(13, 13)
    views = [_pixels(v) for v in ten_crop(img, 13)]
    for v in views[:5]:
        np.testing.assert_array_equal(v, _pixels(img))
    for v in views[5:]:
        np.testing.assert_array_equal(v, _pixels(img)[:, ::-1])
