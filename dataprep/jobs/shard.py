"""``shard``: pack any source into WebDataset or LMDB shards, without re-encoding when possible."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from dataprep.errors import ImageError, UsageError
from dataprep.io.dataset import expand, view_spec
from dataprep.io.decode import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_PIXELS,
    check_geometry,
    check_max_aspect,
    encode_image,
    guarded,
    load_whole,
    open_image,
    record_bytes,
)
from dataprep.jobs.job import InputSpec, read_input, run_job, verb_objects, workers
from dataprep.options import Log, OutputSpec, RunOptions
from dataprep.records import Record, Sample
from dataprep.report import Report

_ORIENTATION = 0x0112  # the EXIF tag of the rotation a viewer applies
PASSTHROUGH = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}  # Pillow format -> stored field
FIELD_FORMAT = {ext: fmt for fmt, ext in PASSTHROUGH.items()}
# readers that take one image field (one column type) for a whole output
ONE_TYPE_READERS = ("Hugging Face datasets", "Ray Data", 'webdataset\'s to_tuple("jpg", ...)')


@dataclass(frozen=True)
class ShardTask:
    """One image field per output: a file already in ``image_format``, RGB and upright (no
    EXIF rotation) is stored byte for byte once it decodes whole (a JPEG at 1/8 scale, which
    still reads all its data); every other image is decoded by the decoding rules
    (:mod:`dataprep.io.decode`: EXIF, alpha onto white, 16-bit, palette, CMYK...) and encoded
    as ``image_format``. ``keep_formats`` stores JPEG/PNG/WebP files as they are instead
    (mixed fields, alpha kept); ``reencode`` encodes everything. Images over ``max_pixels`` or
    ``max_aspect`` are refused from their header."""

    reencode: bool = False
    image_format: str = "jpg"
    quality: int = 90
    max_pixels: int = DEFAULT_MAX_PIXELS
    expand_views: bool = False
    max_aspect: float = DEFAULT_MAX_ASPECT
    keep_formats: bool = False

    def __post_init__(self) -> None:
        if self.image_format not in FIELD_FORMAT:
            raise UsageError(f"--image-format {self.image_format!r}: expected one of "
                             f"{sorted(FIELD_FORMAT)}")
        if self.keep_formats and self.reencode:
            raise UsageError("--keep-formats keeps each file's bytes and --reencode re-encodes "
                             "every image: pass one of them")
        check_max_aspect(self.max_aspect)

    def params(self) -> dict[str, Any]:
        """The task's part of a split's identity (ledger ``params``)."""
        return dict(asdict(self), views_per_record=1)

    def __call__(self, record: Record) -> list[Sample]:
        data = record_bytes(record)
        if self.expand_views and record.data is not None and view_spec(record.meta or {}):
            return self._expand(record)
        meta = dict(record.meta or {})
        meta.update(key=record.key, label=record.label, class_name=record.class_name)
        if record.path:
            meta["path"] = record.path
        if record.split:
            meta["split"] = record.split
        name = record.path or record.key
        stored = None if self.reencode else self._stored_field(name, data, meta)
        if stored is not None:
            return [Sample(record.key, data, stored, record.label, meta)]
        img = open_image(data, max_pixels=self.max_pixels, max_aspect=self.max_aspect,
                         name=name)
        if not view_spec(meta):  # a lazy record keeps the size its views were cut from
            meta["size"] = list(img.size)
        return [Sample(record.key, encode_image(img, self.image_format, self.quality),
                       self.image_format, record.label, meta)]

    def _expand(self, record: Record) -> list[Sample]:
        """A lazy record -> its materialized views, as ``tencrop --views materialize`` writes."""
        assert record.data is not None and record.meta is not None
        sample = Sample(record.key, record.data, record.ext or "jpg", record.label, record.meta)
        name = record.path or record.key
        try:
            with guarded(name, self.max_pixels):
                items = expand(sample)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # a hostile views spec
            raise ImageError(f"{name}: its lazy views spec {record.meta.get('views')!r:.120} "
                             f"cannot be expanded ({type(exc).__name__}: {exc}); expected "
                             '{"kind": "tencrop", "crop": C, "flip": true}') from None
        return [Sample(item.key, encode_image(item.image, self.image_format, self.quality),
                       self.image_format, item.label, item.meta)
                for item in items]

    def _stored_field(self, name: str, data: bytes, meta: dict) -> str | None:
        """The field ``data`` is stored under as it is, or None when it must be re-encoded.
        Its geometry is checked first and, when stored, all of it decoded (a truncated file
        is an :class:`ImageError`); ``meta["size"]`` is set from its header."""
        with guarded(name, self.max_pixels), Image.open(io.BytesIO(data)) as img:
            check_geometry(name, img.size, max_pixels=self.max_pixels,
                           max_aspect=self.max_aspect)
            turn = img.getexif().get(_ORIENTATION, 1)
            if self.keep_formats:
                keep = img.format in PASSTHROUGH
            else:
                keep = (img.format == FIELD_FORMAT[self.image_format] and img.mode == "RGB"
                        and "transparency" not in img.info and turn == 1)
            if not keep:
                return None
            size = list(img.size)  # before load_whole: a JPEG draft decodes at 1/8 scale
            if turn in (5, 6, 7, 8):  # kept as it is, with its EXIF turn: the size is the
                size.reverse()  # upright image's, as when it is re-encoded
            load_whole(img)
            if not view_spec(meta):
                meta["size"] = size
            return PASSTHROUGH[img.format]


def shard(src: str | Path, out: str | Path, *, shuffle: bool = False, seed: int = 0,
          balance: str | None = None, reencode: bool = False, keep_formats: bool = False,
          expand_views: bool = False, image_format: str = "jpg", quality: int = 90,
          max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect: float = DEFAULT_MAX_ASPECT,
          fmt: str = "webdataset", max_count: int = 10_000, max_bytes: int | None = None,
          lmdb_layout: str = "dataprep", split: str | None = None,
          root: str | Path | None = None, records: list[Record] | None = None,
          classes: list[str] | None = None, jobs: int | None = None,
          backend: str | None = None, scheduler: str | None = None, on_error: str = "skip",
          overwrite: bool = False, dry_run: bool = False, max_disk: int | None = None,
          fingerprint: str = "stat", log: Log | None = None) -> Report:
    """Pack ``src`` (folder, list, manifest, WebDataset, LMDB) into ``out`` shards.

    ``balance`` (``"oversample"`` or ``"undersample"``) balances the classes of each split
    first (:mod:`dataprep.jobs.balance`, seeded by ``seed``) and logs the per-class counts.
    ``shuffle`` permutes the records with ``seed`` before packing (reproducible).
    ``expand_views`` turns lazy view records into materialized views (encoded with
    ``image_format`` / ``quality``). Every sample is stored as ``image_format`` in RGB (files
    already so are kept byte for byte); ``keep_formats`` keeps JPEG/PNG/WebP files as they are
    (mixed image fields, which some readers refuse: the log names them). ``max_pixels`` and
    ``max_aspect`` refuse bomb-shaped images from their header. The output, input and run
    arguments are :func:`dataprep.jobs.tencrop.resize`'s.
    """
    task = ShardTask(reencode, image_format, quality, max_pixels, expand_views, max_aspect,
                     keep_formats)
    inputs, output, options = verb_objects(locals())
    return shard_records(inputs, task, out, Packing(shuffle, seed, balance), output, options)


@dataclass(frozen=True)
class Packing:
    """What ``shard`` does to the list of records before packing: ``balance`` the classes of
    each split (``oversample`` / ``undersample``), then ``shuffle``, both seeded by ``seed``."""

    shuffle: bool = False
    seed: int = 0
    balance: str | None = None

    def params(self) -> dict[str, Any]:
        return {"shuffle": self.shuffle, "seed": self.seed,
                **({"balance": self.balance} if self.balance else {})}

    def apply(self, records: list[Record], log: Callable[[str], None]) -> list[Record]:
        if self.balance:
            from dataprep.jobs.balance import balance as balance_records
            from dataprep.jobs.balance import balance_lines

            before, records = records, balance_records(records, self.balance, self.seed)
            for line in balance_lines(before, records, self.balance):
                log(line)
        if self.shuffle:
            order = list(range(len(records)))
            random.Random(self.seed).shuffle(order)
            records = [records[i] for i in order]
        return records


def shard_records(inputs: InputSpec, task: ShardTask, out: str | Path, packing: Packing,
                  output: OutputSpec, options: RunOptions) -> Report:
    """:func:`shard` with its options built. Shards in, shards out stay a stream (memory does
    not grow with the source; the workers decode every image whole before it is stored),
    unless balancing or shuffling needs the whole list."""
    if output.fmt == "folder":
        raise UsageError("shard writes shards: --format webdataset or lmdb")
    if task.keep_formats:
        options.say("--keep-formats: samples keep their own image field (jpg, png or webp, "
                    "alpha included); readers that need one type per output "
                    f"({', '.join(ONE_TYPE_READERS)}) fail or drop images on such shards; "
                    f"without it every image is stored as {task.image_format}, RGB")
    params = dict(task.params(), **packing.params(), src=str(inputs.src))
    listed = packing.shuffle or bool(packing.balance)
    with workers(options):
        source = read_input(inputs, listed=listed)
        if listed:
            source = source.with_records(packing.apply(list(source.records), options.say))
        return run_job("shard", source, task, out, output, options, params)
