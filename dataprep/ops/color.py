"""Color ops: torchvision-exact color jitter, AlexNet PCA lighting, normalization.

Each op is a pure function with fixed parameters (``color_jitter``, ``pca_lighting``) plus a
small frozen dataclass (``ColorJitter``, ``PCALighting``) whose ``make_params(rng)`` draws the
parameters from an explicit :class:`numpy.random.Generator` and whose ``__call__(img, rng)``
applies them. Nothing touches global random state; every object pickles (workers get copies).

Inputs are 8-bit RGB: a PIL image of mode ``"RGB"`` (and, where stated, a ``uint8`` array of
shape (H, W, 3)). Other modes and dtypes raise :class:`~dataprep.errors.UsageError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from dataprep.errors import UsageError

# AlexNet / fb.resnet.torch ImageNet PCA for RGB pixels in [0, 1]; eigenvectors are columns.
IMAGENET_EIGVAL: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# The order of the four color-jitter adjustments, as indices in ColorJitterParams.order.
JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")


# --- input checks -------------------------------------------------------------------------


def check_rgb(img: Any, op: str) -> Image.Image:
    """Return ``img`` if it is a PIL ``"RGB"`` image, else raise :class:`UsageError`."""
    if isinstance(img, Image.Image):
        if img.mode == "RGB":
            return img
        raise UsageError(
            f"{op}: got a PIL image of mode {img.mode!r}; expected mode 'RGB'. Convert it with "
            "img.convert('RGB') or decode with dataprep.io.decode.open_image, which returns RGB"
        )
    raise UsageError(f"{op}: got a {type(img).__name__}; expected a PIL image of mode 'RGB'")


def rgb_array(img: Any, op: str, allow_float: bool = False) -> np.ndarray:
    """Pixels of an RGB PIL image or an (H, W, 3) array, checked.

    Accepted arrays: ``uint8`` (0..255) and, with ``allow_float``, ``float32``/``float64``
    (0..1). Anything else raises :class:`UsageError` saying what was expected.
    """
    if isinstance(img, Image.Image):
        return np.asarray(check_rgb(img, op))
    if isinstance(img, np.ndarray):
        dtypes = ("uint8", "float32", "float64") if allow_float else ("uint8",)
        if img.dtype.name in dtypes and img.ndim == 3 and img.shape[2] == 3:
            return img
        raise UsageError(
            f"{op}: got an array of dtype {img.dtype} and shape {img.shape}; expected shape "
            f"(height, width, 3) RGB with dtype {' or '.join(dtypes)}"
            + (" (floats in [0, 1])" if allow_float else "")
        )
    raise UsageError(
        f"{op}: got a {type(img).__name__}; expected a PIL 'RGB' image or an (H, W, 3) array"
    )


def _like(img: Image.Image | np.ndarray, pixels: np.ndarray) -> Image.Image | np.ndarray:
    """Return ``pixels`` in the container type of ``img`` (PIL in, PIL out)."""
    return Image.fromarray(pixels, "RGB") if isinstance(img, Image.Image) else pixels


# --- color jitter (torchvision semantics on PIL images) -----------------------------------


def _check_factor(name: str, factor: float) -> None:
    if not math.isfinite(factor) or factor < 0:
        raise UsageError(f"{name} factor {factor} must be a non-negative number (1 = unchanged)")


def adjust_brightness(img: Image.Image, factor: float) -> Image.Image:
    """Blend with black: ``factor`` 0 gives black, 1 the original (torchvision, Pillow)."""
    _check_factor("brightness", factor)
    return ImageEnhance.Brightness(check_rgb(img, "adjust_brightness")).enhance(factor)


def adjust_contrast(img: Image.Image, factor: float) -> Image.Image:
    """Blend with the mean gray level: 0 gives flat gray, 1 the original (torchvision)."""
    _check_factor("contrast", factor)
    return ImageEnhance.Contrast(check_rgb(img, "adjust_contrast")).enhance(factor)


def adjust_saturation(img: Image.Image, factor: float) -> Image.Image:
    """Blend with the grayscale image: 0 gives gray, 1 the original (torchvision)."""
    _check_factor("saturation", factor)
    return ImageEnhance.Color(check_rgb(img, "adjust_saturation")).enhance(factor)


def adjust_hue(img: Image.Image, factor: float) -> Image.Image:
    """Rotate hue by ``factor`` turns, ``factor`` in [-0.5, 0.5] (torchvision's PIL path).

    Pillow's 8-bit HSV is used: the hue channel is shifted by ``int(factor * 255)`` (truncated
    toward zero) modulo 256, then converted back to RGB.
    """
    if not (-0.5 <= factor <= 0.5):
        raise UsageError(f"hue factor {factor} is not in [-0.5, 0.5]")
    h, s, v = check_rgb(img, "adjust_hue").convert("HSV").split()
    hue = np.asarray(h, dtype=np.uint8)
    shift = np.uint8(int(factor * 255) % 256)
    hue = hue + shift  # uint8 arithmetic wraps around, as a hue should
    return Image.merge("HSV", (Image.fromarray(hue, "L"), s, v)).convert("RGB")


_ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(
    img: Image.Image,
    *,
    brightness: float | None = None,
    contrast: float | None = None,
    saturation: float | None = None,
    hue: float | None = None,
    order: Sequence[int] = (0, 1, 2, 3),
) -> Image.Image:
    """Apply the given adjustments in ``order`` (indices into brightness, contrast, saturation,
    hue); a ``None`` factor is skipped. Equals torchvision ``ColorJitter.transform`` on PIL."""
    if sorted(order) != [0, 1, 2, 3]:
        raise UsageError(f"color jitter order {tuple(order)} must be a permutation of 0, 1, 2, 3")
    img = check_rgb(img, "color_jitter")
    factors = (brightness, contrast, saturation, hue)
    for index in order:
        factor = factors[index]
        if factor is not None:
            img = _ADJUST[index](img, float(factor))
    return img


def jitter_range(
    value: float | Sequence[float],
    name: str,
    center: float = 1.0,
    bound: tuple[float, float] = (0.0, math.inf),
    clip_first_on_zero: bool = True,
) -> tuple[float, float] | None:
    """torchvision ``ColorJitter._check_input``: ``v`` -> ``[max(0, 1 - v), 1 + v]`` (hue:
    ``[-v, v]``), or an explicit ``(min, max)``; ``None`` when the range leaves images unchanged."""
    if isinstance(value, (int, float)):
        if not value >= 0:
            raise UsageError(f"{name} jitter {value} must be a non-negative number")
        lo, hi = center - value, center + value
        if clip_first_on_zero:
            lo = max(lo, 0.0)
    elif isinstance(value, Sequence) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
    else:
        raise UsageError(f"{name} jitter {value!r} must be one number or a (min, max) pair")
    if not bound[0] <= lo <= hi <= bound[1]:
        raise UsageError(
            f"{name} jitter range ({lo}, {hi}) must be increasing and within {bound}"
        )
    return None if lo == hi == center else (float(lo), float(hi))


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast, saturation and hue, as torchvision ``ColorJitter``.

    Each argument is a number ``v`` (brightness/contrast/saturation factor drawn uniformly from
    ``[max(0, 1 - v), 1 + v]``; hue from ``[-v, v]``, ``v <= 0.5``) or a ``(min, max)`` pair;
    0 disables that adjustment. Draws, in this order, from the generator given:
    ``order = rng.permutation(4)`` (the order the four adjustments are applied), then one
    ``rng.uniform(min, max)`` for each *enabled* factor in the order brightness, contrast,
    saturation, hue — the same sequence torchvision draws from torch's generator.
    """

    brightness: float | tuple[float, float] = 0.0
    contrast: float | tuple[float, float] = 0.0
    saturation: float | tuple[float, float] = 0.0
    hue: float | tuple[float, float] = 0.0

    def __post_init__(self) -> None:
        self.ranges()  # validate now, not in a worker

    def ranges(self) -> tuple[tuple[float, float] | None, ...]:
        return (
            jitter_range(self.brightness, "brightness"),
            jitter_range(self.contrast, "contrast"),
            jitter_range(self.saturation, "saturation"),
            jitter_range(self.hue, "hue", center=0.0, bound=(-0.5, 0.5), clip_first_on_zero=False),
        )

    def make_params(self, rng: np.random.Generator, size: tuple[int, int] | None = None
                    ) -> dict[str, Any]:
        """``{"order": (4 ints), "brightness": float | None, ...}`` for :func:`color_jitter`."""
        order = tuple(int(i) for i in rng.permutation(4))
        params: dict[str, Any] = {"order": order}
        for name, bounds in zip(JITTER_NAMES, self.ranges(), strict=True):
            params[name] = None if bounds is None else float(rng.uniform(bounds[0], bounds[1]))
        return params

    def apply_params(self, img: Image.Image, params: dict[str, Any]) -> Image.Image:
        return color_jitter(img, **params)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return self.apply_params(img, self.make_params(rng, img.size))


# --- PCA lighting (AlexNet) ---------------------------------------------------------------


def _eig_arrays(eigval: Any, eigvec: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        val = np.asarray(eigval, dtype=np.float64)
        vec = np.asarray(eigvec, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError("eigval/eigvec must hold numbers (3 and 3x3)") from None
    if val.shape != (3,) or vec.shape != (3, 3):
        raise UsageError(
            f"eigval has shape {val.shape} and eigvec {vec.shape}; expected (3,) and (3, 3) "
            "(eigenvectors as columns), as written by `dataprep stats`"
        )
    return val, vec


def pca_offset(alpha: Sequence[float], eigval: Any = IMAGENET_EIGVAL,
               eigvec: Any = IMAGENET_EIGVEC) -> np.ndarray:
    """The RGB offset ``eigvec @ (alpha * eigval)`` for pixels in [0, 1] (float64, shape (3,))."""
    val, vec = _eig_arrays(eigval, eigvec)
    a = np.asarray(alpha, dtype=np.float64)
    if a.shape != (3,):
        raise UsageError(f"PCA lighting alpha has shape {a.shape}; expected 3 numbers")
    return vec @ (a * val)


def pca_lighting(
    img: Image.Image | np.ndarray,
    alpha: Sequence[float],
    eigval: Any = IMAGENET_EIGVAL,
    eigvec: Any = IMAGENET_EIGVEC,
) -> Image.Image | np.ndarray:
    """AlexNet lighting: add ``eigvec @ (alpha * eigval)`` to every RGB pixel.

    ``eigval``/``eigvec`` describe pixels in [0, 1]. For 8-bit input (PIL ``"RGB"`` or a
    ``uint8`` array) the offset is multiplied by 255 exactly once, added in float64, rounded to
    the nearest integer (``np.rint``, ties to even) and clipped to [0, 255]; the result has the
    input's type. For ``float32``/``float64`` arrays (pixels in [0, 1]) the offset is added as
    is, with no rounding and no clipping.
    """
    pixels = rgb_array(img, "pca_lighting", allow_float=True)
    offset = pca_offset(alpha, eigval, eigvec)
    if pixels.dtype == np.uint8:
        out = np.clip(np.rint(pixels.astype(np.float64) + 255.0 * offset), 0, 255)
        return _like(img, out.astype(np.uint8))
    return (pixels + offset).astype(pixels.dtype)


def pca_from_stats(stats: dict[str, Any]) -> dict[str, tuple]:
    """``{"eigval": ..., "eigvec": ...}`` (tuples) from a ``stats.json`` dictionary."""
    val, vec = _eig_arrays(stats.get("eigval"), stats.get("eigvec"))
    return {"eigval": tuple(float(v) for v in val),
            "eigvec": tuple(tuple(float(v) for v in row) for row in vec)}


@dataclass(frozen=True)
class PCALighting:
    """Random AlexNet lighting: ``alpha ~ N(0, sigma)`` per eigenvector (3 draws of
    ``rng.normal(0, sigma)``), then :func:`pca_lighting`. Defaults: sigma 0.1, ImageNet PCA."""

    sigma: float = 0.1
    eigval: tuple[float, ...] = IMAGENET_EIGVAL
    eigvec: tuple[tuple[float, ...], ...] = IMAGENET_EIGVEC

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise UsageError(f"PCA lighting sigma {self.sigma} must be a non-negative number")
        # Tuples keep the object hashable and cheap to pickle, whatever sequence was given.
        for key, value in pca_from_stats({"eigval": self.eigval, "eigvec": self.eigvec}).items():
            object.__setattr__(self, key, value)

    @classmethod
    def from_stats(cls, stats: dict[str, Any], sigma: float = 0.1) -> PCALighting:
        return cls(sigma=sigma, **pca_from_stats(stats))

    def make_params(self, rng: np.random.Generator, size: tuple[int, int] | None = None
                    ) -> dict[str, Any]:
        return {"alpha": tuple(float(a) for a in rng.normal(0.0, self.sigma, size=3))}

    def apply_params(self, img: Image.Image | np.ndarray, params: dict[str, Any]
                     ) -> Image.Image | np.ndarray:
        return pca_lighting(img, params["alpha"], self.eigval, self.eigvec)

    def __call__(self, img: Image.Image | np.ndarray, rng: np.random.Generator
                 ) -> Image.Image | np.ndarray:
        size = img.size if isinstance(img, Image.Image) else (img.shape[1], img.shape[0])
        return self.apply_params(img, self.make_params(rng, size))


# --- normalization ------------------------------------------------------------------------


def normalize(
    img: Image.Image | np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """``(x - mean) / std`` per channel for pixels scaled to [0, 1]; float32 (H, W, 3).

    8-bit input is divided by 255 first; float arrays are taken to be in [0, 1] already.
    ``mean``/``std`` are the ``stats.json`` values (or the ImageNet defaults).
    """
    pixels = rgb_array(img, "normalize", allow_float=True)
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    if m.shape != (3,) or s.shape != (3,) or not np.all(s > 0):
        raise UsageError(f"normalize needs 3 means and 3 positive stds, got {mean} and {std}")
    x = pixels.astype(np.float64) / (255.0 if pixels.dtype == np.uint8 else 1.0)
    return ((x - m) / s).astype(np.float32)
