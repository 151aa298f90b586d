"""Perceptual hashes and image measures for ``dataprep audit``: pure numpy on PIL images.

Hashes (64 bits each, as Python ints, bit ``i`` of the row-major 8x8 grid is ``1 << (63 - i)``,
the order ``imagehash.ImageHash`` prints in hex):

* :func:`phash`: the luma (ITU-R 601, Pillow's ``L``) resized to 32x32 (Lanczos), the
  unnormalised 2-D DCT-II, its top-left 8x8 (DC included) compared with their median. The same
  bits as ``imagehash.phash`` (checked in the tests), without scipy.
* :func:`dhash`: the luma resized to 9x8, each pixel compared with its left neighbour.

Each comes with the hash of the mirrored image (the 32x32 / 9x8 grid flipped left-right), so a
mirrored copy is at distance 0 from the original's mirror hash.

Measures (:func:`measure`) are taken on the image resized so its shorter side is at most
``ANALYSIS_SIDE`` pixels, so that blur and noise do not depend on the stored resolution.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

HASH_SIDE = 8  # 8x8 = 64 bits
PHASH_SIDE = 32  # the DCT input: 4x the hash side, as imagehash
ANALYSIS_SIDE = 256  # shorter side the measures are taken at (never upscaled)
BITS = HASH_SIDE * HASH_SIDE


def _dct_matrix(n: int) -> np.ndarray:
    """The unnormalised DCT-II (scipy.fftpack.dct's default): y[k] = 2 sum x[j] cos(pi k
    (2j + 1) / 2n)."""
    k = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * j + 1) / (2 * n))


_DCT = _dct_matrix(PHASH_SIDE)


def _pack(bits: np.ndarray) -> int:
    """A boolean array (row-major) as an int, first element the most significant bit."""
    return int.from_bytes(np.packbits(bits.ravel().astype(np.uint8)).tobytes(), "big")


def _phash_bits(pixels: np.ndarray) -> int:
    dct = _DCT @ pixels @ _DCT.T
    low = dct[:HASH_SIDE, :HASH_SIDE]
    return _pack(low > np.median(low))


def phash_pair(gray: Image.Image) -> tuple[int, int]:
    """(phash, phash of the mirror) of a luma (``L``) image."""
    small = np.asarray(gray.resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.LANCZOS),
                       dtype=np.float64)
    return _phash_bits(small), _phash_bits(small[:, ::-1])


def dhash_pair(gray: Image.Image) -> tuple[int, int]:
    """(dhash, dhash of the mirror) of a luma image: 9x8 grid, right pixel brighter than left.
    The mirror's grid is the flipped 9x8 grid (its own left-to-right comparisons)."""
    small = np.asarray(gray.resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.LANCZOS),
                       dtype=np.int16)
    flipped = small[:, ::-1]
    return (_pack(small[:, 1:] > small[:, :-1]), _pack(flipped[:, 1:] > flipped[:, :-1]))


def phash(img: Image.Image) -> int:
    """64-bit DCT perceptual hash of ``img`` (any mode; its luma is hashed)."""
    return phash_pair(img.convert("L"))[0]


def dhash(img: Image.Image) -> int:
    """64-bit difference hash of ``img`` (any mode)."""
    return dhash_pair(img.convert("L"))[0]


def hamming(a: int, b: int) -> int:
    """Bits that differ between two hashes."""
    return (a ^ b).bit_count()


def pixel_digest(img: Image.Image) -> str:
    """sha256 of the decoded RGB pixels and the size: equal for images whose pixels are equal
    (a PNG and the lossless WebP of it), whatever the file bytes."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}\n".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Measures:
    """Per-image numbers, pixels in 0..255. ``mean``/``std``: luma; ``colorfulness``:
    Hasler and Suesstrunk's M (0 for gray images, ~15 dull, ~60+ vivid); ``chroma``: mean of
    max(R,G,B) - min(R,G,B) (0 exactly for gray stored as RGB); ``blur``: variance of the
    4-neighbour Laplacian of the luma at ``ANALYSIS_SIDE`` (low: blurry or flat)."""

    mean: float
    std: float
    colorfulness: float
    chroma: float
    blur: float


def analysis_image(img: Image.Image) -> Image.Image:
    """``img`` resized (bilinear, antialiased; Pillow's ``reducing_gap`` 3: a box reduction to
    within 3x of the size first, which halves the time on large photos) so its shorter side is
    at most ``ANALYSIS_SIDE``."""
    short = min(img.size)
    if short <= ANALYSIS_SIDE:
        return img
    scale = ANALYSIS_SIDE / short
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian (valid region; 0 for images under 3x3)."""
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    g = gray.astype(np.float64)
    lap = (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1])
    return float(lap.var())


def measure(rgb: Image.Image, gray: Image.Image | None = None) -> Measures:
    """:class:`Measures` of an RGB image already reduced by :func:`analysis_image` (``gray``:
    its luma, if computed already)."""
    pixels = np.asarray(rgb)
    luma = np.asarray(gray if gray is not None else rgb.convert("L"), dtype=np.float64)
    r, g, b = (pixels[..., c].astype(np.float32) for c in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    colorfulness = float(np.hypot(rg.std(dtype=np.float64), yb.std(dtype=np.float64))
                         + 0.3 * np.hypot(rg.mean(dtype=np.float64), yb.mean(dtype=np.float64)))
    spread = np.maximum(np.maximum(pixels[..., 0], pixels[..., 1]), pixels[..., 2]) \
        - np.minimum(np.minimum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])
    chroma = float(spread.mean(dtype=np.float64))
    return Measures(float(luma.mean()), float(luma.std()), colorfulness, chroma,
                    laplacian_variance(luma))
