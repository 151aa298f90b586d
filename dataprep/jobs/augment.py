"""``augment``: K deterministic augmented copies of every record (offline augmentation).

Copy ``k`` of record ``key`` is ``{key}_a{k}``: the source image (optionally short-side
resized first) through one :class:`~dataprep.ops.augment.Augment` pipeline with the generator
``sample_rng(seed, key, view=k, epoch=0)``. Its json carries ``source`` (the record's key),
``copy`` (``k``) and ``augment`` (the parameters drawn for that copy, stage by stage), so every
copy can be explained and reproduced. The copies of a record are one group (one shard), and
the run goes through :func:`~dataprep.jobs.common.run_job`, so disk budget, resume, ledgers
and byte-identical output across ``--jobs`` work as for ``tencrop``.

:func:`build_augment` turns the flag values (the click parameter names, also the recipe keys)
into a pipeline; ``tencrop --color-jitter`` and ``preview`` use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import ImageError, UsageError
from dataprep.io.decode import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_PIXELS,
    check_max_aspect,
    encode_image,
    open_image,
    record_bytes,
)
from dataprep.jobs.common import Log
from dataprep.jobs.tencrop import ResizeTask, _check_common, _run
from dataprep.ops.augment import Augment, parse_color_jitter, parse_range
from dataprep.ops.rng import sample_rng
from dataprep.records import Record, Sample
from dataprep.report import Report

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


def params_json(params: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The drawn parameters of one application, stage name -> parameters (JSON types)."""
    return {name: dict(p) for name, p in params}


@dataclass(frozen=True)
class AugmentTask(ResizeTask):
    """Decode (short-side resize when ``short_side`` is set), then ``copies`` augmented copies."""

    short_side: int | None = None  # type: ignore[assignment]  # None: keep the decoded size
    augment: Augment = field(default_factory=Augment)
    copies: int = 1
    seed: int = 0

    def source_image(self, record: Record):
        if self.short_side is None:
            return open_image(record_bytes(record), max_pixels=self.max_pixels,
                              max_aspect=self.max_aspect, name=record.path or record.key)
        return self.resized(record)

    def augmented(self, record: Record, img, k: int):
        """Copy ``k`` of ``img`` and the parameters drawn for it."""
        rng = sample_rng(self.seed, record.key, view=k, epoch=0)
        try:
            params = self.augment.make_params(rng, img.size)
            return self.augment.apply_params(img, params), params
        except ImageError as exc:  # e.g. an image smaller than --crop: name the file
            raise ImageError(f"{record.path or record.key}: {exc}") from exc

    def __call__(self, record: Record) -> list[Sample]:
        img = self.source_image(record)
        meta = self.meta(record)
        meta.pop("views", None)  # the copies are plain images, not lazy view records
        out = []
        for k in range(self.copies):
            copy, params = self.augmented(record, img, k)
            key = f"{record.key}_a{k}"
            m = dict(meta, key=key, source=record.key, copy=k, augment=params_json(params),
                     size=list(copy.size))
            out.append(Sample(key, encode_image(copy, self.image_format, self.quality),
                              self.image_format, record.label, m))
        return out


def augment(src: str | Path, out: str | Path, *, copies: int = 1,
            color_jitter: str | Sequence[float] | None = None, pca_lighting: float = 0.0,
            stats: str | Path | dict[str, Any] | None = None,
            scale_jitter: str | Sequence[int] | None = None, crop: int | None = None,
            random_resized_crop: bool | Sequence[float] | None = False, hflip: bool = False,
            rotate: float = 0.0, shift: float = 0.0, blur: bool = False, noise: float = 0.0,
            pipeline: Augment | None = None, short_side: int | None = None,
            upscale: bool = False, interpolation: str = "bilinear", exact: bool = False,
            fmt: str = "webdataset", image_format: str = "jpg", quality: int = 90,
            max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect: float = DEFAULT_MAX_ASPECT,
            max_count: int = 10_000, max_bytes: int | None = None, seed: int = 0,
            jobs: int | None = None,
            on_error: str = "skip", overwrite: bool = False, split: str | None = None,
            root: str | Path | None = None, records: list[Record] | None = None,
            classes: list[str] | None = None, max_disk: int | None = None,
            dry_run: bool = False, log: Log | None = None) -> Report:
    """Write ``copies`` augmented copies ``{key}_a{k}`` of every record of ``src`` to ``out``.

    The augmentation comes from the flag arguments (see :func:`build_augment`) or, instead,
    from a ready ``pipeline``. ``short_side`` resizes each image first (``None``: keep its size).
    Same inputs, parameters and ``seed`` give byte-identical output whatever ``jobs``.
    Raises :class:`UsageError` when nothing would be augmented or a flag is invalid.
    """
    flags = dict(color_jitter=color_jitter, pca_lighting=pca_lighting, stats=stats,
                 scale_jitter=scale_jitter, crop=crop, random_resized_crop=random_resized_crop,
                 hflip=hflip, rotate=rotate, shift=shift, blur=blur, noise=noise)
    if pipeline is not None:
        given = [k for k, v in flags.items() if v not in (None, False, 0, 0.0, "")]
        if given:
            raise UsageError(f"pass either pipeline= or the flag arguments, not both "
                             f"(got {', '.join(given)})")
    else:
        pipeline = build_augment(**flags, interpolation=interpolation)
    if pipeline is None or not pipeline.ops:
        raise UsageError(
            "nothing to augment: give at least one of --color-jitter, --pca-lighting, "
            "--scale-jitter, --random-resized-crop, --crop, --hflip, --rotate, --shift, --blur, "
            "--noise (or --recipe with them)"
        )
    if copies < 1:
        raise UsageError(f"--copies must be at least 1, got {copies}")
    _check_common(1 if short_side is None else short_side, image_format, quality, interpolation)
    if (short_side and pipeline.crop and pipeline.crop > short_side
            and pipeline.scale_jitter is None and pipeline.random_resized_crop is None):
        raise UsageError(f"--crop {pipeline.crop} is larger than --short-side {short_side}; "
                         "every crop would fall outside the resized image")
    check_max_aspect(max_aspect)
    task = AugmentTask(short_side=short_side, interpolation=interpolation, exact=exact,
                       upscale=upscale, image_format=image_format, quality=quality,
                       max_pixels=max_pixels, max_aspect=max_aspect, augment=pipeline,
                       copies=copies, seed=seed)
    extra = {"stats": str(stats)} if stats not in (None, "") and not isinstance(stats, dict) else {}
    return _run("augment", src, out, task, fmt=fmt, views_per_record=copies, jobs=jobs,
                on_error=on_error, overwrite=overwrite, max_count=max_count,
                max_bytes=max_bytes, split=split, root=root, records=records, classes=classes,
                max_disk=max_disk, dry_run=dry_run, log=log, extra_params=extra)
