"""``resize`` and ``tencrop``: short-side resize, then (tencrop) five or ten views per record."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
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
from dataprep.io.scan import scan
from dataprep.jobs.common import Log, run_job, source_inputs
from dataprep.ops.augment import Augment
from dataprep.ops.crop import VIEW_NAMES, ten_crop
from dataprep.ops.resize import INTERPOLATIONS, resize_short_side
from dataprep.ops.rng import sample_rng
from dataprep.records import Record, RecordList, Sample
from dataprep.report import Report
from dataprep.runner import prestart

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


def _check_common(short_side: int, image_format: str, quality: int, interpolation: str) -> None:
    if short_side <= 0:
        raise UsageError(f"--short-side must be positive, got {short_side}")
    if image_format not in IMAGE_FORMATS:
        raise UsageError(f"--image-format {image_format!r}: expected one of {IMAGE_FORMATS}")
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality {quality} is outside 1..100")
    if interpolation not in INTERPOLATIONS:
        raise UsageError(f"--interpolation {interpolation!r}: expected one of "
                         f"{sorted(INTERPOLATIONS)}")


def task_params(task: ResizeTask) -> dict[str, Any]:
    """A task's fields as ledger parameters; an augmentation pipeline as its resolved JSON.

    Without a pipeline the seed changes no pixel, so it is left out of the parameters (and of
    the output's fingerprint).
    """
    params = {f.name: getattr(task, f.name) for f in fields(task)}
    pipeline = params.pop("augment", None)
    if pipeline is not None:
        params["augment"] = pipeline.to_json()
    else:
        params.pop("seed", None)
    return params


def _run(command: str, src: str | Path, out: str | Path, task: ResizeTask, *, fmt: str,
         views_per_record: int, jobs: int | None, on_error: str, overwrite: bool,
         max_count: int, max_bytes: int | None, split: str | None, root: str | Path | None,
         records: list[Record] | None = None, classes: list[str] | None = None,
         max_disk: int | None = None, dry_run: bool = False, log: Log | None = None,
         extra_params: dict[str, Any] | None = None) -> Report:
    stream_splits: list[str] = []
    prestart(jobs)
    inputs: dict[str, Any] = {"inputs": [str(src)]}
    if records is None:
        source = scan(src, root=root)
        inputs = source_inputs(source)
        classes = source.classes
        recs: list[Record] | Iterable[Record] = (
            source.records if source.records is not None else source)
        total = len(source) if source.records is not None or source.num_records else None
        stream_splits = source.splits or []
    else:
        recs, total = records, len(records)
    if split:  # one output split, whatever the source's records say (streams stay streams)
        renamed = (replace(r, split=split) for r in recs)
        if isinstance(recs, RecordList):
            recs = RecordList(renamed)
        else:
            recs = list(renamed) if isinstance(recs, list) else renamed
        splits = [split]
    elif isinstance(recs, Sequence):
        splits = sorted({r.split or "train" for r in recs})
    else:
        splits = sorted({s or "train" for s in stream_splits}) or ["train"]
    params = dict(task_params(task), **(extra_params or {}), format=fmt,
                  views_per_record=views_per_record, max_count=max_count, max_bytes=max_bytes,
                  src=str(src))
    return run_job(command, recs, task, out, fmt=fmt, classes=classes or [], params=params,
                   splits=splits, jobs=jobs, on_error=on_error, overwrite=overwrite,
                   max_count=max_count, max_bytes=max_bytes, total=total, max_disk=max_disk,
                   dry_run=dry_run, log=log, **inputs)


def resize(src: str | Path, out: str | Path, *, short_side: int = 256, fmt: str = "webdataset",
           interpolation: str = "bilinear", exact: bool = False, upscale: bool = False,
           image_format: str = "jpg", quality: int = 90, max_pixels: int = DEFAULT_MAX_PIXELS,
           max_aspect: float = DEFAULT_MAX_ASPECT, max_count: int = 10_000,
           max_bytes: int | None = None, jobs: int | None = None,
           on_error: str = "skip", overwrite: bool = False, split: str | None = None,
           root: str | Path | None = None, records: list[Record] | None = None,
           classes: list[str] | None = None, max_disk: int | None = None,
           dry_run: bool = False, log: Log | None = None) -> Report:
    """Short-side resize every image of ``src`` into ``out``."""
    _check_common(short_side, image_format, quality, interpolation)
    check_max_aspect(max_aspect)
    task = ResizeTask(short_side, interpolation, exact, upscale, image_format, quality, max_pixels,
                      max_aspect)
    return _run("resize", src, out, task, fmt=fmt, views_per_record=1, jobs=jobs,
                on_error=on_error, overwrite=overwrite, max_count=max_count, max_bytes=max_bytes,
                split=split, root=root, records=records, classes=classes, max_disk=max_disk,
                dry_run=dry_run, log=log)


def tencrop(src: str | Path, out: str | Path, *, short_side: int = 256, crop: int = 224,
            five: bool = False, flip: bool = True, views: str = "materialize",
            fmt: str = "webdataset", interpolation: str = "bilinear", exact: bool = False,
            upscale: bool = True, image_format: str = "jpg", quality: int = 90,
            max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect: float = DEFAULT_MAX_ASPECT,
            max_count: int = 10_000,
            max_bytes: int | None = None, jobs: int | None = None, on_error: str = "skip",
            overwrite: bool = False, split: str | None = None, root: str | Path | None = None,
            records: list[Record] | None = None, classes: list[str] | None = None,
            max_disk: int | None = None, dry_run: bool = False, log: Log | None = None,
            color_jitter: str | Sequence[float] | None = None, pca_lighting: float = 0.0,
            stats: str | Path | dict[str, Any] | None = None, seed: int = 0) -> Report:
    """Resize to ``short_side`` then cut ten views (five with ``five`` or ``flip=False``).

    View order is torchvision ``TenCrop``'s. ``views="materialize"`` writes each
    view as a sample ``{key}_v{i}``; ``views="lazy"`` stores the resized image once with the view
    spec in its json, for readers to expand.

    ``color_jitter`` (``"B,C,S,H"``) and ``pca_lighting`` (sigma; eigenvectors from ``stats``,
    ImageNet's by default) jitter each materialized view with ``sample_rng(seed, key, view=i)``
    (see :func:`dataprep.jobs.augment.build_augment`); lazy views refuse them.
    """
    _check_common(short_side, image_format, quality, interpolation)
    if crop > short_side:
        raise UsageError(f"--crop {crop} is larger than --short-side {short_side}; every crop "
                         "would fall outside the resized image")
    if views not in VIEW_MODES:
        raise UsageError(f"--views {views!r}: expected one of {VIEW_MODES}")
    from dataprep.jobs.augment import build_augment

    jitter = build_augment(color_jitter=color_jitter, pca_lighting=pca_lighting, stats=stats)
    if jitter is not None and views == "lazy":
        raise UsageError("--color-jitter and --pca-lighting change each view's pixels, but "
                         "--views lazy stores one image for all ten views; use --views "
                         "materialize, or jitter at training time")
    flip = flip and not five
    check_max_aspect(max_aspect)
    task = TencropTask(short_side, interpolation, exact, upscale, image_format, quality,
                       max_pixels, max_aspect, crop=crop, flip=flip, views=views, augment=jitter,
                       seed=seed)
    per_record = 1 if views == "lazy" else (10 if flip else 5)
    extra = ({"stats": str(stats)} if jitter is not None and stats not in (None, "")
             and not isinstance(stats, dict) else {})
    return _run("tencrop", src, out, task, fmt=fmt, views_per_record=per_record, jobs=jobs,
                on_error=on_error, overwrite=overwrite, max_count=max_count, max_bytes=max_bytes,
                split=split, root=root, records=records, classes=classes, max_disk=max_disk,
                dry_run=dry_run, log=log, extra_params=extra)
