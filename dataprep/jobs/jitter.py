"""Flag values -> an :class:`~dataprep.ops.augment.Augment` pipeline.

:func:`build_augment` takes the flags' values (the click parameter names, also the recipe keys)
and builds the pipeline they describe; ``tencrop --color-jitter``, ``augment``, ``preview`` and
the trainer's online augmentation all use it, so a flag means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError
from dataprep.ops.augment import Augment, parse_color_jitter, parse_range

RANDOM_RESIZED_CROP_SCALE = (0.08, 1.0)  # torchvision RandomResizedCrop's default area range
BLUR_SIGMA = (0.1, 2.0)  # torchvision GaussianBlur's default sigma range (pixels)
BLUR_P = 0.5  # blur half of the copies (SimCLR), so sharp images stay in the data
HFLIP_P = 0.5  # torchvision RandomHorizontalFlip's default


def _color_jitter(value: str | Sequence[float] | None) -> tuple[float, ...] | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    return parse_color_jitter(text)


def _scale_jitter(value: str | Sequence[int] | None) -> tuple[int, int] | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    return parse_range(text, "--scale-jitter", int, minimum=1)


def _random_resized_crop(value: bool | Sequence[float] | None) -> tuple[float, float] | None:
    if value is None or value is False:
        return None
    if value is True:
        return RANDOM_RESIZED_CROP_SCALE
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    return parse_range(text, "--random-resized-crop", float, minimum=0.0)


def _eigen(stats: str | Path | dict[str, Any] | None) -> dict[str, Any]:
    """eigval/eigvec from a stats.json path or dictionary; {} (ImageNet constants) for None."""
    from dataprep.jobs.stats import load_stats
    from dataprep.ops.color import pca_from_stats

    if stats is None or stats == "":
        return {}
    return pca_from_stats(stats if isinstance(stats, dict) else load_stats(stats))


def build_augment(*, color_jitter: str | Sequence[float] | None = None,
                  pca_lighting: float = 0.0, stats: str | Path | dict[str, Any] | None = None,
                  scale_jitter: str | Sequence[int] | None = None, crop: int | None = None,
                  random_resized_crop: bool | Sequence[float] | None = False,
                  hflip: bool = False, rotate: float = 0.0, shift: float = 0.0,
                  blur: bool = False, noise: float = 0.0,
                  interpolation: str = "bilinear") -> Augment | None:
    """The pipeline the flags describe, or ``None`` when they enable nothing.

    ``color_jitter``: ``"B,C,S,H"`` (or 4 numbers); ``pca_lighting``: sigma of AlexNet lighting,
    with ``stats`` (a ``stats.json`` path or dictionary) giving eigval/eigvec, ImageNet's
    otherwise; ``scale_jitter``: ``"LO,HI"`` short sides, needs ``crop``; ``crop`` alone: a
    random ``crop`` square; ``random_resized_crop``: True (area 0.08..1) or ``(min, max)``,
    needs ``crop``; ``hflip``: mirror with probability 0.5; ``rotate``: max degrees; ``shift``:
    max fraction of the size; ``blur``: sigma ~ U(0.1, 2) on half the copies; ``noise``: sigma
    of Gaussian noise (pixels in [0, 1]). Raises :class:`UsageError` naming the flag.
    """
    if pca_lighting is None or pca_lighting < 0:
        raise UsageError(f"--pca-lighting {pca_lighting} must be a non-negative sigma (0.1 "
                         "in AlexNet)")
    if stats not in (None, "") and not pca_lighting:
        raise UsageError(f"--stats {stats} gives the eigenvectors of PCA lighting, which is off; "
                         "add --pca-lighting SIGMA (e.g. 0.1) or drop --stats")
    pipeline = Augment(
        crop=crop or None,
        scale_jitter=_scale_jitter(scale_jitter),
        random_resized_crop=_random_resized_crop(random_resized_crop),
        hflip=HFLIP_P if hflip else 0.0,
        rotate=float(rotate or 0.0),
        shift=float(shift or 0.0),
        color_jitter=_color_jitter(color_jitter),
        pca_sigma=float(pca_lighting),
        blur=BLUR_SIGMA if blur else None,
        blur_p=BLUR_P,
        noise=float(noise or 0.0),
        interpolation=interpolation,
        **_eigen(stats if pca_lighting else None),
    )
    return pipeline if pipeline.ops else None
