"""Streaming loader: parts → samples → (lazy views) → shuffle buffer → augment → uint8 batches.

How work is split (the reason DDP cannot hang): there are ``G = world_size x workers`` global
workers. Each epoch the parts are shuffled with a generator every rank seeds alike, then dealt
by sample count (:func:`plan_parts`): a part much larger than a worker's fair share, or one of
fewer parts than workers, is sliced, each worker keeping every ``stride``-th sample. Every rank
runs exactly ``batches`` training batches per epoch, computed beforehand from the sample counts
(:func:`batches_per_epoch`), whatever it was dealt: a worker cycles over its parts when they run
out and stops at its quota. Validation reads every sample exactly once and may give ranks
different batch counts: it runs no collective.

Randomness: shard order from ``(seed, epoch)``, a worker's passes and buffer from
``(seed, epoch, worker, pass)``, each augmentation from ``(seed, key, view, epoch)``; nothing
touches global state.
Batches leave the workers as uint8 NCHW tensors (channels-last in memory); normalization runs
on the device (:func:`normalize`).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from dataprep.errors import ImageError, ShardError
from dataprep.io.decode import DEFAULT_MAX_PIXELS, open_image
from dataprep.io.fields import IMAGE_FIELDS, stored_meta
from dataprep.io.lmdbread import caffe_range, lmdb_key, read_caffe_sidecar
from dataprep.io.readers import iter_tar, to_sample
from dataprep.ops.crop import center_box, center_crop, five_boxes
from dataprep.ops.resize import resize_short_side
from dataprep.ops.rng import sample_rng
from dataprep.records import Sample
from dataprep.train.cache import ShardCache, is_remote
from dataprep.train.sources import Part

log = logging.getLogger("dataprep.train")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Assignment:
    """Samples ``i`` of part ``part`` with ``i % stride == offset``."""

    part: int
    stride: int = 1
    offset: int = 0


def plan_parts(counts: list[int | None], num_workers: int) -> list[list[Assignment]]:
    """Deal parts (of ``counts`` samples each, in the given order) to ``num_workers`` global
    workers so that every sample goes to exactly one worker and the workers' totals are close.

    A part much larger than the fair share ``ceil(total / num_workers)`` is cut into ``k``
    stride slices (``i % k == j``), each read by a different worker; parts are cut until there
    are at least as many slices as workers (when samples allow). Slices are then dealt largest
    first to the least loaded worker (ties: earlier part, lower worker). Unknown counts
    (``None``) count as equal and are never cut. 3 parts of 5 samples, 4 workers ->
    [(1, 1, 0)], [(2, 1, 0)], [(0, 2, 0)], [(0, 2, 1)] as (part, stride, offset).
    """
    if not counts:
        raise ShardError("no shards to read")
    known = all(c is not None for c in counts)
    sizes = [int(c) if known else 1 for c in counts]  # type: ignore[arg-type]
    cuts = [1] * len(sizes)
    if known:
        fair = max(1, -(-sum(sizes) // num_workers))
        cuts = [max(1, round(n / fair)) for n in sizes]
    while sum(cuts) < num_workers:
        grow = [i for i, n in enumerate(sizes) if n > cuts[i]] if known else \
            list(range(len(sizes)))
        if not grow:
            break
        i = max(grow, key=lambda i: (sizes[i] / cuts[i], -i))
        cuts[i] += 1
    slices = []
    for i, (n, k) in enumerate(zip(sizes, cuts, strict=True)):
        for j in range(k):
            slices.append((len(range(j, n, k)) if known else 1, i, Assignment(i, k, j)))
    slices.sort(key=lambda t: (-t[0], t[1], t[2].offset))
    plan: list[list[Assignment]] = [[] for _ in range(num_workers)]
    load = [0] * num_workers
    for size, _, a in slices:
        w = min(range(num_workers), key=lambda w: (load[w], w))
        plan[w].append(a)
        load[w] += size
    return plan


def batches_per_epoch(num_items: int, world_size: int, batch_size: int) -> int:
    """Training batches each rank runs per epoch: one pass over the data, last partial dropped."""
    batches = num_items // (world_size * batch_size)
    if batches == 0:
        raise ShardError(
            f"{num_items} training samples cannot fill one batch of {batch_size} on each of "
            f"{world_size} rank(s); lower --batch-size"
        )
    return batches


def view_count(meta: dict) -> int:
    """Views a stored sample expands to: 10 (lazy ten-crop with flips), 5 (five-crop), else 1."""
    views = meta.get("views")
    if not views:
        return 1
    return 10 if views.get("kind") == "tencrop" and views.get("flip", True) else 5


def view_image(img: Image.Image, views: dict, index: int) -> Image.Image:
    """View ``index`` of a lazily stored image, in ten-crop order."""
    if index >= 5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img.crop(five_boxes(img.width, img.height, int(views["crop"]))[index % 5])


# -- reading ------------------------------------------------------------------------------------


def _iter_lmdb_range(part: Part) -> Iterator[Sample]:
    import lmdb

    env = lmdb.open(part.url, readonly=True, lock=False, readahead=False, subdir=True)
    try:
        with env.begin(buffers=False) as txn:
            if txn.get(b"__len__") is None:  # Caffe's layout (dataprep's always has __len__)
                stop = part.stop if part.stop is not None else part.start
                yield from caffe_range(  # type: ignore[misc]
                    txn, part.url, part.start, stop,
                    gaps=read_caffe_sidecar(part.url) is None)
                return
            for i in range(part.start, part.stop if part.stop is not None else part.start):
                image, cls, raw = (txn.get(lmdb_key(i, f)) for f in ("image", "cls", "json"))
                if image is None:
                    raise ShardError(f"{part.url}: sample {i} is missing (layout damaged)")
                meta = json.loads(raw) if raw else {}
                ext = str(meta.get("ext", "jpg"))
                if ext not in IMAGE_FIELDS:
                    raise ShardError(f"{part.url}: sample {i} has image format {ext!r}; "
                                     f"expected one of {IMAGE_FIELDS}")
                key = str(meta.get("key", f"{i:08d}"))
                label = meta.get("label")
                yield Sample(key, image, ext, int(cls) if cls is not None else
                             int(-1 if label is None else label), stored_meta(meta, key))
    finally:
        env.close()


def iter_part(part: Part, cache: ShardCache | None, stride: int = 1,
              offset: int = 0) -> Iterator[Sample]:
    """Samples of one part (remote tars through the cache), keeping ``i % stride == offset``."""
    if part.kind == "lmdb":
        samples: Iterable[Sample] = _iter_lmdb_range(part)
    elif is_remote(part.url):
        if cache is None:
            raise ShardError(f"{part.url} is remote but no shard cache is configured")
        samples = _iter_cached_tar(part.url, cache)
    else:
        samples = (_to_sample(d) for d in iter_tar(part.url))
    for i, sample in enumerate(samples):
        if i % stride == offset:
            yield sample


def _iter_cached_tar(url: str, cache: ShardCache) -> Iterator[Sample]:
    with cache.open(url) as path:
        for d in iter_tar(path):
            d["__url__"] = url
            yield _to_sample(d)


def _to_sample(d: dict) -> Sample:
    """:func:`to_sample`, with malformed ``cls`` / ``json`` fields reported as a bad shard."""
    try:
        return to_sample(d)
    except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise ShardError(f"{d.get('__url__')}: sample {d.get('__key__')!r} has a malformed "
                         f"cls or json field ({exc})") from exc


def peek(part: Part, cache: ShardCache | None, count: int = 64) -> list[Sample]:
    """The first ``count`` samples of ``part`` (are views lazy? are shards sorted by class?)."""
    out = []
    for sample in iter_part(part, cache):
        out.append(sample)
        if len(out) == count:
            break
    return out


def part_labels(part: Part, cache: ShardCache | None) -> list[int]:
    """The label of every sample of ``part``, in stored order (images read, not decoded):
    how the shard is ordered, measured over all of it."""
    return [sample.cls for sample in iter_part(part, cache)]


# -- pixels -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """What a worker does to pixels. Pure data: pickled into each worker.

    ``pipeline``: the :class:`dataprep.ops.augment.Augment` that ``dataprep augment`` runs
    for the same flags (its geometry crops ``img_size``); ``None`` means a random crop and
    a flip with probability 0.5 (``augment --crop IMG_SIZE --hflip``).
    ``resize_first``: stored images (not views) are resized so their shorter side is
    ``short_side`` before the pipeline (as ``augment --short-side``), views so it is
    ``img_size``; False for scale jitter and RandomResizedCrop, which take the stored image
    as it is. Validation: resize to ``short_side``, center crop ``img_size``.
    """

    img_size: int = 224
    short_side: int = 256
    pipeline: Any = None
    resize_first: bool = True

    def __post_init__(self) -> None:
        if self.pipeline is None:
            from dataprep.ops.augment import Augment as Pipeline

            object.__setattr__(self, "pipeline", Pipeline(crop=self.img_size, hflip=0.5))


# stages the array fast path does itself; any other stage goes through Pillow
_ARRAY_STAGES = frozenset({"geometry", "hflip", "pca_lighting"})


def online_augment(img_size: int, short_side: int, **flags: Any) -> Augment:
    """The training :class:`Augment` of ``dataprep augment``'s flags (the parameter names of
    :func:`dataprep.jobs.augment.build_augment`: ``hflip``, ``scale_jitter``,
    ``random_resized_crop``, ``rotate``, ``shift``, ``color_jitter``, ``pca_lighting``,
    ``stats``, ``blur``, ``noise``), with ``crop=img_size``."""
    from dataprep.jobs.augment import build_augment

    pipeline = build_augment(crop=img_size, **flags)
    scaled = pipeline is not None and (pipeline.scale_jitter is not None
                                       or pipeline.random_resized_crop is not None)
    return Augment(img_size, short_side, pipeline, resize_first=not scaled)


def _fit(img: Image.Image, short_side: int) -> Image.Image:
    return resize_short_side(img, short_side, upscale=True) if min(img.size) != short_side else img


def draw_params(aug: Augment, rng: np.random.Generator, size: tuple[int, int]
                ) -> list[tuple[str, dict]]:
    """The pipeline's parameters for an input of ``size`` (width, height), after the resize
    of ``resize_first``: exactly ``dataprep augment``'s draw for the same generator."""
    return aug.pipeline.make_params(rng, size)


def train_pixels(img: Image.Image, is_view: bool, aug: Augment,
                 rng: np.random.Generator) -> np.ndarray:
    """The pipeline on ``img`` (resized first when ``aug.resize_first``); returns HWC uint8.

    The generator is the one ``dataprep augment`` gives copy ``k`` (``sample_rng(seed, key,
    view, epoch)``): same generator, same parameters (:func:`draw_params`), same pixels.
    """
    if aug.resize_first:
        img = _fit(img, aug.img_size if is_view else aug.short_side)
    params = draw_params(aug, rng, img.size)
    return np.asarray(aug.pipeline.apply_params(img, params), dtype=np.uint8)


def eval_pixels(img: Image.Image, is_view: bool, aug: Augment) -> np.ndarray:
    img = _fit(img, aug.img_size if is_view else aug.short_side)
    return np.asarray(center_crop(img, aug.img_size), dtype=np.uint8)


def array_path_ok(aug: Augment) -> bool:
    """Can :func:`train_array` do this pipeline on arrays (crop, flip, PCA lighting only)?"""
    return (aug.resize_first
            and all(name in _ARRAY_STAGES for name, _ in aug.pipeline.ops))


_SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF))


def _jpeg_header(data: bytes) -> tuple[int, int, int, bool] | None:
    """(width, height, components, has Exif) of a JPEG, from its markers up to the start of
    scan (an APP1 Exif segment may follow the frame header); None if there is no frame
    header."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, end, exif = 2, len(data), False
    frame: tuple[int, int, int] | None = None
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: no more headers
            break
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in _SOF_MARKERS and frame is None and pos + 10 <= end:
            frame = (int.from_bytes(data[pos + 7:pos + 9], "big"),
                     int.from_bytes(data[pos + 5:pos + 7], "big"), data[pos + 9])
        elif marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            exif = True
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None if frame is None else (*frame, exif)


_decode_jpeg: Any = None  # torchvision's decoder; False: not usable (not installed)
_simplejpeg: Any = None  # the simplejpeg module; False: not installed


def decode_jpeg_array(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """HWC uint8 RGB pixels of a JPEG, decoded by libjpeg-turbo straight into an array (no
    Pillow image: no RGB->RGBX->RGB round trip), EXIF orientation applied.

    Decoders: simplejpeg (the ``train`` extra; about a fifth faster than torchvision's) for
    grey and colour JPEGs without Exif data, else torchvision's ``decode_jpeg``, which applies
    the Exif orientation. Both give the pixels of :func:`dataprep.io.decode.open_image` (all run
    libjpeg-turbo's accurate IDCT and fancy upsampling). Returns None where no fast path
    applies (not a JPEG, over ``max_pixels``, a decode error, neither decoder installed): the
    caller then uses ``open_image``, which also gives the clear error for a bad file.
    """
    global _decode_jpeg, _simplejpeg
    head = _jpeg_header(data)
    if head is None or head[0] * head[1] > max_pixels or head[0] * head[1] == 0:
        return None
    if head[2] in (1, 3) and not head[3]:
        if _simplejpeg is None:
            try:
                import simplejpeg as _simplejpeg
            except ImportError:
                _simplejpeg = False
        if _simplejpeg is not False:
            try:
                return _simplejpeg.decode_jpeg(data, colorspace="RGB")  # type: ignore[no-any-return]
            except ValueError:  # damaged or unusual: torchvision, then Pillow, decide
                pass
    if _decode_jpeg is False:
        return None
    if _decode_jpeg is None:
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except ImportError:  # no torchvision, or one without image decoding: Pillow it is
            _decode_jpeg = False
            return None
        def _decode_jpeg(buf: torch.Tensor) -> torch.Tensor:  # noqa: E306
            # torchvision 0.29 announces that a later release drops its image decoders (the
            # import above then fails and Pillow decodes): not a notice for our users
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_jpeg(buf, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    try:
        chw = _decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    except (RuntimeError, ValueError):
        return None
    return chw.permute(1, 2, 0).numpy()  # a view: torchvision decodes into HWC memory


def train_array(arr: np.ndarray, aug: Augment, rng: np.random.Generator,
                out: np.ndarray | None = None) -> np.ndarray:
    """:func:`train_pixels` of a stored image (not a view) already at ``aug.short_side``, on an
    HWC array: the same parameters and pixels. Requires :func:`array_path_ok`. ``out``: a
    C-contiguous (crop, crop, 3) array to write the result into (a batch's slot)."""
    h, w = arr.shape[:2]
    params = dict(draw_params(aug, rng, (w, h)))
    box = params["geometry"]
    crop = arr[box["top"]:box["top"] + box["height"], box["left"]:box["left"] + box["width"]]
    flip = params.get("hflip", {}).get("flip", False)
    if "pca_lighting" in params:
        lighting = dict(aug.pipeline.ops)["pca_lighting"]
        crop = lighting.apply_params(crop[:, ::-1] if flip else crop, params["pca_lighting"])
    elif flip:  # torch's flip: 20x numpy's copy of a reversed view
        flipped = torch.from_numpy(crop).flip(1)
        if out is None:
            return flipped.numpy()
        torch.from_numpy(out).copy_(flipped)
        return out
    if out is None:
        return np.ascontiguousarray(crop)
    out[...] = crop
    return out


def eval_array(arr: np.ndarray, aug: Augment, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`eval_pixels` of a stored image already at ``aug.short_side``, on an HWC array
    (written into ``out`` when given)."""
    h, w = arr.shape[:2]
    left, top, right, bottom = center_box(w, h, aug.img_size)
    if out is None:
        return np.ascontiguousarray(arr[top:bottom, left:right])
    out[...] = arr[top:bottom, left:right]
    return out


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              channels_last: bool = False) -> torch.Tensor:
    """uint8 NCHW on the device -> float ``(x / 255 - mean) / std``; mean, std: (1, 3, 1, 1)."""
    x = x.float().div_(255.0).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last if channels_last else
                        torch.contiguous_format)


# -- the stream ---------------------------------------------------------------------------------


def shuffle_buffer(items: Iterable, size: int, rng: np.random.Generator) -> Iterator:
    """Yield ``items`` in an order shuffled within a window of ``size`` (webdataset's shuffle)."""
    if size <= 1:
        yield from items
        return
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(len(buf)))
        buf[j], item = item, buf[j]
        yield item
    rng.shuffle(buf)  # type: ignore[arg-type]
    yield from buf


class ShardStream(torch.utils.data.IterableDataset):
    """Batches of ``(uint8 images NCHW, int64 labels)`` for one rank; see the module docstring.

    ``train=True``: shuffled, augmented, exactly ``batches`` batches of ``batch_size`` per epoch.
    ``train=False``: every sample (and view) once, center crops, the last batch may be short.
    ``lazy_views``: ``"expand"`` turns a lazily stored sample into all its views; ``"one"``
    draws one view per sample per epoch (training only).
    """

    def __init__(self, parts: list[Part], *, train: bool, batch_size: int, aug: Augment,
                 seed: int = 0, rank: int = 0, world_size: int = 1, batches: int | None = None,
                 shuffle_buffer: int = 1000, lazy_views: str = "expand",
                 cache: ShardCache | None = None) -> None:
        super().__init__()
        if train and batches is None:
            raise ValueError("a training stream needs its number of batches per epoch")
        self.parts = parts
        self.train = train
        self.batch_size = batch_size
        self.aug = aug
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batches = batches
        self.buffer = shuffle_buffer
        self.lazy_views = lazy_views
        self.cache = cache
        self.epoch = 0
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _worker(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def _my_parts(self, g: int, num_global: int) -> list[tuple[Part, Assignment]]:
        order = list(range(len(self.parts)))
        if self.train:
            order = list(sample_rng(self.seed, "parts", 0, self.epoch).permutation(order))
        plan = plan_parts([self.parts[i].num_samples for i in order], num_global)[g]
        return [(self.parts[order[a.part]], a) for a in plan]

    def _views(self, samples: Iterable[Sample], rng: np.random.Generator,
               ) -> Iterator[tuple[Sample, int | None]]:
        """(sample, lazy view index or None) for every item to decode."""
        for sample in samples:
            n = view_count(sample.meta)
            if n == 1:
                yield sample, None
            elif self.train and self.lazy_views == "one":
                yield sample, int(rng.integers(n))
            else:
                for v in range(n):
                    yield sample, v

    def _cycled(self, mine: list[tuple[Part, Assignment]], g: int, w: int) -> Iterator[tuple]:
        """Training: the worker's samples pass after pass, each pass in a new part order and
        through its own shuffle buffer (flushed at the end of a pass, so a pass is exact)."""
        cycle = 0
        while True:
            rng = sample_rng(self.seed, f"cycle-{g}", cycle, self.epoch)
            order = rng.permutation(len(mine)) if cycle else range(len(mine))

            def one_pass(order=order, rng=rng, cycle=cycle) -> Iterator[tuple]:
                for k in order:
                    part, a = mine[int(k)]
                    samples = iter_part(part, self.cache, a.stride, a.offset)
                    for sample, view in self._views(samples, rng):
                        yield sample, view, cycle

            count = 0
            for item in shuffle_buffer(one_pass(), self.buffer, rng):
                count += 1
                yield item
            if count == 0:
                raise ShardError(f"rank {self.rank} worker {w} was dealt parts with no samples")
            cycle += 1

    def _pixels(self, sample: Sample, view: int | None, cycle: int, out: np.ndarray) -> bool:
        """Write the sample's (crop, crop, 3) pixels into ``out``; False if it was skipped."""
        is_view = view is not None or "view" in sample.meta
        vkey = sample.key if cycle == 0 else f"{sample.key}#{cycle}"
        arr = None
        if (not is_view and sample.ext in ("jpg", "jpeg")
                and (not self.train or array_path_ok(self.aug))):
            arr = decode_jpeg_array(sample.image)
            if arr is not None and min(arr.shape[:2]) == self.aug.short_side:
                if not self.train:
                    eval_array(arr, self.aug, out)
                else:
                    train_array(arr, self.aug, sample_rng(self.seed, vkey, 0, self.epoch), out)
                return True
        try:  # decoded already but to be resized, or a path the arrays do not take
            img = Image.fromarray(arr) if arr is not None else open_image(sample.image)
            if view is not None:
                img = view_image(img, sample.meta["views"], view)
        except (ImageError, ValueError, KeyError) as exc:
            self.skipped += 1
            if self.skipped <= 5:
                log.warning("skipping sample %s: %s", sample.key, exc)
            return False
        if not self.train:
            out[...] = eval_pixels(img, is_view, self.aug)
        else:
            rng = sample_rng(self.seed, vkey, view or 0, self.epoch)
            out[...] = train_pixels(img, is_view, self.aug, rng)
        return True

    def _batches(self, items: Iterable[tuple], limit: int | None,
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``batch_size`` (a last short one in evaluation), each image written
        straight into its slot of the batch."""
        if limit == 0:
            return
        c = self.aug.img_size
        batch: torch.Tensor | None = None
        labels: list[int] = []
        made = 0
        for sample, view, cycle in items:
            if batch is None:
                batch = _new_batch((self.batch_size, c, c, 3))
                slots = batch.numpy()
            if not self._pixels(sample, view, cycle, slots[len(labels)]):
                continue
            if sample.cls < 0:
                raise ShardError(f"sample {sample.key} has no label (.cls or json label)")
            labels.append(sample.cls)
            if len(labels) == self.batch_size:
                yield _as_nchw(batch, labels)
                made += 1
                if made == limit:
                    return  # before reading (or downloading) anything more
                batch, labels = None, []
        if batch is not None and labels and not self.train:
            yield _as_nchw(batch[:len(labels)], labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        w, num_workers = self._worker()
        g, num_global = self.rank * num_workers + w, self.world_size * num_workers
        if torch.utils.data.get_worker_info() is not None:
            torch.set_num_threads(1)  # workers decode with PIL; torch threads would oversubscribe
        mine = self._my_parts(g, num_global)
        if not self.train:
            rng = sample_rng(self.seed, "eval", g, 0)
            items = ((sample, view, 0) for part, a in mine
                     for sample, view in self._views(iter_part(part, self.cache, a.stride,
                                                               a.offset), rng))
            yield from self._batches(items, None)
            return
        assert self.batches is not None
        quota = self.batches // num_workers + (w < self.batches % num_workers)
        items = self._cycled(mine, g, w)
        try:
            yield from self._batches(items, quota)
        finally:
            items.close()  # unpins the cached shard being read now, not at garbage collection


def _new_batch(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty uint8 NHWC batch. In a DataLoader worker it is made in shared memory, as torch's
    default collate does, so sending it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is not None:
        try:
            storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
            return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape)
        except (AttributeError, RuntimeError):  # another torch: its pickler shares the batch
            pass
    return torch.empty(shape, dtype=torch.uint8)


def _as_nchw(batch: torch.Tensor, labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """NHWC in memory, NCHW in shape: exactly the channels-last layout."""
    return batch.permute(0, 3, 1, 2), torch.tensor(labels, dtype=torch.int64)


def make_loader(stream: ShardStream, workers: int, pin_memory: bool = False,
                ) -> torch.utils.data.DataLoader:
    """A DataLoader over ``stream`` (batches are made in the stream: ``batch_size=None``)."""
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                       pin_memory=pin_memory)
