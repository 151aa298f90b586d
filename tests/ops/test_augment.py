"""Geometric and noise ops, the Augment pipeline, flag parsers: pixels, draws, pickle, errors."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imagegen import gradient
from PIL import Image, ImageFilter

from dataprep.errors import ImageError, UsageError
from dataprep.io.decode import open_image
from dataprep.ops import random_ops as aug
from dataprep.ops.augment import Augment, parse_color_jitter, parse_range
from dataprep.ops.color import ColorJitter, PCALighting, pca_lighting
from dataprep.ops.geometry import (
    crop,
    gaussian_blur,
    gaussian_noise,
    hflip,
    resized_crop,
    resized_crop_params,
    rotate,
    scale_jitter,
    shift,
    vflip,
)
from dataprep.ops.random_ops import (
    Albumentations,
    GaussianBlur,
    GaussianNoise,
    RandomCrop,
    RandomHFlip,
    RandomResizedCrop,
    RandomRotate,
    RandomShift,
    RandomVFlip,
    ScaleJitter,
)
from dataprep.ops.resize import resize_short_side
from dataprep.ops.rng import sample_rng

PHOTOS = Path(__file__).resolve().parents[2] / "examples" / "photos"




def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


GRAD = gradient(101, 99)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return resize_short_side(open_image(PHOTOS / "animals" / "opencv__baboon.jpg"), 160)


@pytest.fixture(scope="module")
def F():  # noqa: N802 - torchvision's customary alias
    return pytest.importorskip("torchvision.transforms.v2.functional")


# --- pure functions against torchvision and numpy -----------------------------------------


def test_flips_are_numpy_flips():
    assert np.array_equal(px(hflip(GRAD)), px(GRAD)[:, ::-1])
    assert np.array_equal(px(vflip(GRAD)), px(GRAD)[::-1])


@pytest.mark.parametrize("box, size", [((0, 0, 99, 101), 64), ((10, 3, 50, 37), 224),
                                       ((98, 100, 1, 1), 5), ((7, 11, 60, 80), 33)])
def test_resized_crop_equals_torchvision(F, box, size):
    top, left, h, w = box
    ours = resized_crop(GRAD, top, left, h, w, size)
    theirs = F.resized_crop(GRAD, top, left, h, w, [size, size])
    assert ours.size == (size, size)
    assert np.array_equal(px(ours), px(theirs))


@pytest.mark.parametrize("angle", [0.0, 5.5, -30.0, 90.0, 181.0])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_rotate_equals_torchvision(F, photo, angle, interpolation):
    mode = getattr(F.InterpolationMode, interpolation.upper())
    ours = rotate(photo, angle, interpolation)
    theirs = F.rotate(photo, angle, interpolation=mode)
    assert np.array_equal(px(ours), px(theirs))


@pytest.mark.parametrize("dx, dy", [(3, -2), (0, 0), (-10, 7), (100, 0), (0, -98), (101, 99),
                                    (-500, 3)])
def test_shift_copies_pixels(dx, dy):
    out = px(shift(GRAD, dx, dy, fill=(1, 2, 3)))
    src = px(GRAD)
    h, w = src.shape[:2]
    for y, x in [(0, 0), (50, 50), (98, 100), (1, 97), (60, 2)]:
        sy, sx = y - dy, x - dx
        expected = src[sy, sx] if 0 <= sy < h and 0 <= sx < w else [1, 2, 3]
        assert out[y, x].tolist() == list(expected), (y, x)


def test_shift_equals_torchvision_integer_affine(F, photo):
    ours = shift(photo, 13, -7)
    theirs = F.affine(photo, angle=0.0, translate=[13, -7], scale=1.0, shear=[0.0, 0.0])
    assert np.array_equal(px(ours), px(theirs))


def test_scale_jitter_is_resize_then_crop(F):
    out = scale_jitter(GRAD, 130, top=5, left=20, size=64)
    resized = F.resize(GRAD, 130)  # torchvision Resize(int): short side 130, upscaled
    assert resized.size == (132, 130)
    assert np.array_equal(px(out), px(resized)[5:69, 20:84])


def test_crop_outside_the_image_is_an_image_error():
    assert crop(GRAD, 98, 100, 1, 1).size == (1, 1)
    with pytest.raises(ImageError, match="does not fit in the 101x99 image"):
        crop(GRAD, 0, 0, 100, 100)
    with pytest.raises(ImageError, match="smaller than --crop 120"):
        RandomCrop(120)(GRAD, np.random.default_rng(0))


def test_gaussian_blur_is_pillow_gaussian_blur():
    assert gaussian_blur(GRAD, 0.0) is GRAD
    expected = GRAD.filter(ImageFilter.GaussianBlur(radius=1.5))
    blurred = px(gaussian_blur(GRAD, 1.5))
    assert np.array_equal(blurred, px(expected))
    # A one-pixel checkerboard is almost flat gray after a blur of sigma 1.5.
    checker = (np.indices((31, 33)).sum(axis=0) % 2 * 255).astype(np.uint8)
    board = Image.fromarray(np.repeat(checker[..., None], 3, axis=2), "RGB")
    assert px(board).std() > 120 and px(gaussian_blur(board, 1.5))[5:-5, 5:-5].std() < 10


def test_gaussian_noise_statistics_and_seed():
    gray = Image.new("RGB", (200, 150), (128, 128, 128))
    out = px(gaussian_noise(gray, 0.05, seed=1)).astype(float)
    np.testing.assert_allclose((out - 128).std(), 0.05 * 255, rtol=0.03)
    assert abs((out - 128).mean()) < 0.2
    assert np.array_equal(px(gaussian_noise(gray, 0.05, 1)), px(gaussian_noise(gray, 0.05, 1)))
    assert not np.array_equal(px(gaussian_noise(gray, 0.05, 1)), px(gaussian_noise(gray, 0.05, 2)))
    white = px(gaussian_noise(Image.new("RGB", (20, 20), (255,) * 3), 0.2, 3))
    assert white.max() == 255 and white.min() < 255  # clipped, not wrapped around
    arr_out = gaussian_noise(px(gray), 0.05, 1)
    assert isinstance(arr_out, np.ndarray) and np.array_equal(arr_out, out.astype(np.uint8))


# --- parameter draws ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 400), height=st.integers(1, 400), seed=st.integers(0, 2**32))
def test_resized_crop_params_stay_inside(width, height, seed):
    p = resized_crop_params(np.random.default_rng(seed), (width, height))
    assert p["height"] > 0 and p["width"] > 0
    assert 0 <= p["top"] <= height - p["height"] and 0 <= p["left"] <= width - p["width"]


def test_resized_crop_params_respect_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(300):
        p = resized_crop_params(rng, (640, 480), scale=(0.3, 0.6), ratio=(0.5, 2.0))
        area = p["width"] * p["height"] / (640 * 480)
        assert 0.28 <= area <= 0.62  # rounding of w and h moves the area a little
        assert 0.48 <= p["width"] / p["height"] <= 2.05


@pytest.mark.parametrize("size, scale, ratio, expected", [
    # No try can fit: center fallback with the ratio clamped, as torchvision.
    ((1000, 10), (0.99, 1.0), (1.0, 1.0), {"top": 0, "left": 495, "height": 10, "width": 10}),
    ((400, 100), (0.9, 1.0), (3 / 4, 4 / 3), {"top": 0, "left": 133, "height": 100, "width": 133}),
    ((100, 400), (0.9, 1.0), (3 / 4, 4 / 3), {"top": 133, "left": 0, "height": 133, "width": 100}),
])
def test_resized_crop_fallback_equals_torchvision(size, scale, ratio, expected):
    tv = pytest.importorskip("torchvision.transforms.v2")
    ours = resized_crop_params(np.random.default_rng(0), size, scale, ratio)
    theirs = tv.RandomResizedCrop(8, scale=scale, ratio=ratio).make_params(
        [Image.new("RGB", size)])
    assert ours == expected == theirs


def test_scale_jitter_draws_both_ends():
    op = ScaleJitter((100, 102), crop=64)
    rng = np.random.default_rng(0)
    shorts = set()
    for _ in range(200):
        p = op.make_params(rng, (101, 99))
        shorts.add(p["short_side"])
        w = int(101 * p["short_side"] / 99)
        assert 0 <= p["top"] <= p["short_side"] - 64 and 0 <= p["left"] <= w - 64
    assert shorts == {100, 101, 102}
    assert op(GRAD, rng).size == (64, 64)


def test_random_flips_and_rotate_draws():
    rng = np.random.default_rng(0)
    assert not any(RandomHFlip(0.0).make_params(rng, (5, 5))["flip"] for _ in range(50))
    assert all(RandomVFlip(1.0).make_params(rng, (5, 5))["flip"] for _ in range(50))
    flips = [RandomHFlip(0.5).make_params(rng, (5, 5))["flip"] for _ in range(400)]
    assert 150 < sum(flips) < 250
    angles = [RandomRotate(15).make_params(rng, (5, 5))["angle"] for _ in range(400)]
    assert -15 <= min(angles) < -10 and 10 < max(angles) <= 15
    shifts = [RandomShift(0.1).make_params(rng, (101, 99)) for _ in range(400)]
    assert max(abs(s["dx"]) for s in shifts) == 10 and max(abs(s["dy"]) for s in shifts) <= 10


# --- the pipeline ---------------------------------------------------------------------------

FULL = Augment(scale_jitter=(120, 160), crop=96, hflip=0.5, vflip=0.1, rotate=10, shift=0.05,
               color_jitter=(0.4, 0.4, 0.4, 0.1), pca_sigma=0.1, blur=(0.1, 1.0), blur_p=0.5,
               noise=0.01)


def test_augment_deterministic_per_seed_key_view(photo):
    def run(seed, key, view, epoch=0):
        return px(FULL.apply(photo, sample_rng(seed, key, view, epoch)))

    first = run(0, "animals__baboon", 3)
    assert first.shape == (96, 96, 3)
    assert np.array_equal(first, run(0, "animals__baboon", 3))
    for other in [run(0, "animals__cat", 3), run(0, "animals__baboon", 4),
                  run(1, "animals__baboon", 3), run(0, "animals__baboon", 3, epoch=1)]:
        assert not np.array_equal(first, other)


def test_augment_equals_its_stages_by_hand(photo):
    params = FULL.make_params(np.random.default_rng(11), photo.size)
    names = [name for name, _ in params]
    assert names == ["geometry", "hflip", "vflip", "rotate", "shift", "color_jitter",
                     "pca_lighting", "blur", "noise"]
    p = dict(params)
    img = scale_jitter(photo, **p["geometry"], size=96)
    img = hflip(img) if p["hflip"]["flip"] else img
    img = vflip(img) if p["vflip"]["flip"] else img
    img = rotate(img, p["rotate"]["angle"])
    img = shift(img, p["shift"]["dx"], p["shift"]["dy"])
    img = ColorJitter(0.4, 0.4, 0.4, 0.1).apply_params(img, p["color_jitter"])
    img = pca_lighting(img, p["pca_lighting"]["alpha"])
    img = gaussian_blur(img, p["blur"]["sigma"])
    img = gaussian_noise(img, p["noise"]["sigma"], p["noise"]["seed"])
    assert np.array_equal(px(FULL.apply_params(photo, params)), px(img))


def test_stages_do_not_shift_each_others_draws(photo):
    base = Augment(random_resized_crop=(0.2, 1.0), crop=64, hflip=0.5)
    more = Augment(random_resized_crop=(0.2, 1.0), crop=64, hflip=0.5, pca_sigma=0.1,
                   color_jitter=(0.4, 0, 0, 0), noise=0.02)
    for seed in range(5):
        a = dict(base.make_params(np.random.default_rng(seed), photo.size))
        b = dict(more.make_params(np.random.default_rng(seed), photo.size))
        assert a["geometry"] == b["geometry"] and a["hflip"] == b["hflip"]


def test_augment_geometry_choices(photo):
    rng = np.random.default_rng(0)
    assert Augment(random_resized_crop=(0.08, 1.0), crop=50).apply(photo, rng).size == (50, 50)
    assert Augment(crop=50).apply(photo, rng).size == (50, 50)
    assert Augment(hflip=1.0).apply(photo, rng).size == photo.size
    identity = Augment()
    assert identity.ops == () and np.array_equal(px(identity.apply(photo, rng)), px(photo))


def test_augment_with_stats_uses_dataset_eigen(photo):
    stats = {"eigval": [0.3, 0.02, 0.001], "eigvec": np.eye(3).tolist()}
    a = Augment(pca_sigma=0.1).with_stats(stats)
    assert a.eigval == (0.3, 0.02, 0.001)
    (name, op), = a.ops
    assert name == "pca_lighting" and op == PCALighting(0.1, stats["eigval"], stats["eigvec"])


@pytest.mark.parametrize("kwargs, match", [
    ({"scale_jitter": (256, 480)}, "need --crop"),
    ({"scale_jitter": (256, 480), "random_resized_crop": (0.1, 1), "crop": 224}, "one of them"),
    ({"scale_jitter": (200, 480), "crop": 224}, "--crop 224 is larger than the smallest"),
    ({"scale_jitter": (480, 256), "crop": 224}, "LO <= HI"),
    ({"crop": -3}, "--crop -3"),
    ({"color_jitter": (0.4, 0.4)}, "--color-jitter"),
    ({"color_jitter": (0.4, 0.4, 0.4, 0.7)}, "hue"),
    ({"hflip": 1.5}, "probability"),
    ({"interpolation": "cubic", "rotate": 5}, "--interpolation"),
    ({"blur": (2.0, 1.0)}, "--blur"),
    ({"shift": 2.0}, "--shift"),
    ({"extra": (len,)}, "make_params"),
])
def test_augment_validates_early(kwargs, match):
    with pytest.raises(UsageError, match=match):
        Augment(**kwargs)


def test_augment_to_json_is_json():
    import json

    d = json.loads(json.dumps(FULL.to_json()))
    assert d["scale_jitter"] == [120, 160] and d["crop"] == 96 and d["pca_sigma"] == 0.1


# --- input checks and pickle ------------------------------------------------------------------

RNG_OPS = [
    RandomResizedCrop(32), ScaleJitter((40, 60), 32), RandomCrop(5), RandomHFlip(), RandomVFlip(),
    RandomRotate(20), RandomShift(0.2), GaussianBlur(), GaussianNoise(0.05), FULL,
    Augment(random_resized_crop=(0.5, 1.0), crop=8, extra=(RandomHFlip(1.0),)),
]
PURE_OPS = [
    lambda img: hflip(img), lambda img: vflip(img), lambda img: crop(img, 0, 0, 2, 2),
    lambda img: resized_crop(img, 0, 0, 2, 2, 4), lambda img: scale_jitter(img, 8, 0, 0, 4),
    lambda img: rotate(img, 3), lambda img: shift(img, 1, 1), lambda img: gaussian_blur(img, 1),
    lambda img: gaussian_noise(img, 0.1, 0),
]
BAD = [Image.new("L", (9, 7)), Image.new("RGBA", (9, 7)), Image.new("P", (9, 7)),
       Image.new("I;16", (9, 7))]


@pytest.mark.parametrize("op", RNG_OPS + PURE_OPS)
@pytest.mark.parametrize("bad", BAD, ids=[b.mode for b in BAD])
def test_wrong_modes_rejected(op, bad):
    with pytest.raises(UsageError, match=f"mode '{bad.mode}'; expected mode 'RGB'"):
        op(bad, np.random.default_rng(0)) if op in RNG_OPS else op(bad)


@pytest.mark.parametrize("bad", [np.zeros((7, 9, 3), np.float32), np.zeros((7, 9), np.uint8),
                                 np.zeros((7, 9, 4), np.uint8)])
def test_noise_rejects_wrong_arrays(bad):
    with pytest.raises(UsageError, match="expected shape"):
        gaussian_noise(bad, 0.1, 0)


@pytest.mark.parametrize("op", RNG_OPS, ids=lambda op: type(op).__name__)
def test_ops_survive_pickle(photo, op):
    clone = pickle.loads(pickle.dumps(op))
    assert clone == op
    a = op(photo, np.random.default_rng(2))
    b = clone(photo, np.random.default_rng(2))
    assert np.array_equal(px(a), px(b))


@pytest.mark.parametrize("fn", [hflip, vflip, crop, resized_crop, scale_jitter, rotate, shift,
                                gaussian_blur, gaussian_noise, resized_crop_params,
                                parse_color_jitter, parse_range])
def test_functions_survive_pickle(fn):
    assert pickle.loads(pickle.dumps(fn)) is fn


def test_augment_runs_in_worker_processes(photo):
    joblib = pytest.importorskip("joblib")
    keys = ["a", "b", "c", "d"]
    expected = [px(FULL.apply(photo, sample_rng(0, k))) for k in keys]
    got = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(FULL.apply)(photo, sample_rng(0, k)) for k in keys)
    assert all(np.array_equal(e, px(g)) for e, g in zip(expected, got, strict=True))


# --- albumentations adapter (optional extra) -------------------------------------------------


def test_albumentations_adapter_is_seeded(photo, monkeypatch):
    monkeypatch.delenv("NO_ALBUMENTATIONS_UPDATE", raising=False)
    aug._albumentations_transform.cache_clear()
    pytest.importorskip("albumentations")
    import os

    op = Albumentations("RandomBrightnessContrast", (("brightness_limit", 0.3),))
    a = op(photo, np.random.default_rng(0))
    assert os.environ.get("NO_ALBUMENTATIONS_UPDATE") == "1"
    assert a.mode == "RGB" and a.size == photo.size
    assert np.array_equal(px(a), px(op(photo, np.random.default_rng(0))))
    assert not all(np.array_equal(px(a), px(op(photo, np.random.default_rng(s))))
                   for s in range(1, 4))
    clone = pickle.loads(pickle.dumps(op))
    assert np.array_equal(px(clone(photo, np.random.default_rng(0))), px(a))
    with pytest.raises(UsageError, match="no transform 'NoSuchThing'"):
        Albumentations("NoSuchThing")(photo, np.random.default_rng(0))


# --- flag parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("0.4", (0.4, 0.4, 0.4, 0.0)),
    ("0.4,0.3,0.2", (0.4, 0.3, 0.2, 0.0)),
    ("0.4, 0.4, 0.4, 0.1", (0.4, 0.4, 0.4, 0.1)),
    ("0,0,0,0.5", (0.0, 0.0, 0.0, 0.5)),
])
def test_parse_color_jitter(text, expected):
    assert parse_color_jitter(text) == expected


@pytest.mark.parametrize("text, match", [
    ("a,b,c,d", "not a comma-separated list of numbers"),
    ("0.1,0.2", "has 2 values; expected 1, 3 or 4"),
    ("-0.1", "must be >= 0"),
    ("0.4,0.4,0.4,0.6", "hue 0.6 must be at most 0.5"),
    ("nan", "finite"),
    ("", "not a comma-separated"),
])
def test_parse_color_jitter_errors_name_the_flag(text, match):
    with pytest.raises(UsageError, match=match) as info:
        parse_color_jitter(text)
    assert str(info.value).startswith("--color-jitter")


@pytest.mark.parametrize("text, kind, expected", [
    ("256,480", int, (256, 480)),
    ("256", int, (256, 256)),
    (" 0.1 , 2.0 ", float, (0.1, 2.0)),
])
def test_parse_range(text, kind, expected):
    assert parse_range(text, kind=kind) == expected


@pytest.mark.parametrize("text, kind, match", [
    ("480,256", int, "LO 480 is larger than HI 256"),
    ("256.5,300", int, "not a comma-separated list of integers"),
    ("1,2,3", int, "has 3 values; expected LO,HI"),
    ("0,10", int, "at least 1"),
])
def test_parse_range_errors_name_the_flag(text, kind, match):
    with pytest.raises(UsageError, match=match) as info:
        parse_range(text, "--scale-jitter", kind, minimum=1)
    assert str(info.value).startswith("--scale-jitter")


def test_rrc_ratio_default_is_torchvision():
    assert RandomResizedCrop(8).ratio == (3 / 4, 4 / 3)
    assert math.isclose(Augment().ratio[1], 4 / 3)
