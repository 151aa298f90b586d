"""Random ops: frozen, picklable dataclasses that draw parameters and change pixels.

Split as torchvision ``transforms.v2``: ``make_params(rng, size)`` draws the parameters (a
dict of plain numbers) from an explicit :class:`numpy.random.Generator`, and
``apply_params(img, params)`` applies the fixed-parameter op of :mod:`dataprep.ops.geometry`;
``op(img, rng)`` does both. ``size`` is the input's ``(width, height)``. :class:`Albumentations`
wraps any albumentations transform (extra ``aug``) when installed.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from dataprep.errors import ImageError, UsageError, require
from dataprep.ops.color import check_rgb
from dataprep.ops.geometry import (
    Params,
    Size,
    crop,
    gaussian_blur,
    gaussian_noise,
    hflip,
    resampling_filter,
    resized_crop,
    resized_crop_params,
    rotate,
    scale_jitter,
    shift,
    vflip,
)
from dataprep.ops.resize import short_side_size


def _uniform_range(value: float | Sequence[float], name: str, minimum: float = -math.inf
                   ) -> tuple[float, float]:
    """``v`` -> ``(-v, v)``; a pair stays as given. Validated."""
    if isinstance(value, (int, float)):
        if not value >= 0:
            raise UsageError(f"{name} {value} must be a non-negative number")
        lo, hi = -float(value), float(value)
    elif isinstance(value, Sequence) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
    else:
        raise UsageError(f"{name} {value!r} must be one number or a (min, max) pair")
    if not (minimum <= lo <= hi and math.isfinite(hi)):
        raise UsageError(f"{name} range ({lo}, {hi}) must be increasing and >= {minimum}")
    return lo, hi


def _check_p(p: float, name: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise UsageError(f"{name} probability {p} must be between 0 and 1")


# --- random ops (frozen dataclasses; pickle-safe) ------------------------------------------


class _RandomOp:
    """``op(img, rng)`` = ``op.apply_params(img, op.make_params(rng, img.size))``."""

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        raise NotImplementedError

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        raise NotImplementedError

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        size = check_rgb(img, type(self).__name__).size
        return self.apply_params(img, self.make_params(rng, size))


@dataclass(frozen=True)
class RandomResizedCrop(_RandomOp):
    """torchvision ``RandomResizedCrop(size, scale, ratio)``: see :func:`resized_crop_params`."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise UsageError(f"--crop {self.size} must be a positive number of pixels")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise UsageError(f"random resized crop scale {self.scale} must be 0 < min <= max")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise UsageError(f"random resized crop ratio {self.ratio} must be 0 < min <= max")
        resampling_filter(self.interpolation)

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        return resized_crop_params(rng, size, self.scale, self.ratio)

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        return resized_crop(img, **params, size=self.size, interpolation=self.interpolation)


@dataclass(frozen=True)
class ScaleJitter(_RandomOp):
    """Short side ``~ U{lo..hi}`` (integers, both ends included), then a uniformly placed
    ``crop`` x ``crop`` crop of the resized image (VGG/ResNet scale augmentation)."""

    short_side: tuple[int, int] = (256, 480)
    crop: int = 224
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        lo, hi = self.short_side
        if not 0 < lo <= hi:
            raise UsageError(f"--scale-jitter {lo},{hi} must be positive with LO <= HI")
        if not 0 < self.crop <= lo:
            raise UsageError(
                f"--crop {self.crop} is larger than the smallest --scale-jitter side {lo}; "
                "every crop would fall outside the resized image"
            )
        resampling_filter(self.interpolation)

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        short = int(rng.integers(self.short_side[0], self.short_side[1] + 1))
        w, h = short_side_size(size[0], size[1], short, upscale=True)
        top = int(rng.integers(0, h - self.crop + 1))
        left = int(rng.integers(0, w - self.crop + 1))
        return {"short_side": short, "top": top, "left": left}

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        return scale_jitter(img, **params, size=self.crop, interpolation=self.interpolation)


@dataclass(frozen=True)
class RandomCrop(_RandomOp):
    """A uniformly placed ``crop`` x ``crop`` crop; an image smaller than that is an
    :class:`ImageError` (skipped and listed by the runner)."""

    crop: int

    def __post_init__(self) -> None:
        if self.crop <= 0:
            raise UsageError(f"--crop {self.crop} must be a positive number of pixels")

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        width, height = size
        if self.crop > width or self.crop > height:
            raise ImageError(
                f"image {width}x{height} is smaller than --crop {self.crop}; resize first "
                "(--short-side at least the crop) or use a smaller --crop"
            )
        top = int(rng.integers(0, height - self.crop + 1))
        left = int(rng.integers(0, width - self.crop + 1))
        return {"top": top, "left": left, "height": self.crop, "width": self.crop}

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        return crop(img, **params)


@dataclass(frozen=True)
class RandomHFlip(_RandomOp):
    """Mirror left-right with probability ``p`` (one ``rng.random()`` draw)."""

    p: float = 0.5

    def __post_init__(self) -> None:
        _check_p(self.p, "horizontal flip")

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        return {"flip": bool(rng.random() < self.p)}

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        return hflip(img) if params["flip"] else check_rgb(img, "hflip")


@dataclass(frozen=True)
class RandomVFlip(_RandomOp):
    """Mirror top-bottom with probability ``p`` (one ``rng.random()`` draw)."""

    p: float = 0.5

    def __post_init__(self) -> None:
        _check_p(self.p, "vertical flip")

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        return {"flip": bool(rng.random() < self.p)}

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        return vflip(img) if params["flip"] else check_rgb(img, "vflip")


@dataclass(frozen=True)
class RandomRotate(_RandomOp):
    """Angle ``~ U(-degrees, degrees)`` (or ``U(min, max)`` for a pair), then :func:`rotate`."""

    degrees: float | tuple[float, float] = 10.0
    interpolation: str = "bilinear"
    fill: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        _uniform_range(self.degrees, "--rotate")
        resampling_filter(self.interpolation, ("nearest", "bilinear", "bicubic"))

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        lo, hi = _uniform_range(self.degrees, "--rotate")
        return {"angle": float(rng.uniform(lo, hi))}

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        return rotate(img, params["angle"], self.interpolation, self.fill)


@dataclass(frozen=True)
class RandomShift(_RandomOp):
    """Translate by ``round(U(-f * W, f * W))`` and ``round(U(-f * H, f * H))`` pixels, as
    torchvision ``RandomAffine(translate=(f, f))``; ``fraction`` is ``f`` or ``(fx, fy)``."""

    fraction: float | tuple[float, float] = 0.1
    fill: tuple[int, int, int] = (0, 0, 0)

    def _fractions(self) -> tuple[float, float]:
        f = self.fraction
        fx, fy = (f, f) if isinstance(f, (int, float)) else (float(f[0]), float(f[1]))
        if not (0 <= fx <= 1 and 0 <= fy <= 1):
            raise UsageError(f"--shift {self.fraction} must be a fraction of the size in [0, 1]")
        return fx, fy

    def __post_init__(self) -> None:
        self._fractions()

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        fx, fy = self._fractions()
        dx = int(round(rng.uniform(-fx * size[0], fx * size[0])))
        dy = int(round(rng.uniform(-fy * size[1], fy * size[1])))
        return {"dx": dx, "dy": dy}

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        return shift(img, params["dx"], params["dy"], self.fill)


@dataclass(frozen=True)
class GaussianBlur(_RandomOp):
    """With probability ``p``, blur with ``sigma ~ U(min, max)`` (torchvision's default range
    0.1..2.0; one number is a fixed sigma). Always draws ``rng.random()`` then
    ``rng.uniform``, whether or not it blurs; a drawn ``sigma`` of 0 means no blur."""

    sigma: float | tuple[float, float] = (0.1, 2.0)
    p: float = 1.0

    def _range(self) -> tuple[float, float]:
        s = self.sigma
        return _uniform_range((s, s) if isinstance(s, (int, float)) else s, "--blur", 0.0)

    def __post_init__(self) -> None:
        self._range()
        _check_p(self.p, "blur")

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        lo, hi = self._range()
        apply = rng.random() < self.p
        sigma = float(rng.uniform(lo, hi))
        return {"sigma": sigma if apply else 0.0}

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        return gaussian_blur(img, params["sigma"])


@dataclass(frozen=True)
class GaussianNoise(_RandomOp):
    """Additive noise of standard deviation ``sigma`` (pixels in [0, 1]); the per-pixel noise
    comes from a 63-bit seed drawn from the generator (see :func:`gaussian_noise`)."""

    sigma: float = 0.02

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise UsageError(f"--noise {self.sigma} must be a non-negative standard deviation")

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        return {"sigma": float(self.sigma), "seed": int(rng.integers(0, 2**63))}

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        return gaussian_noise(img, params["sigma"], params["seed"])  # type: ignore[return-value]


# --- optional albumentations adapter ------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _albumentations_transform(name: str, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it phones home on import
    A = require("albumentations", "aug")  # noqa: N806 - the library's customary alias
    try:
        cls = getattr(A, name)
    except AttributeError:
        raise UsageError(f"albumentations has no transform {name!r}") from None
    return A.Compose([cls(**dict(kwargs), p=1.0)])


@dataclass(frozen=True)
class Albumentations(_RandomOp):
    """Any albumentations transform by name, e.g. ``Albumentations("MotionBlur",
    (("blur_limit", 7),))``, always applied (p=1). Its randomness is seeded from ``rng`` (one
    32-bit draw), so it is as reproducible as the native ops. Needs the ``aug`` extra."""

    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    def make_params(self, rng: np.random.Generator, size: Size) -> Params:
        return {"seed": int(rng.integers(0, 2**32))}

    def apply_params(self, img: Image.Image, params: Params) -> Image.Image:
        transform = _albumentations_transform(self.name, tuple(self.kwargs))
        transform.set_random_seed(params["seed"])
        out = transform(image=np.asarray(check_rgb(img, self.name)))["image"]
        return Image.fromarray(np.ascontiguousarray(out), "RGB")
