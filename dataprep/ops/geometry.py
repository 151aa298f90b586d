"""Image ops with fixed parameters, and the draw of a random resized crop.

Each op is a pure function of the image and plain numbers (``resized_crop``, ``scale_jitter``,
``crop``, ``rotate``, ``shift``, ``gaussian_blur``, ``gaussian_noise``, ``hflip``, ``vflip``),
as torchvision ``transforms.v2.functional``: the same arguments give the same pixels. The
random ops of :mod:`dataprep.ops.random_ops` draw those numbers; only numpy and Pillow are
needed. ``size`` is an image's ``(width, height)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from dataprep.errors import ImageError, UsageError
from dataprep.ops.color import check_rgb, rgb_array
from dataprep.ops.resize import INTERPOLATIONS, resize_short_side

Size = tuple[int, int]  # (width, height), as PIL's Image.size
Params = dict[str, Any]

# --- pure functions with fixed parameters -------------------------------------------------


def resampling_filter(interpolation: str, allowed: Sequence[str] | None = None
                      ) -> Image.Resampling:
    """Pillow's filter for ``--interpolation``; a name outside ``allowed`` is a usage error
    (checked when an op is made, so a bad flag fails before any image is read)."""
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
    resample = resampling_filter(interpolation)
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
    resample = resampling_filter(interpolation, ("nearest", "bilinear", "bicubic"))
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
