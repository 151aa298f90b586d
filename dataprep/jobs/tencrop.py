"""``resize`` and ``tencrop``: short-side resize, then (tencrop) five or ten views per record."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from PIL import Image

from dataprep.errors import ImageError, UsageError
from dataprep.io.decode import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_PIXELS,
    check_max_aspect,
    encode_image,
    guarded,
    open_image_sized,
    record_bytes,
)
from dataprep.jobs.jitter import build_augment
from dataprep.jobs.job import verb_objects, write_records
from dataprep.ops.augment import Augment
from dataprep.ops.crop import VIEW_NAMES, ten_crop
from dataprep.ops.resize import INTERPOLATIONS, resize_short_side
from dataprep.ops.rng import sample_rng
from dataprep.options import Log
from dataprep.records import Record, Sample
from dataprep.report import Report

IMAGE_FORMATS = ("jpg", "png", "webp")
VIEW_MODES = ("materialize", "lazy")


@dataclass(frozen=True)
class ResizeTask:
    """Decode, orient, convert to RGB, short-side resize, encode: one sample per record."""

    short_side: int = 256
    interpolation: str = "bilinear"
    exact: bool = False
    upscale: bool = False
    image_format: str = "jpg"
    quality: int = 90
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect: float = DEFAULT_MAX_ASPECT

    def __post_init__(self) -> None:
        check_image_flags(1 if self.short_side is None else self.short_side,
                          self.image_format, self.quality, self.interpolation)
        check_max_aspect(self.max_aspect)

    @property
    def views_per_record(self) -> int:
        return 1

    def params(self) -> dict[str, Any]:
        """The task's part of a split's identity (ledger ``params``): its fields, an
        augmentation pipeline as its resolved JSON. Without a pipeline the seed changes no
        pixel, so it is left out (and of the output's fingerprint)."""
        params = {f.name: getattr(self, f.name) for f in fields(self)}
        pipeline = params.pop("augment", None)
        stats = params.pop("stats", None)
        if pipeline is not None:
            params["augment"] = pipeline.to_json()
            if stats is not None:  # where the PCA eigenvectors came from
                params["stats"] = stats
        else:
            params.pop("seed", None)
        params["views_per_record"] = self.views_per_record
        return params

    def resized(self, record: Record, data: bytes | None = None):
        """The record's image decoded, guarded and resized (``data``: its bytes, when already
        read)."""
        img, source_size, box = open_image_sized(
            record_bytes(record) if data is None else data, max_pixels=self.max_pixels,
            max_aspect=self.max_aspect, draft_short_side=None if self.exact else self.short_side,
            resize_short_side=self.short_side, upscale=self.upscale,
            name=record.path or record.key)
        # a JPEG draft decodes at reduced scale: size the output from the full image
        return resize_short_side(img, self.short_side, self.interpolation, upscale=self.upscale,
                                 source_size=source_size, box=box)

    def meta(self, record: Record) -> dict[str, Any]:
        meta = dict(record.meta or {})
        meta.update(key=record.key, label=record.label, class_name=record.class_name,
                    path=record.path)
        if record.split:
            meta["split"] = record.split
        return meta

    def __call__(self, record: Record) -> list[Sample]:
        source = record_bytes(record)
        img = self.resized(record, source)  # decoded in full even when unchanged: proves it whole
        meta = self.meta(record)
        meta["size"] = list(img.size)
        data = self.unchanged_bytes(record, img, source)
        if data is None:
            data = encode_image(img, self.image_format, self.quality)
        return [Sample(record.key, data, self.image_format, record.label, meta)]

    def unchanged_bytes(self, record: Record, img: Image.Image,
                        data: bytes | None = None) -> bytes | None:
        """The input's own bytes (``data``, when already read) when re-encoding would change
        nothing but add loss: an RGB JPEG, upright (no EXIF rotation), already at the output
        size, stored as jpg."""
        if self.image_format != "jpg":
            return None
        try:
            data = record_bytes(record) if data is None else data
            with guarded(record.path or record.key, self.max_pixels), \
                    Image.open(io.BytesIO(data)) as src:
                same = (src.format == "JPEG" and src.mode == "RGB" and src.size == img.size
                        and src.getexif().get(0x0112, 1) == 1)
        except ImageError:
            return None
        return data if same else None


@dataclass(frozen=True)
class TencropTask(ResizeTask):
    """Resize, then ten (or five) views: materialized as separate samples, or stored once (lazy).

    With ``augment``, materialized view ``i`` goes through it with the generator
    ``sample_rng(seed, key, view=i)`` and its json carries the drawn parameters (``augment``).
    """

    crop: int = 224
    flip: bool = True
    views: str = "materialize"
    augment: Augment | None = None
    seed: int = 0
    stats: str | None = None  # the stats.json the PCA lighting's eigenvectors came from

    @classmethod
    def build(cls, *, short_side: int = 256, crop: int = 224, five: bool = False,
              flip: bool = True, views: str = "materialize",
              color_jitter: str | Sequence[float] | None = None, pca_lighting: float = 0.0,
              stats: str | Path | dict[str, Any] | None = None, **fields: Any) -> TencropTask:
        """The task the flags describe, checked: ``five`` (or ``flip=False``) cuts five views;
        ``color_jitter`` / ``pca_lighting`` (with ``stats``) jitter each materialized view
        (:func:`dataprep.jobs.jitter.build_augment`); ``fields``: the other fields."""
        check_image_flags(short_side, fields.get("image_format", "jpg"),
                          fields.get("quality", 90), fields.get("interpolation", "bilinear"))
        if crop > short_side:
            raise UsageError(f"--crop {crop} is larger than --short-side {short_side}; every "
                             "crop would fall outside the resized image")
        if views not in VIEW_MODES:
            raise UsageError(f"--views {views!r}: expected one of {VIEW_MODES}")
        jitter = build_augment(color_jitter=color_jitter, pca_lighting=pca_lighting, stats=stats)
        if jitter is not None and views == "lazy":
            raise UsageError("--color-jitter and --pca-lighting change each view's pixels, "
                             "but --views lazy stores one image for all ten views; use "
                             "--views materialize, or jitter at training time")
        recorded = (str(stats) if jitter is not None and stats not in (None, "")
                    and not isinstance(stats, dict) else None)
        return cls(short_side=short_side, crop=crop, flip=flip and not five, views=views,
                   augment=jitter, stats=recorded, **fields)

    @property
    def views_per_record(self) -> int:
        return 1 if self.views == "lazy" else (10 if self.flip else 5)

    def __call__(self, record: Record) -> list[Sample]:
        img = self.resized(record)
        if img.width < self.crop or img.height < self.crop:
            raise ImageError(
                f"{record.path or record.key}: {img.width}x{img.height} after resize is smaller "
                f"than --crop {self.crop}; allow --upscale or lower --crop"
            )
        meta = self.meta(record)
        if self.views == "lazy":
            meta["size"] = list(img.size)
            meta["views"] = {"kind": "tencrop" if self.flip else "fivecrop", "crop": self.crop,
                             "flip": self.flip}
            return [Sample(record.key, encode_image(img, self.image_format, self.quality),
                           self.image_format, record.label, meta)]
        out = []
        for i, view in enumerate(ten_crop(img, self.crop, flip=self.flip)):
            m = dict(meta, key=f"{record.key}_v{i}", source=record.key, view=i,
                     view_name=VIEW_NAMES[i], size=list(view.size))
            if self.augment is not None:
                params = self.augment.make_params(sample_rng(self.seed, record.key, view=i),
                                                  view.size)
                view = self.augment.apply_params(view, params)
                m["augment"] = {name: dict(p) for name, p in params}
            out.append(Sample(f"{record.key}_v{i}", encode_image(view, self.image_format,
                                                                 self.quality),
                              self.image_format, record.label, m))
        return out


def check_image_flags(short_side: int, image_format: str, quality: int,
                      interpolation: str) -> None:
    """The decode / resize / encode flags every image-writing verb shares."""
    if short_side <= 0:
        raise UsageError(f"--short-side must be positive, got {short_side}")
    if image_format not in IMAGE_FORMATS:
        raise UsageError(f"--image-format {image_format!r}: expected one of {IMAGE_FORMATS}")
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality {quality} is outside 1..100")
    if interpolation not in INTERPOLATIONS:
        raise UsageError(f"--interpolation {interpolation!r}: expected one of "
                         f"{sorted(INTERPOLATIONS)}")


def resize(src: str | Path, out: str | Path, *, short_side: int = 256,
           interpolation: str = "bilinear", exact: bool = False, upscale: bool = False,
           image_format: str = "jpg", quality: int = 90, max_pixels: int = DEFAULT_MAX_PIXELS,
           max_aspect: float = DEFAULT_MAX_ASPECT, fmt: str = "webdataset",
           max_count: int = 10_000, max_bytes: int | None = None,
           lmdb_layout: str = "dataprep", split: str | None = None,
           root: str | Path | None = None, records: list[Record] | None = None,
           classes: list[str] | None = None, jobs: int | None = None,
           backend: str | None = None, scheduler: str | None = None, on_error: str = "skip",
           overwrite: bool = False, dry_run: bool = False, max_disk: int | None = None,
           fingerprint: str = "stat", log: Log | None = None) -> Report:
    """Short-side resize every image of ``src`` into ``out``.

    The task's arguments are :class:`ResizeTask`'s fields; ``fmt`` to ``lmdb_layout`` describe
    the output (:class:`~dataprep.options.OutputSpec`), ``split`` to ``classes`` the input
    (:class:`~dataprep.jobs.job.InputSpec`), ``jobs`` to ``log`` the run
    (:class:`~dataprep.options.RunOptions`).
    """
    task = ResizeTask(short_side, interpolation, exact, upscale, image_format, quality,
                      max_pixels, max_aspect)
    inputs, output, options = verb_objects(locals())
    return write_records("resize", inputs, task, out, output, options)


def tencrop(src: str | Path, out: str | Path, *, short_side: int = 256, crop: int = 224,
            five: bool = False, flip: bool = True, views: str = "materialize",
            interpolation: str = "bilinear", exact: bool = False, upscale: bool = True,
            image_format: str = "jpg", quality: int = 90,
            max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect: float = DEFAULT_MAX_ASPECT,
            color_jitter: str | Sequence[float] | None = None, pca_lighting: float = 0.0,
            stats: str | Path | dict[str, Any] | None = None, seed: int = 0,
            fmt: str = "webdataset", max_count: int = 10_000, max_bytes: int | None = None,
            lmdb_layout: str = "dataprep", split: str | None = None,
            root: str | Path | None = None, records: list[Record] | None = None,
            classes: list[str] | None = None, jobs: int | None = None,
            backend: str | None = None, scheduler: str | None = None, on_error: str = "skip",
            overwrite: bool = False, dry_run: bool = False, max_disk: int | None = None,
            fingerprint: str = "stat", log: Log | None = None) -> Report:
    """Resize to ``short_side`` then cut ten views (five with ``five`` or ``flip=False``).

    View order is torchvision ``TenCrop``'s. ``views="materialize"`` writes each
    view as a sample ``{key}_v{i}``; ``views="lazy"`` stores the resized image once with the view
    spec in its json, for readers to expand.

    ``color_jitter`` (``"B,C,S,H"``) and ``pca_lighting`` (sigma; eigenvectors from ``stats``,
    ImageNet's by default) jitter each materialized view with ``sample_rng(seed, key, view=i)``
    (see :func:`dataprep.jobs.jitter.build_augment`); lazy views refuse them. The other
    arguments are as :func:`resize`'s.
    """
    task = TencropTask.build(
        short_side=short_side, interpolation=interpolation, exact=exact, upscale=upscale,
        image_format=image_format, quality=quality, max_pixels=max_pixels,
        max_aspect=max_aspect, crop=crop, five=five, flip=flip, views=views,
        color_jitter=color_jitter, pca_lighting=pca_lighting, stats=stats, seed=seed)
    inputs, output, options = verb_objects(locals())
    return write_records("tencrop", inputs, task, out, output, options)
