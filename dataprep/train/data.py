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
on the device (:func:`dataprep.train.pixels.normalize`).

Around the stream: :mod:`dataprep.train.reading` reads a part's samples,
:mod:`dataprep.train.jpeg` decodes JPEGs into arrays, :mod:`dataprep.train.pixels` crops,
flips and augments them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from dataprep.errors import ImageError, ShardError
from dataprep.io.decode import open_image
from dataprep.ops.crop import five_boxes
from dataprep.ops.rng import sample_rng
from dataprep.records import Sample
from dataprep.train.cache import ShardCache
from dataprep.train.jpeg import decode_jpeg_array
from dataprep.train.pixels import (
    Augment,
    array_path_ok,
    eval_array,
    eval_pixels,
    train_array,
    train_pixels,
)
from dataprep.train.reading import iter_part
from dataprep.train.sources import Part

log = logging.getLogger("dataprep.train")


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
