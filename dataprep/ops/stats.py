"""Pixel statistics: per-image partial sums, an exact merge, and the final numbers.

Pixels are 8-bit integers, so the sufficient statistics of the RGB distribution are integers
too: the pixel count ``n``, the per-channel sums ``S1 = sum(x)`` and the 3x3 cross sums
``S2 = sum(x x^T)`` over every pixel ``x = (r, g, b)`` in 0..255. They are computed exactly
(float64 BLAS sums of integer products stay exact below 2**53, and every chunk is far below
that), held as Python integers, and merged by integer addition. The merge is therefore exact,
associative and commutative: the result does not depend on how images are split between
workers or in which order partial sums arrive, so ``--jobs 1`` and ``--jobs 16`` give
byte-identical ``stats.json``.

:func:`finalize_stats` turns the sums into numbers for pixels scaled to [0, 1]:

* ``mean``: ``S1 / n / 255``.
* ``cov``: the **population** covariance (divide by ``n``, ``ddof=0``, as
  ``np.cov(x, rowvar=False, bias=True)``), computed as ``(n * S2 - S1 S1^T) / (n^2 * 255^2)``
  in exact integer arithmetic before one rounding to float64: no catastrophic cancellation.
* ``std``: ``sqrt(diag(cov))`` (population standard deviation, as ``np.std``).
* ``eigval``/``eigvec``: ``np.linalg.eigh(cov)``, eigenvalues in descending order, eigenvectors
  as the **columns** of ``eigvec`` (RGB rows), each column's sign fixed so that its component
  of largest magnitude is positive (the first such component on a tie). Eigenvalues that
  round-off makes slightly negative are clipped to 0 (a covariance is positive semi-definite).

These keys (``mean``, ``std``, ``eigval``, ``eigvec``, ``num_images``, ``num_pixels``, plus
``cov``) are the ``stats.json`` file format read by PCA lighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from dataprep.errors import UsageError
from dataprep.ops.color import rgb_array

# Pixels per BLAS call: bounds the float64 working copy to 24 MiB whatever the image size.
CHUNK_PIXELS = 1 << 20

STATS_KEYS = ("mean", "std", "eigval", "eigvec", "cov", "num_images", "num_pixels")


def _zeros3() -> list[int]:
    return [0, 0, 0]


def _zeros33() -> list[list[int]]:
    return [[0, 0, 0], [0, 0, 0], [0, 0, 0]]


@dataclass
class PixelSums:
    """Exact integer sufficient statistics of a set of 8-bit RGB pixels.

    ``count``: number of pixels; ``sum``: per-channel sums (R, G, B); ``sum_sq``: 3x3 sums of
    products ``sum(x_i * x_j)``; ``num_images``: how many images contributed. Pixel values are
    in 0..255. All fields are Python ``int`` (unbounded), so merging never overflows or rounds.
    """

    count: int = 0
    sum: list[int] = field(default_factory=_zeros3)
    sum_sq: list[list[int]] = field(default_factory=_zeros33)
    num_images: int = 0

    def merge(self, other: PixelSums) -> PixelSums:
        """Exact sum of two partial results (a new object; neither input changes)."""
        return PixelSums(
            count=self.count + other.count,
            sum=[a + b for a, b in zip(self.sum, other.sum, strict=True)],
            sum_sq=[[a + b for a, b in zip(ra, rb, strict=True)]
                    for ra, rb in zip(self.sum_sq, other.sum_sq, strict=True)],
            num_images=self.num_images + other.num_images,
        )

    __add__ = merge


def pixel_sums(img: Image.Image | np.ndarray) -> PixelSums:
    """Exact :class:`PixelSums` of one RGB image (PIL 'RGB' or uint8 (H, W, 3) array)."""
    pixels = rgb_array(img, "pixel_sums").reshape(-1, 3)
    total = PixelSums(num_images=1)
    for start in range(0, len(pixels), CHUNK_PIXELS):
        chunk = pixels[start:start + CHUNK_PIXELS].astype(np.float64)
        # Integer-valued float64: every partial sum < 2**20 * 255**2 < 2**53, hence exact.
        s1 = chunk.sum(axis=0)
        s2 = chunk.T @ chunk
        total = total.merge(
            PixelSums(
                count=len(chunk),
                sum=[int(v) for v in s1],
                sum_sq=[[int(v) for v in row] for row in s2],
            )
        )
    return total


def merge_sums(parts: list[PixelSums] | tuple[PixelSums, ...]) -> PixelSums:
    """Exact merge of any number of partial results (order does not matter)."""
    total = PixelSums()
    for part in parts:
        total = total.merge(part)
    return total


def sort_eigen(eigval: np.ndarray, eigvec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descending eigenvalues (negatives clipped to 0) and columns with the sign convention.

    Each column of ``eigvec`` is flipped so that its largest-magnitude component is positive.
    """
    order = np.argsort(eigval)[::-1]
    values = np.clip(eigval[order], 0.0, None)
    vectors = eigvec[:, order].copy()
    for j in range(vectors.shape[1]):
        i = int(np.argmax(np.abs(vectors[:, j])))
        if vectors[i, j] < 0:
            vectors[:, j] = -vectors[:, j]
    return values, vectors


def rgb_pca(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen decomposition of a 3x3 RGB covariance, with :func:`sort_eigen`'s conventions."""
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (3, 3):
        raise UsageError(f"covariance has shape {cov.shape}; expected (3, 3)")
    eigval, eigvec = np.linalg.eigh(cov)
    return sort_eigen(eigval, eigvec)


def finalize_stats(sums: PixelSums) -> dict[str, Any]:
    """The ``stats.json`` dictionary (JSON types only) for pixels scaled to [0, 1].

    Raises :class:`UsageError` when no pixel was seen.
    """
    n = sums.count
    if n <= 0:
        raise UsageError(
            "no pixels to compute statistics from: every input was skipped or the source is "
            "empty; check the source path and errors.jsonl"
        )
    scale = 255 * 255
    # Exact integers until the single division: n * S2 - S1 S1^T = n^2 * cov * 255^2.
    cov = np.array(
        [[(n * sums.sum_sq[i][j] - sums.sum[i] * sums.sum[j]) / (n * n * scale) for j in range(3)]
         for i in range(3)],
        dtype=np.float64,
    )
    mean = [s / (n * 255) for s in sums.sum]
    std = [float(np.sqrt(max(cov[i, i], 0.0))) for i in range(3)]
    eigval, eigvec = rgb_pca(cov)
    return {
        "mean": mean,
        "std": std,
        "eigval": [float(v) for v in eigval],
        "eigvec": [[float(v) for v in row] for row in eigvec],
        "cov": [[float(v) for v in row] for row in cov],
        "num_images": sums.num_images,
        "num_pixels": n,
    }


def check_stats(stats: dict[str, Any], source: str = "stats") -> dict[str, Any]:
    """Validate a stats dictionary (e.g. read from ``stats.json``); returns it unchanged.

    Requires ``mean`` and ``std`` (3 numbers each), ``eigval`` (3) and ``eigvec`` (3x3).
    Raises :class:`UsageError` naming the first problem.
    """
    if not isinstance(stats, dict):
        raise UsageError(f"{source}: expected a JSON object with keys {', '.join(STATS_KEYS)}")
    shapes = {"mean": (3,), "std": (3,), "eigval": (3,), "eigvec": (3, 3)}
    for key, shape in shapes.items():
        if key not in stats:
            raise UsageError(
                f"{source}: missing key {key!r}; expected the output of `dataprep stats` "
                f"with keys {', '.join(STATS_KEYS)}"
            )
        try:
            arr = np.asarray(stats[key], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int past float
            raise UsageError(f"{source}: {key!r} must hold numbers, got {stats[key]!r}") from None
        if arr.shape != shape or not np.all(np.isfinite(arr)):
            raise UsageError(
                f"{source}: {key!r} has shape {arr.shape}; expected finite numbers of shape {shape}"
            )
    return stats
