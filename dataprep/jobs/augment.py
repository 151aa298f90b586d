"""``augment``: K deterministic augmented copies of every record (offline augmentation).

Copy ``k`` of record ``key`` is ``{key}_a{k}``: the source image (optionally short-side
resized first) through one :class:`~dataprep.ops.augment.Augment` pipeline with the generator
``sample_rng(seed, key, view=k, epoch=0)``. Its json carries ``source`` (the record's key),
``copy`` (``k``) and ``augment`` (the parameters drawn for that copy, stage by stage), so every
copy can be explained and reproduced. The copies of a record are one group (one shard), and
the run goes through :func:`~dataprep.jobs.job.run_job`, so disk budget, resume, ledgers
and byte-identical output across ``--jobs`` work as for ``tencrop``. The flags become a
pipeline through :func:`dataprep.jobs.jitter.build_augment`.
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
    encode_image,
    open_image,
    record_bytes,
)
from dataprep.jobs.jitter import build_augment
from dataprep.jobs.job import verb_objects, write_records
from dataprep.jobs.tencrop import ResizeTask
from dataprep.ops.augment import Augment
from dataprep.ops.rng import sample_rng
from dataprep.options import Log
from dataprep.records import Record, Sample
from dataprep.report import Report


def params_json(params: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The drawn parameters of one application, stage name -> parameters (JSON types)."""
    return {name: dict(p) for name, p in params}


# the arguments of augment() that describe the pipeline (build_augment's), not the task's fields
PIPELINE_FLAGS = ("color_jitter", "pca_lighting", "stats", "scale_jitter", "crop",
                  "random_resized_crop", "hflip", "rotate", "shift", "blur", "noise")


@dataclass(frozen=True)
class AugmentTask(ResizeTask):
    """Decode (short-side resize when ``short_side`` is set), then ``copies`` augmented copies."""

    short_side: int | None = None  # type: ignore[assignment]  # None: keep the decoded size
    augment: Augment = field(default_factory=Augment)
    copies: int = 1
    seed: int = 0
    stats: str | None = None  # the stats.json the PCA lighting's eigenvectors came from

    @classmethod
    def build(cls, *, copies: int = 1, pipeline: Augment | None = None,
              **values: Any) -> AugmentTask:
        """The task for ``copies`` copies through ``pipeline`` or, instead, the pipeline the
        flags among ``values`` describe (:data:`PIPELINE_FLAGS`, see :func:`build_augment`),
        checked; the other ``values`` are fields (``short_side``, ``image_format``, ...)."""
        flags = {k: values.pop(k) for k in PIPELINE_FLAGS if k in values}
        fields = values
        if pipeline is not None:
            given = [k for k, v in flags.items() if v not in (None, False, 0, 0.0, "")]
            if given:
                raise UsageError(f"pass either pipeline= or the flag arguments, not both "
                                 f"(got {', '.join(given)})")
        else:
            pipeline = build_augment(**flags, interpolation=fields.get("interpolation",
                                                                       "bilinear"))
        if pipeline is None or not pipeline.ops:
            raise UsageError(
                "nothing to augment: give at least one of --color-jitter, --pca-lighting, "
                "--scale-jitter, --random-resized-crop, --crop, --hflip, --rotate, --shift, "
                "--blur, --noise (or --recipe with them)")
        if copies < 1:
            raise UsageError(f"--copies must be at least 1, got {copies}")
        short_side = fields.get("short_side")
        if (short_side and pipeline.crop and pipeline.crop > short_side
                and pipeline.scale_jitter is None and pipeline.random_resized_crop is None):
            raise UsageError(f"--crop {pipeline.crop} is larger than --short-side {short_side}; "
                             "every crop would fall outside the resized image")
        stats = flags.get("stats")
        recorded = str(stats) if stats not in (None, "") and not isinstance(stats, dict) else None
        return cls(augment=pipeline, copies=copies, stats=recorded, **fields)

    @property
    def views_per_record(self) -> int:
        return self.copies

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
            image_format: str = "jpg", quality: int = 90,
            max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect: float = DEFAULT_MAX_ASPECT,
            seed: int = 0, fmt: str = "webdataset", max_count: int = 10_000,
            max_bytes: int | None = None, lmdb_layout: str = "dataprep",
            split: str | None = None, root: str | Path | None = None,
            records: list[Record] | None = None, classes: list[str] | None = None,
            jobs: int | None = None, backend: str | None = None, scheduler: str | None = None,
            on_error: str = "skip", overwrite: bool = False, dry_run: bool = False,
            max_disk: int | None = None, fingerprint: str = "stat",
            log: Log | None = None) -> Report:
    """Write ``copies`` augmented copies ``{key}_a{k}`` of every record of ``src`` to ``out``.

    The augmentation comes from the flag arguments (see :func:`build_augment`) or, instead,
    from a ready ``pipeline``. ``short_side`` resizes each image first (``None``: keep its size).
    Same inputs, parameters and ``seed`` give byte-identical output whatever ``jobs``.
    Raises :class:`UsageError` when nothing would be augmented or a flag is invalid. The output,
    input and run arguments are :func:`dataprep.jobs.tencrop.resize`'s.
    """
    task = AugmentTask.build(
        copies=copies, pipeline=pipeline, color_jitter=color_jitter, pca_lighting=pca_lighting,
        stats=stats, scale_jitter=scale_jitter, crop=crop,
        random_resized_crop=random_resized_crop, hflip=hflip, rotate=rotate, shift=shift,
        blur=blur, noise=noise, short_side=short_side, interpolation=interpolation,
        exact=exact, upscale=upscale, image_format=image_format, quality=quality,
        max_pixels=max_pixels, max_aspect=max_aspect, seed=seed)
    inputs, output, options = verb_objects(locals())
    return write_records("augment", inputs, task, out, output, options)
