"""Random augmentation: geometric and noise ops, the :class:`Augment` pipeline, flag parsers.

Split as torchvision ``transforms.v2``: each op is a pure function with fixed parameters
(``resized_crop``, ``scale_jitter``, ``crop``, ``rotate``, ``shift``, ``gaussian_blur``,
``gaussian_noise``, ``hflip``, ``vflip``) and a frozen, picklable dataclass whose
``make_params(rng, size)`` draws the parameters (a dict of plain numbers) from an explicit
:class:`numpy.random.Generator` and whose ``apply_params(img, params)`` changes the pixels;
``op(img, rng)`` does both. ``size`` is the input's ``(width, height)``.

:class:`Augment` composes them from a spec; it is what ``dataprep augment``, ``tencrop
--color-jitter``, ``preview`` and the trainer call. Only numpy and Pillow are needed;
:class:`Albumentations` wraps any albumentations transform (extra ``aug``) when installed.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from dataprep.errors import ImageError, UsageError, require
from dataprep.ops.color import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    ColorJitter,
    PCALighting,
    check_rgb,
    pca_from_stats,
    rgb_array,
)
from dataprep.ops.resize import INTERPOLATIONS, resize_short_side, short_side_size

Size = tuple[int, int]  # (width, height), as PIL's Image.size
Params = dict[str, Any]

# --- pure functions with fixed parameters -------------------------------------------------


def _resample(interpolation: str, allowed: Sequence[str] | None = None) -> Image.Resampling:
    names = list(allowed) if allowed is not None else sorted(INTERPOLATIONS)
    if interpolation not in names:
        raise UsageError(f"--interpolation {interpolation!r} is not supported here; "
                         f"choose one of {', '.join(names)}")
    return INTERPOLATIONS[interpolation]


def hflip(img: Image.Image) -> Image.Image:
    """Mirror left-right."""
    return check_rgb(img, "hflip").transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def vflip(img: Image.Image) -> Image.Image:
    """Mirror top-bottom."""
    return check_rgb(img, "vflip").transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def crop(img: Image.Image, top: int, left: int, height: int, width: int) -> Image.Image:
    """The ``width`` x ``height`` region at (``left``, ``top``) (torchvision ``crop`` order).

    Raises :class:`ImageError` when the region is empty or leaves the image.
    """
    check_rgb(img, "crop")
    if not (height > 0 and width > 0 and top >= 0 and left >= 0
            and top + height <= img.height and left + width <= img.width):
        raise ImageError(
            f"crop {width}x{height} at ({left}, {top}) does not fit in the {img.width}x"
            f"{img.height} image; resize first (a larger --short-side) or use a smaller --crop"
        )
    return img.crop((left, top, left + width, top + height))


def resized_crop(img: Image.Image, top: int, left: int, height: int, width: int, size: int,
                 interpolation: str = "bilinear") -> Image.Image:
    """Crop (see :func:`crop`) then resize to ``size`` x ``size`` with Pillow (antialiased),
    the pixels of torchvision ``resized_crop`` on PIL images."""
    resample = _resample(interpolation)
    return crop(img, top, left, height, width).resize((size, size), resample)


def scale_jitter(img: Image.Image, short_side: int, top: int, left: int, size: int,
                 interpolation: str = "bilinear") -> Image.Image:
    """Resize so the shorter side is ``short_side`` (up or down, rounded as
    :func:`short_side_size`), then
    take the ``size`` x ``size`` crop at (``left``, ``top``) of the resized image."""
    resized = resize_short_side(check_rgb(img, "scale_jitter"), short_side, interpolation,
                                upscale=True)
    return crop(resized, top, left, size, size)


def rotate(img: Image.Image, angle: float, interpolation: str = "bilinear",
           fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Rotate ``angle`` degrees counter-clockwise about the center, same size; corners are
    ``fill`` (Pillow ``rotate``, as torchvision ``rotate(expand=False)`` on PIL)."""
    resample = _resample(interpolation, ("nearest", "bilinear", "bicubic"))
    return check_rgb(img, "rotate").rotate(angle, resample=resample, fillcolor=tuple(fill))


def shift(img: Image.Image, dx: int, dy: int, fill: tuple[int, int, int] = (0, 0, 0)
          ) -> Image.Image:
    """Translate by whole pixels: content moves ``dx`` right and ``dy`` down; the uncovered
    border is ``fill``. No resampling, so pixels are copied exactly."""
    src = np.asarray(check_rgb(img, "shift"))
    h, w = src.shape[:2]
    out = np.empty_like(src)
    out[...] = np.asarray(fill, dtype=np.uint8)
    dx, dy = int(dx), int(dy)
    if abs(dx) < w and abs(dy) < h:
        out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
            src[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return Image.fromarray(out, "RGB")


def gaussian_blur(img: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (Pillow ``GaussianBlur``, whose
    ``radius`` is the standard deviation; close to, not bit-equal with, torchvision's kernel).
    ``sigma <= 0`` returns the image unchanged."""
    check_rgb(img, "gaussian_blur")
    return img.filter(ImageFilter.GaussianBlur(radius=float(sigma))) if sigma > 0 else img


def gaussian_noise(img: Image.Image | np.ndarray, sigma: float, seed: int
                   ) -> Image.Image | np.ndarray:
    """Add i.i.d. normal noise of standard deviation ``sigma`` (pixels in [0, 1], so
    ``255 * sigma`` levels) to every channel; round to nearest, clip to [0, 255].

    The noise comes from ``numpy.random.Generator(PCG64(seed))``: same ``seed``, same noise.
    Takes a PIL ``"RGB"`` image or a ``uint8`` (H, W, 3) array; returns the same type.
    """
    pixels = rgb_array(img, "gaussian_noise")
    noise = np.random.Generator(np.random.PCG64(int(seed))).normal(
        0.0, 255.0 * float(sigma), size=pixels.shape)
    out = np.clip(np.rint(pixels + noise), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB") if isinstance(img, Image.Image) else out


# --- parameter draws ----------------------------------------------------------------------


def resized_crop_params(rng: np.random.Generator, size: Size,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Params:
    """torchvision ``RandomResizedCrop.make_params`` with a numpy generator.

    Up to 10 tries: area fraction ``~ U(scale)``, aspect ratio ``~ exp(U(log ratio))``,
    ``w = round(sqrt(area * ratio))``, ``h = round(sqrt(area / ratio))``; the first that fits
    gets ``top ~ U{0..H-h}``, ``left ~ U{0..W-w}``. Otherwise a center crop with the ratio
    clamped to ``ratio`` (the whole image when its ratio is inside). Returns top/left/height/width.
    """
    width, height = size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return {"top": top, "left": left, "height": h, "width": w}
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return {"top": (height - h) // 2, "left": (width - w) // 2, "height": h, "width": w}


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
        _resample(self.interpolation)

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
        _resample(self.interpolation)

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
        _resample(self.interpolation, ("nearest", "bilinear", "bicubic"))

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


# --- the pipeline -------------------------------------------------------------------------

# Fixed stage order. Every call draws one seed per stage, enabled or not, so turning a stage
# on or off never changes what the other stages draw (adding PCA lighting keeps the crops).
STAGES = ("geometry", "hflip", "vflip", "rotate", "shift", "color_jitter", "pca_lighting",
          "blur", "noise", "extra")


def _pair(value: Any, flag: str, kind: Callable[[Any], Any] = float) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise UsageError(f"{flag} {value!r} must be a (min, max) pair")
    return (kind(value[0]), kind(value[1]))


@dataclass(frozen=True)
class Augment:
    """A training-time augmentation pipeline, applied in this fixed order:

    1. geometry (at most one): ``scale_jitter=(lo, hi)`` + ``crop`` (:class:`ScaleJitter`);
       ``random_resized_crop=(min_scale, max_scale)`` + ``crop`` with ``ratio``
       (:class:`RandomResizedCrop`); or ``crop`` alone (:class:`RandomCrop`). Output
       ``crop`` x ``crop``.
    2. ``hflip`` / 3. ``vflip``: probabilities. 4. ``rotate``: max degrees.
       5. ``shift``: max fraction of the size.
    6. ``color_jitter=(brightness, contrast, saturation, hue)`` (:class:`ColorJitter`).
    7. ``pca_sigma`` > 0: PCA lighting with ``eigval``/``eigvec`` (ImageNet by default;
       :meth:`with_stats` takes them from ``stats.json``).
    8. ``blur=(min_sigma, max_sigma)`` with probability ``blur_p``. 9. ``noise``: sigma.
    10. ``extra``: further picklable ops (e.g. :class:`Albumentations`), in order.

    Zero / ``None`` disables a stage. Input and output: PIL ``"RGB"`` images.
    """

    crop: int | None = None
    scale_jitter: tuple[int, int] | None = None
    random_resized_crop: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.0
    vflip: float = 0.0
    rotate: float = 0.0
    shift: float = 0.0
    color_jitter: tuple[float, float, float, float] | None = None
    pca_sigma: float = 0.0
    eigval: tuple[float, ...] = IMAGENET_EIGVAL
    eigvec: tuple[tuple[float, ...], ...] = IMAGENET_EIGVEC
    blur: tuple[float, float] | None = None
    blur_p: float = 1.0
    noise: float = 0.0
    interpolation: str = "bilinear"
    extra: tuple[Any, ...] = ()
    _ops: tuple[tuple[str, Any], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Normalize sequences to tuples (hashable, stable repr), then build and validate ops.
        fix = object.__setattr__
        fix(self, "scale_jitter", _pair(self.scale_jitter, "--scale-jitter", int))
        fix(self, "random_resized_crop", _pair(self.random_resized_crop, "--random-resized-crop"))
        fix(self, "ratio", _pair(self.ratio, "ratio"))
        fix(self, "blur", _pair(self.blur, "--blur"))
        fix(self, "extra", tuple(self.extra))
        if self.color_jitter is not None:
            cj = self.color_jitter
            if isinstance(cj, (str, bytes)) or not isinstance(cj, Sequence) or len(cj) != 4:
                raise UsageError(f"--color-jitter {cj!r} must be 4 numbers: brightness, "
                                 "contrast, saturation, hue")
            fix(self, "color_jitter", tuple(float(v) for v in cj))
        for key, value in pca_from_stats({"eigval": self.eigval, "eigvec": self.eigvec}).items():
            fix(self, key, value)
        fix(self, "_ops", tuple(self._build()))

    def _build(self) -> list[tuple[str, Any]]:
        ops: list[tuple[str, Any]] = []
        if self.scale_jitter is not None and self.random_resized_crop is not None:
            raise UsageError("--scale-jitter and --random-resized-crop both pick the crop; "
                             "use one of them")
        if (self.scale_jitter or self.random_resized_crop) and not self.crop:
            raise UsageError("--scale-jitter and --random-resized-crop need --crop (the output "
                             "size)")
        if self.crop is not None and self.crop <= 0:
            raise UsageError(f"--crop {self.crop} must be a positive number of pixels")
        if self.scale_jitter is not None:
            ops.append(("geometry", ScaleJitter(self.scale_jitter, self.crop,  # type: ignore[arg-type]
                                                self.interpolation)))
        elif self.random_resized_crop is not None:
            ops.append(("geometry", RandomResizedCrop(self.crop, self.random_resized_crop,  # type: ignore[arg-type]
                                                      self.ratio, self.interpolation)))
        elif self.crop:
            ops.append(("geometry", RandomCrop(self.crop)))
        if self.hflip:
            ops.append(("hflip", RandomHFlip(self.hflip)))
        if self.vflip:
            ops.append(("vflip", RandomVFlip(self.vflip)))
        if self.rotate:
            ops.append(("rotate", RandomRotate(self.rotate, self.interpolation)))
        if self.shift:
            ops.append(("shift", RandomShift(self.shift)))
        if self.color_jitter is not None and any(self.color_jitter):
            ops.append(("color_jitter", ColorJitter(*self.color_jitter)))
        if self.pca_sigma:
            ops.append(("pca_lighting", PCALighting(self.pca_sigma, self.eigval, self.eigvec)))
        if self.blur is not None:
            ops.append(("blur", GaussianBlur(self.blur, self.blur_p)))
        if self.noise:
            ops.append(("noise", GaussianNoise(self.noise)))
        for i, op in enumerate(self.extra):
            if not callable(getattr(op, "make_params", None)):
                raise UsageError(f"extra op {op!r} needs make_params(rng, size) and "
                                 "apply_params(img, params)")
            ops.append((f"extra{i}", op))
        return ops

    @property
    def ops(self) -> tuple[tuple[str, Any], ...]:
        """``(stage name, op)`` pairs of the enabled stages, in order."""
        return self._ops

    def with_stats(self, stats: dict[str, Any]) -> Augment:
        """A copy whose PCA lighting uses ``eigval``/``eigvec`` from a stats dictionary."""
        return replace(self, **pca_from_stats(stats))

    def make_params(self, rng: np.random.Generator, size: Size) -> list[tuple[str, Params]]:
        """Draw every enabled stage's parameters for an input of ``size`` (width, height).

        One seed per stage of :data:`STAGES` is drawn from ``rng`` first; each stage draws from
        its own generator, so stages do not shift each other's random streams.
        """
        seeds = rng.integers(0, 2**63, size=len(STAGES))
        streams = {name: np.random.Generator(np.random.PCG64(int(s)))
                   for name, s in zip(STAGES, seeds, strict=True)}
        params: list[tuple[str, Params]] = []
        for name, op in self._ops:
            stream = streams["extra" if name.startswith("extra") else name]
            params.append((name, op.make_params(stream, size)))
            if name == "geometry":
                size = (self.crop, self.crop)  # type: ignore[assignment]
        return params

    def apply_params(self, img: Image.Image, params: list[tuple[str, Params]]) -> Image.Image:
        ops = dict(self._ops)
        img = check_rgb(img, "Augment")
        for name, p in params:
            img = ops[name].apply_params(img, p)
        return img

    def apply(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Augment one image; the generator is typically ``sample_rng(seed, key, view, epoch)``."""
        img = check_rgb(img, "Augment")
        return self.apply_params(img, self.make_params(rng, img.size))

    __call__ = apply

    def to_json(self) -> dict[str, Any]:
        """The resolved parameters as JSON types (for ``dataprep.json`` and previews)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("_ops", "extra")}
        d["extra"] = [{"op": type(op).__name__, **asdict(op)} for op in self.extra]
        return d


# --- flag parsing ---------------------------------------------------------------------------


def _numbers(text: str, flag: str, kind: Callable[[str], Any], example: str) -> list:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a comma-separated list of "
                         f"{'integers' if kind is int else 'numbers'}; e.g. {flag} {example}"
                         ) from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{flag} {text!r} must hold finite numbers; e.g. {flag} {example}")
    return values


def parse_color_jitter(text: str, flag: str = "--color-jitter"
                       ) -> tuple[float, float, float, float]:
    """``"B,C,S,H"`` -> 4 floats; ``"V"`` means ``V,V,V,0`` and ``"B,C,S"`` means hue 0.

    Each value is a jitter strength as in torchvision ``ColorJitter``: non-negative, hue at most
    0.5. Errors name the flag.
    """
    example = "0.4,0.4,0.4,0.1"
    values = _numbers(text, flag, float, example)
    if len(values) == 1:
        values = [values[0]] * 3 + [0.0]
    elif len(values) == 3:
        values = values + [0.0]
    elif len(values) != 4:
        raise UsageError(f"{flag} {text!r} has {len(values)} values; expected 1, 3 or 4: "
                         f"BRIGHTNESS,CONTRAST,SATURATION[,HUE], e.g. {flag} {example}")
    if any(v < 0 for v in values):
        raise UsageError(f"{flag} {text!r}: every value must be >= 0 (0 disables that part)")
    if values[3] > 0.5:
        raise UsageError(f"{flag} {text!r}: hue {values[3]} must be at most 0.5 (half a turn)")
    return (values[0], values[1], values[2], values[3])


def parse_range(text: str, flag: str = "--scale-jitter", kind: Callable[[str], Any] = int,
                minimum: float | None = None) -> tuple[Any, Any]:
    """``"LO,HI"`` -> ``(LO, HI)`` of ``kind`` (``int`` or ``float``); ``"V"`` -> ``(V, V)``.

    Requires ``LO <= HI`` and, when given, ``LO >= minimum``. Errors name the flag.
    """
    example = "256,480" if kind is int else "0.1,2.0"
    values = _numbers(text, flag, kind, example)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise UsageError(f"{flag} {text!r} has {len(values)} values; expected LO,HI, "
                         f"e.g. {flag} {example}")
    lo, hi = values
    if lo > hi:
        raise UsageError(f"{flag} {text!r}: LO {lo} is larger than HI {hi}; expected LO,HI")
    if minimum is not None and lo < minimum:
        raise UsageError(f"{flag} {text!r}: values must be at least {minimum}")
    return lo, hi
