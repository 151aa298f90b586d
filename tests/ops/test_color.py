"""Color ops: torchvision-equal color jitter, PCA lighting, normalization, determinism, pickle."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
from imagegen import gradient
from PIL import Image

from dataprep.errors import UsageError
from dataprep.io.decode import open_image
from dataprep.ops.color import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    ColorJitter,
    PCALighting,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    normalize,
    pca_from_stats,
    pca_lighting,
)
from dataprep.ops.resize import resize_short_side
from dataprep.ops.rng import sample_rng

PHOTOS = Path(__file__).resolve().parents[2] / "examples" / "photos"




def photo(name: str, short_side: int = 96) -> Image.Image:
    return resize_short_side(open_image(next(PHOTOS.glob(f"*/{name}"))), short_side)


IMAGES = {
    "gradient_101x99": gradient(101, 99),
    "gradient_9x7": gradient(9, 7),
    "portrait_7x31": gradient(7, 31),
    "pixel_1x1": gradient(1, 1),
}


@pytest.fixture(scope="module")
def images() -> dict[str, Image.Image]:
    out = dict(IMAGES)
    out["baboon"] = photo("opencv__baboon.jpg")
    out["coffee"] = photo("skimage__coffee.png")
    return out


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


# --- torchvision equality -----------------------------------------------------------------

@pytest.fixture(scope="module")
def F():  # noqa: N802 - torchvision's customary alias
    return pytest.importorskip("torchvision.transforms.v2.functional")


@pytest.mark.parametrize("factor", [0.0, 0.35, 1.0, 1.7])
@pytest.mark.parametrize("ours, theirs", [
    (adjust_brightness, "adjust_brightness"),
    (adjust_contrast, "adjust_contrast"),
    (adjust_saturation, "adjust_saturation"),
])
def test_adjust_equals_torchvision(F, images, ours, theirs, factor):
    for name, img in images.items():
        expected = getattr(F, theirs)(img, factor)
        assert np.array_equal(pixels(ours(img, factor)), pixels(expected)), name


@pytest.mark.parametrize("factor", [-0.5, -0.3, -0.01, 0.0, 0.004, 0.1, 0.27, 0.5])
def test_adjust_hue_equals_torchvision(F, images, factor):
    for name, img in images.items():
        expected = F.adjust_hue(img, factor)
        assert np.array_equal(pixels(adjust_hue(img, factor)), pixels(expected)), name


def test_hue_really_changes_colors(images):
    img = images["gradient_101x99"]
    assert not np.array_equal(pixels(adjust_hue(img, 0.25)), pixels(img))


def test_color_jitter_equals_torchvision_in_drawn_order(F, images):
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.1)
    rng = np.random.default_rng(7)
    kernels = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    for name, img in images.items():
        params = jitter.make_params(rng, img.size)
        factors = [params[k] for k in ("brightness", "contrast", "saturation", "hue")]
        expected = img
        for index in params["order"]:
            expected = kernels[index](expected, factors[index])
        ours = jitter.apply_params(img, params)
        assert np.array_equal(pixels(ours), pixels(expected)), (name, params)


def test_order_matters(images):
    img = images["baboon"]
    kw = {"brightness": 1.6, "contrast": 0.4, "saturation": 1.5, "hue": 0.2}
    a = color_jitter(img, **kw, order=(0, 1, 2, 3))
    b = color_jitter(img, **kw, order=(3, 2, 1, 0))
    assert not np.array_equal(pixels(a), pixels(b))


@pytest.mark.parametrize("args", [
    (0.4, 0.4, 0.4, 0.1),
    (0.0, 0.0, 0.0, 0.0),
    (1.5, 0.0, 2.0, 0.5),
    ((0.5, 1.5), (0.9, 1.1), (0.0, 2.0), (-0.2, 0.1)),
    ((1.0, 1.0), 0.2, 0.0, (0.0, 0.0)),
])
def test_ranges_equal_torchvision(args):
    tv = pytest.importorskip("torchvision.transforms.v2")
    theirs = tv.ColorJitter(*args)
    ours = ColorJitter(*args).ranges()
    assert ours == (theirs.brightness, theirs.contrast, theirs.saturation, theirs.hue)


def test_make_params_draws_within_ranges_and_all_orders():
    jitter = ColorJitter(0.4, (0.9, 1.1), 0.0, 0.1)
    rng = np.random.default_rng(0)
    orders = set()
    for _ in range(600):
        p = jitter.make_params(rng)
        orders.add(p["order"])
        assert sorted(p["order"]) == [0, 1, 2, 3]
        assert 0.6 <= p["brightness"] <= 1.4
        assert 0.9 <= p["contrast"] <= 1.1
        assert p["saturation"] is None  # 0 disables it, as in torchvision
        assert -0.1 <= p["hue"] <= 0.1
    assert orders == set(itertools.permutations(range(4)))


def test_jitter_deterministic_per_seed_key_view(images):
    img = images["baboon"]
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.1)

    def run(seed, key, view):
        return pixels(jitter(img, sample_rng(seed, key, view)))

    assert np.array_equal(run(0, "a", 0), run(0, "a", 0))
    assert not np.array_equal(run(0, "a", 0), run(0, "b", 0))
    assert not np.array_equal(run(0, "a", 0), run(0, "a", 1))
    assert not np.array_equal(run(0, "a", 0), run(1, "a", 0))


# --- PCA lighting -------------------------------------------------------------------------


def independent_pca(arr: np.ndarray, alpha, eigval, eigvec) -> np.ndarray:
    """Written out per channel, not with a matrix product: offset_c = sum_j V[c, j] a_j l_j."""
    offset = [sum(eigvec[c][j] * alpha[j] * eigval[j] for j in range(3)) for c in range(3)]
    out = arr.astype(np.float64) + 255.0 * np.array(offset)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("alpha", [(0.1, -0.05, 0.2), (1.0, 0.0, 0.0), (-2.5, 3.0, -1.0)])
def test_pca_lighting_fixed_alpha(images, alpha):
    for name, img in images.items():
        expected = independent_pca(pixels(img), alpha, IMAGENET_EIGVAL, IMAGENET_EIGVEC)
        out = pca_lighting(img, alpha)
        assert isinstance(out, Image.Image) and out.mode == "RGB"
        assert np.array_equal(pixels(out), expected), name
        arr_out = pca_lighting(pixels(img), alpha)
        assert isinstance(arr_out, np.ndarray) and np.array_equal(arr_out, expected)


def test_pca_lighting_scales_by_255_once():
    # alpha = (1, 0, 0): offset = 0.2175 * first column * 255 = (-31.48, -32.21, -32.37).
    gray = Image.new("RGB", (3, 2), (128, 128, 128))
    out = pixels(pca_lighting(gray, (1.0, 0.0, 0.0)))
    assert out[0, 0].tolist() == [97, 96, 96]


def test_pca_lighting_clips():
    white = Image.new("RGB", (4, 4), (255, 255, 255))
    black = Image.new("RGB", (4, 4), (0, 0, 0))
    assert pixels(pca_lighting(white, (-1.0, 0, 0))).min() == 255  # offset is positive
    assert pixels(pca_lighting(black, (1.0, 0, 0))).max() == 0  # offset is negative


def test_pca_lighting_float_arrays_are_not_rounded_or_clipped(images):
    arr = pixels(images["gradient_101x99"]).astype(np.float32) / 255.0
    alpha = (3.0, -1.0, 0.5)
    out = pca_lighting(arr, alpha)
    assert out.dtype == np.float32
    offset = np.asarray(IMAGENET_EIGVEC) @ (np.asarray(alpha) * np.asarray(IMAGENET_EIGVAL))
    np.testing.assert_allclose(out, arr + offset, rtol=0, atol=1e-6)
    assert out.min() < 0  # no clipping in the float path


def test_pca_lighting_with_stats_eigen(images):
    stats = {"eigval": [0.3, 0.02, 0.001], "eigvec": np.eye(3)[:, [2, 0, 1]].tolist()}
    op = PCALighting.from_stats(stats, sigma=0.2)
    params = op.make_params(np.random.default_rng(3))
    expected = independent_pca(pixels(images["baboon"]), params["alpha"], stats["eigval"],
                               stats["eigvec"])
    assert np.array_equal(pixels(op.apply_params(images["baboon"], params)), expected)
    assert pca_from_stats(stats)["eigvec"][0] == (0.0, 1.0, 0.0)


def test_pca_alpha_is_normal_with_sigma():
    op = PCALighting(sigma=0.1)
    rng = np.random.default_rng(1)
    alphas = np.array([op.make_params(rng)["alpha"] for _ in range(4000)])
    assert abs(alphas.mean()) < 0.01
    np.testing.assert_allclose(alphas.std(axis=0), 0.1, rtol=0.05)


def test_pca_lighting_deterministic_per_key(images):
    op = PCALighting(0.1)
    img = images["coffee"]
    a = pixels(op(img, sample_rng(0, "k", 0)))
    assert np.array_equal(a, pixels(op(img, sample_rng(0, "k", 0))))
    assert not np.array_equal(a, pixels(op(img, sample_rng(0, "j", 0))))


# --- normalize ----------------------------------------------------------------------------


def test_normalize(images):
    img = images["gradient_9x7"]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out = normalize(img, mean, std)
    expected = (pixels(img) / 255.0 - np.array(mean)) / np.array(std)
    assert out.dtype == np.float32 and out.shape == (7, 9, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    with pytest.raises(UsageError):
        normalize(img, mean, (0.2, 0.0, 0.3))


# --- input checks, validation, pickle ------------------------------------------------------

BAD_IMAGES = {
    "L": Image.new("L", (8, 6)),
    "RGBA": Image.new("RGBA", (8, 6)),
    "P": Image.new("P", (8, 6)),
    "I;16": Image.new("I;16", (8, 6)),
    "CMYK": Image.new("CMYK", (8, 6)),
}
BAD_ARRAYS = {
    "float16": np.zeros((6, 8, 3), np.float16),
    "int16": np.zeros((6, 8, 3), np.int16),
    "gray": np.zeros((6, 8), np.uint8),
    "rgba": np.zeros((6, 8, 4), np.uint8),
}
PIL_ONLY_OPS = {
    "adjust_brightness": lambda img: adjust_brightness(img, 1.2),
    "adjust_contrast": lambda img: adjust_contrast(img, 1.2),
    "adjust_saturation": lambda img: adjust_saturation(img, 1.2),
    "adjust_hue": lambda img: adjust_hue(img, 0.1),
    "color_jitter": lambda img: color_jitter(img, brightness=1.1),
    "ColorJitter": lambda img: ColorJitter(0.4, 0.4, 0.4, 0.1)(img, np.random.default_rng(0)),
}
ARRAY_OPS = {
    "pca_lighting": lambda img: pca_lighting(img, (0.1, 0.1, 0.1)),
    "PCALighting": lambda img: PCALighting()(img, np.random.default_rng(0)),
    "normalize": lambda img: normalize(img),
}


@pytest.mark.parametrize("mode", sorted(BAD_IMAGES))
@pytest.mark.parametrize("op", sorted({**PIL_ONLY_OPS, **ARRAY_OPS}))
def test_wrong_modes_rejected(op, mode):
    fn = {**PIL_ONLY_OPS, **ARRAY_OPS}[op]
    with pytest.raises(UsageError, match=f"mode '{mode}'; expected mode 'RGB'"):
        fn(BAD_IMAGES[mode])


@pytest.mark.parametrize("kind", sorted(BAD_ARRAYS))
@pytest.mark.parametrize("op", sorted({**PIL_ONLY_OPS, **ARRAY_OPS}))
def test_wrong_arrays_rejected(op, kind):
    fn = {**PIL_ONLY_OPS, **ARRAY_OPS}[op]
    with pytest.raises(UsageError, match="expected"):
        fn(BAD_ARRAYS[kind])


@pytest.mark.parametrize("kwargs, match", [
    ({"brightness": -0.1}, "brightness"),
    ({"hue": 0.6}, "hue"),
    ({"contrast": (1.5, 0.5)}, "contrast"),
    ({"saturation": (1, 2, 3)}, "saturation"),
])
def test_color_jitter_validates(kwargs, match):
    with pytest.raises(UsageError, match=match):
        ColorJitter(**kwargs)


def test_bad_factors_and_eigen_rejected(images):
    img = images["gradient_9x7"]
    with pytest.raises(UsageError, match=r"hue factor 0.7"):
        adjust_hue(img, 0.7)
    with pytest.raises(UsageError, match="brightness factor"):
        adjust_brightness(img, -1.0)
    with pytest.raises(UsageError, match="permutation"):
        color_jitter(img, order=(0, 0, 1, 2))
    with pytest.raises(UsageError, match=r"expected \(3,\) and \(3, 3\)"):
        PCALighting(eigval=(1.0, 2.0))
    with pytest.raises(UsageError, match="sigma"):
        PCALighting(sigma=-0.1)


@pytest.mark.parametrize("op", [
    ColorJitter(0.4, 0.4, 0.4, 0.1),
    ColorJitter((0.5, 1.5), 0.0, 0.3, (-0.1, 0.2)),
    PCALighting(0.1),
    PCALighting.from_stats({"eigval": [0.3, 0.2, 0.1], "eigvec": np.eye(3).tolist()}),
    adjust_hue,
    pca_lighting,
    color_jitter,
])
def test_ops_survive_pickle(images, op):
    clone = pickle.loads(pickle.dumps(op))
    assert clone == op
    img = images["baboon"]
    if isinstance(op, (ColorJitter, PCALighting)):
        a, b = op(img, np.random.default_rng(5)), clone(img, np.random.default_rng(5))
        assert np.array_equal(pixels(a), pixels(b))
