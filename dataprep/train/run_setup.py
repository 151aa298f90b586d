"""Before the first epoch: the run folder (:func:`prepare_run_dir`), the data of the run
(:func:`setup_data`: sources, shard cache, batches per epoch, classes, streams) and the line
that says what model was built (:func:`model_line`).

Everything here may raise :class:`~dataprep.errors.UsageError` for a bad configuration or data;
:class:`dataprep.train.loop.Trainer` calls it before any epoch starts, so a run that cannot
train fails early and leaves no empty run folder.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from dataprep.errors import UsageError
from dataprep.train import diagnose
from dataprep.train.cache import ShardCache
from dataprep.train.config import TrainConfig
from dataprep.train.data import ShardStream, batches_per_epoch, view_count
from dataprep.train.models import BuiltModel
from dataprep.train.pixels import Augment, online_augment
from dataprep.train.reading import part_labels, peek
from dataprep.train.runtime import Dist
from dataprep.train.sources import Source, has_split, resolve_source

log = logging.getLogger("dataprep.train")


@dataclass
class RunData:
    """The streams of one rank and the length of its epochs."""

    train_stream: ShardStream
    val_stream: ShardStream | None
    batches: int  # training batches per rank per epoch
    optimizer_steps: int  # optimizer steps per epoch (batches / --accum-steps, rounded up)


def prepare_run_dir(cfg: TrainConfig, d: Dist) -> Path:
    out = Path(cfg.out)
    has_run = (out / "last.pt").exists() or (out / "metrics.jsonl").exists()
    if has_run and not (cfg.resume or cfg.overwrite):
        raise UsageError(f"{out} already holds a run (last.pt / metrics.jsonl); pass --resume "
                         "to continue it, --overwrite to start afresh, or another -o")
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.overwrite:
            for name in ("last.pt", "best.pt", "metrics.jsonl", "evals.jsonl", "curves.png",
                         "config.json"):
                (out / name).unlink(missing_ok=True)
            for snapshot in out.glob("epoch-*.pt"):
                snapshot.unlink()
    return out


def make_augment(cfg: TrainConfig) -> Augment:
    """The training pixels of ``cfg``: ``dataprep augment``'s pipeline for the same flags
    (:func:`dataprep.jobs.augment.build_augment`), cropping ``--img-size``."""
    stats = (cfg.stats or cfg.pca_stats) if cfg.pca_lighting else None
    try:
        return online_augment(cfg.img_size, cfg.crop_short_side, hflip=cfg.hflip,
                              scale_jitter=cfg.scale_jitter,
                              random_resized_crop=cfg.random_resized_crop, rotate=cfg.rotate,
                              shift=cfg.shift, color_jitter=cfg.color_jitter,
                              pca_lighting=cfg.pca_lighting, stats=stats, blur=cfg.blur,
                              noise=cfg.noise)
    except UsageError as exc:  # the trainer's crop is --img-size
        raise UsageError(str(exc).replace("--crop", "--img-size")) from None


def setup_data(cfg: TrainConfig, d: Dist, device: torch.device, amp: torch.dtype | None,
               out: Path) -> RunData:
    """Resolve DATA (and the validation shards), settle the classes into ``cfg``, build this
    rank's streams and record what was resolved in ``cfg.resolved``."""
    train = resolve_source(cfg.data, cfg.train_split)
    val = _resolve_val(cfg)
    cache = None
    if train.remote or (val is not None and val.remote):
        cache = ShardCache(cfg.cache_dir or str(out / "shard-cache"), cfg.cache_size)
    head = peek(train.parts[0], cache, count=1)
    views = view_count(head[0].meta) if head else 1
    batches = _batches(cfg, train, views, d)
    num_classes = _settle_classes(cfg, train, val)
    _warn_if_sorted(part_labels(train.parts[0], cache), train.parts[0].url,
                    train.num_samples, cfg.shuffle_buffer, num_classes)
    aug = make_augment(cfg)
    common = dict(batch_size=cfg.batch_size, aug=aug, seed=cfg.seed, rank=d.rank,
                  world_size=d.world_size, cache=cache)
    data = RunData(ShardStream(train.parts, train=True, batches=batches,
                               shuffle_buffer=cfg.shuffle_buffer, lazy_views=cfg.lazy_views,
                               **common),
                   ShardStream(val.parts, train=False, **common) if val else None,
                   batches, math.ceil(batches / cfg.accum_steps))
    cfg.resolved.update(
        world_size=d.world_size, device=str(device),
        amp=str(amp).removeprefix("torch.") if amp else "off",
        batches_per_epoch=batches, optimizer_steps_per_epoch=data.optimizer_steps,
        train_samples=train.num_samples, val_samples=val.num_samples if val else None,
        views_per_sample=views, torch=str(torch.__version__),
        effective_batch=cfg.batch_size * d.world_size * cfg.accum_steps,
        cache_dir=cache.cache_dir if cache else None,
    )
    if val is None:
        log.warning("no validation shards (--val, or a %r split beside DATA): best.pt, "
                    "early stopping and the chance warning need them", cfg.val_split)
    return data


def _resolve_val(cfg: TrainConfig) -> Source | None:
    if cfg.val:
        return resolve_source(cfg.val, cfg.val_split)
    if has_split(cfg.data, cfg.val_split):
        return resolve_source(cfg.data, cfg.val_split)
    return None


def _batches(cfg: TrainConfig, train: Source, views: int, d: Dist) -> int:
    """Training batches per rank per epoch: ``--steps-per-epoch``, else one pass over the
    samples (each lazily stored sample counting as its views with ``--lazy-views expand``)."""
    if cfg.steps_per_epoch:
        return cfg.steps_per_epoch
    if train.num_samples is None:
        raise UsageError(f"{cfg.data}: the number of samples is unknown (no _info.json "
                         "beside the shards); pass --steps-per-epoch")
    per_sample = views if cfg.lazy_views == "expand" else 1
    return batches_per_epoch(train.num_samples * per_sample, d.world_size, cfg.batch_size)


def _settle_classes(cfg: TrainConfig, train: Source, val: Source | None) -> int:
    """Set ``cfg.num_classes`` and ``cfg.classes`` from the flags or the shards; returns the
    number of classes."""
    classes = cfg.classes or train.classes or (val.classes if val else [])
    num_classes = cfg.num_classes or len(classes)
    if not num_classes:
        raise UsageError(f"{cfg.data} does not name its classes (no dataprep.json or LMDB "
                         "class list); pass --num-classes")
    if classes and len(classes) != num_classes:
        log.warning("--num-classes %d differs from the %d classes the shards name",
                    num_classes, len(classes))
    cfg.num_classes, cfg.classes = num_classes, list(classes)
    return num_classes


def _warn_if_sorted(labels: list[int], shard: str, num_samples: int | None, buffer: int,
                    num_classes: int) -> None:
    """Shards written in class order defeat a shuffle buffer smaller than the data: batches then
    hold one or two classes, which wrecks BatchNorm statistics and the gradient. Say so,
    measured over the whole first shard."""
    message = diagnose.sorted_shard_message(labels, shard, buffer, num_samples, num_classes)
    if message:
        log.warning(message)


def model_line(cfg: TrainConfig, built: BuiltModel) -> str:
    """What was built: the model, input size, weights, head kept or replaced, re-initialised
    layers, auxiliary loss weight."""
    parts = [f"model {cfg.model} ({built.source}) at {cfg.img_size} px"]
    if cfg.weights:
        parts.append(f"weights {cfg.weights}: classifier {built.head} "
                     + ("replaced (another class count)" if built.head_replaced else "kept"))
    if built.reinit:
        parts.append(f"re-initialised {', '.join(built.reinit)}")
    if built.aux_weight:
        parts.append(f"auxiliary losses x{built.aux_weight:g}")
    return "; ".join(parts)
