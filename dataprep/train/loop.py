"""The training loop: ``train(config) -> TrainResult``.

Per epoch: pick the stage (head only while ``epoch < freeze_epochs``, then every layer the
fine-tuning plan of :mod:`dataprep.train.finetune` trains), stream exactly ``batches`` batches
per rank, step the optimizer every ``accum_steps`` micro-batches with the learning rate of
:func:`lr_factor` times each group's multiplier, evaluate on the validation shards (also every
``eval_every_steps`` optimizer steps), reduce the sums over ranks, then (rank 0) write
``metrics.jsonl``, ``curves.png``, ``last.pt``, ``epoch-N.pt`` every ``save_every`` epochs and,
on a better validation top-1, ``best.pt``. The warnings of :mod:`dataprep.train.diagnose` are
checked after every evaluation. Randomness is reseeded from ``(seed, epoch)`` at each epoch, so a
run resumed from ``last.pt`` continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dataprep.errors import UsageError
from dataprep.ops.rng import stable_rank
from dataprep.train import diagnose
from dataprep.train.cache import ShardCache
from dataprep.train.checkpoint import load_checkpoint, save_checkpoint
from dataprep.train.config import TrainConfig
from dataprep.train.data import ShardStream, batches_per_epoch, make_loader, view_count
from dataprep.train.finetune import (
    Plan,
    apply_stage,
    frozen_norms,
    param_groups,
    parse_lr_group,
    plan,
)
from dataprep.train.models import BuiltModel, build_model, model_loss
from dataprep.train.pixels import Augment, normalize, online_augment
from dataprep.train.reading import part_labels, peek
from dataprep.train.sources import Source, has_split, resolve_source

log = logging.getLogger("dataprep.train")

CHANCE_EPOCHS = 2  # validation at chance this many epochs in a row -> warn


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


@dataclass
class TrainResult:
    out: str
    epochs_run: int
    best_top1: float | None
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = "completed"  # completed | early_stop | diverged
    best_step: int | None = None  # optimizer step of best.pt (with --eval-every-steps)


# -- pure helpers -------------------------------------------------------------------------------


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Warmup ramps linearly over ``warmup_epochs``; then ``step`` decays by ``gamma`` every
    ``step_size`` epochs, ``multistep`` at each milestone epoch, ``cosine`` follows half a cosine
    from 1 to 0 over the remaining steps of ``epochs``; ``constant`` stays at 1.
    """
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    epoch = step / steps_per_epoch
    if cfg.schedule == "step":
        return cfg.gamma ** int(epoch // cfg.step_size)
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        total = max(cfg.epochs * steps_per_epoch - warmup, 1)
        progress = min((step - warmup) / total, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


OPTIMIZERS = {
    "sgd": lambda groups, c: torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum,
                                             weight_decay=c.weight_decay),
    "adam": lambda groups, c: torch.optim.Adam(groups, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda groups, c: torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay),
    "adagrad": lambda groups, c: torch.optim.Adagrad(groups, lr=c.lr,
                                                     weight_decay=c.weight_decay),
    "rmsprop": lambda groups, c: torch.optim.RMSprop(groups, lr=c.lr, momentum=c.momentum,
                                                     weight_decay=c.weight_decay),
}


def fine_tune_plan(cfg: TrainConfig, built: BuiltModel) -> Plan:
    """The groups of ``--lr-group``, ``--train-last`` / ``--freeze-until`` and
    ``--head-lr-mult`` (see :mod:`dataprep.train.finetune`)."""
    return plan(built.model, built.head, rules=[parse_lr_group(t) for t in cfg.lr_group],
                head_lr_mult=cfg.head_lr_mult, train_last=cfg.train_last,
                freeze_until=cfg.freeze_until)


def build_optimizer(cfg: TrainConfig, built: BuiltModel, groups: Plan | None = None,
                    ) -> torch.optim.Optimizer:
    """One parameter group per trained group of the plan (``name``, ``lr_mult``); without
    --lr-group: backbone at ``lr``, head at ``lr * head_lr_mult``. Frozen parameters are
    left out. Raises :class:`UsageError` when nothing would train."""
    groups = groups or fine_tune_plan(cfg, built)
    param_list = param_groups(built.model, groups)
    if not param_list:
        raise UsageError("every parameter is frozen (--lr-group ...=0, --train-last, "
                         "--freeze-until): nothing would train")
    return OPTIMIZERS[cfg.optimizer](param_list, cfg)


def set_lr(optimizer: torch.optim.Optimizer, base: float, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base * factor * group["lr_mult"]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have their label among the ``k`` largest logits (a 0-d tensor)."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).sum()


# -- setup --------------------------------------------------------------------------------------


def setup_distributed(device_kind: str) -> Dist:
    """Join the process group ``torchrun`` describes in the environment (gloo on CPU, nccl on
    CUDA); a plain run is a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return d


def resolve_device(cfg: TrainConfig, d: Dist) -> torch.device:
    kind = cfg.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available; use --device cpu")
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def resolve_amp(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the device has it, fp16 (with a grad scaler) on older GPUs, none on CPU."""
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16" or device.type != "cuda" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _epoch_seed(seed: int, epoch: int) -> int:
    return stable_rank(seed, f"epoch-{epoch}") % (2**63)


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


def _warn_if_sorted(labels: list[int], shard: str, num_samples: int | None, buffer: int,
                    num_classes: int) -> None:
    """Shards written in class order defeat a shuffle buffer smaller than the data: batches then
    hold one or two classes, which wrecks BatchNorm statistics and the gradient. Say so,
    measured over the whole first shard."""
    message = diagnose.sorted_shard_message(labels, shard, buffer, num_samples, num_classes)
    if message:
        log.warning(message)


def _resolve_val(cfg: TrainConfig) -> Source | None:
    if cfg.val:
        return resolve_source(cfg.val, cfg.val_split)
    if has_split(cfg.data, cfg.val_split):
        return resolve_source(cfg.data, cfg.val_split)
    return None


def _prepare_run_dir(cfg: TrainConfig, d: Dist) -> Path:
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


# -- the loop -----------------------------------------------------------------------------------


class Trainer:
    """State of one run; :meth:`run` is the loop. Built by :func:`train`."""

    def __init__(self, cfg: TrainConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        kind = "cuda" if cfg.device == "cuda" or (cfg.device == "auto"
                                                  and torch.cuda.is_available()) else "cpu"
        self.dist = setup_distributed(kind)
        self.device = resolve_device(cfg, self.dist)
        self.amp = resolve_amp(cfg, self.device)
        fresh = not Path(cfg.out).exists()
        self.out = _prepare_run_dir(cfg, self.dist)
        try:
            self._setup_data()
            self._setup_model()
        except BaseException:  # a run that never started leaves no empty run folder behind
            if fresh and self.dist.main and not any(self.out.iterdir()):
                self.out.rmdir()
            raise
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.step = 0
        self.best_top1: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.chance_epochs = 0
        self.best_step: int | None = None
        self.base_lr = cfg.lr  # --lr times the schedule's factor at the last step
        self.step_evals: list[dict[str, Any]] = []  # --eval-every-steps validations
        self.evals: list[dict[str, Any]] = []  # every validation, in order (diagnostics)
        self.warned: list[str] = []  # diagnostics given once per run
        if cfg.resume:
            self._resume()
        if self.dist.main:
            (self.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    # setup ----------------------------------------------------------------------------------

    def _setup_data(self) -> None:
        cfg, d = self.cfg, self.dist
        train = resolve_source(cfg.data, cfg.train_split)
        val = _resolve_val(cfg)
        cache = None
        if train.remote or (val is not None and val.remote):
            cache = ShardCache(cfg.cache_dir or str(self.out / "shard-cache"), cfg.cache_size)
        head = peek(train.parts[0], cache, count=1)
        views = view_count(head[0].meta) if head else 1
        per_sample = views if cfg.lazy_views == "expand" else 1
        if cfg.steps_per_epoch:
            batches = cfg.steps_per_epoch
        elif train.num_samples is None:
            raise UsageError(f"{cfg.data}: the number of samples is unknown (no _info.json "
                             "beside the shards); pass --steps-per-epoch")
        else:
            batches = batches_per_epoch(train.num_samples * per_sample, d.world_size,
                                        cfg.batch_size)
        classes = cfg.classes or train.classes or (val.classes if val else [])
        num_classes = cfg.num_classes or len(classes)
        if not num_classes:
            raise UsageError(f"{cfg.data} does not name its classes (no dataprep.json or LMDB "
                             "class list); pass --num-classes")
        if classes and len(classes) != num_classes:
            log.warning("--num-classes %d differs from the %d classes the shards name",
                        num_classes, len(classes))
        cfg.num_classes, cfg.classes = num_classes, list(classes)
        _warn_if_sorted(part_labels(train.parts[0], cache), train.parts[0].url,
                        train.num_samples, cfg.shuffle_buffer, num_classes)
        aug = make_augment(cfg)
        common = dict(batch_size=cfg.batch_size, aug=aug, seed=cfg.seed, rank=d.rank,
                      world_size=d.world_size, cache=cache)
        self.batches = batches
        self.train_stream = ShardStream(train.parts, train=True, batches=batches,
                                        shuffle_buffer=cfg.shuffle_buffer,
                                        lazy_views=cfg.lazy_views, **common)
        self.val_stream = (ShardStream(val.parts, train=False, **common) if val else None)
        self.optimizer_steps = math.ceil(batches / cfg.accum_steps)
        cfg.resolved.update(
            world_size=d.world_size, device=str(self.device),
            amp=str(self.amp).removeprefix("torch.") if self.amp else "off",
            batches_per_epoch=batches, optimizer_steps_per_epoch=self.optimizer_steps,
            train_samples=train.num_samples, val_samples=val.num_samples if val else None,
            views_per_sample=views, torch=str(torch.__version__),
            effective_batch=cfg.batch_size * d.world_size * cfg.accum_steps,
            cache_dir=cache.cache_dir if cache else None,
        )
        if val is None:
            log.warning("no validation shards (--val, or a %r split beside DATA): best.pt, "
                        "early stopping and the chance warning need them", cfg.val_split)

    def _setup_model(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # same initial head on every rank and every run
        assert cfg.num_classes is not None
        self.built = build_model(cfg.model, cfg.num_classes, weights=cfg.weights,
                                 pretrained=cfg.pretrained, img_size=cfg.img_size,
                                 reinit_last=cfg.reinit_last)
        model = self.built.model.to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.plan = fine_tune_plan(cfg, self.built)
        self.optimizer = build_optimizer(cfg, self.built, self.plan)
        if self.dist.main:
            log.info(_model_line(cfg, self.built))
            log.info(self.plan.table(cfg.lr))
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp == torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1)
        self.stage: str | None = None
        self.wrapped: nn.Module = model
        cfg.resolved.update(head=self.built.head, model_source=self.built.source,
                            parameters=sum(p.numel() for p in model.parameters()),
                            aux_weight=self.built.aux_weight, reinit=self.built.reinit,
                            head_replaced=self.built.head_replaced,
                            groups=[{"name": g.name, "lr_mult": g.mult, "layers": len(g.layers),
                                     "parameters": g.numel} for g in self.plan.groups
                                    if g.params])

    def _resume(self) -> None:
        state = load_checkpoint(self.out / "last.pt")
        saved = TrainConfig.from_dict(state["config"])
        changed = self.cfg.differences(saved)
        fatal = [k for k in changed if k in ("model", "num_classes", "classes", "img_size")]
        if fatal:
            raise UsageError(f"--resume: {', '.join(fatal)} differ from {self.out}/last.pt; "
                             "these change the model; start a new run with another -o")
        if changed:
            log.warning("--resume: %s differ from the checkpoint; continuing with the new "
                        "values", ", ".join(changed))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_top1, self.best_epoch = state["best_top1"], state["best_epoch"]
        self.bad_epochs, self.chance_epochs = state["bad_epochs"], state["chance_epochs"]
        self.history = list(state["history"])
        self.best_step = state.get("best_step")
        self.step_evals = list(state.get("step_evals", []))
        self.evals = list(state.get("evals", []))
        self.warned = list(state.get("warned", []))
        log.info("resuming %s after epoch %d", self.out, self.epoch)

    def _set_stage(self, epoch: int) -> None:
        """Freeze or unfreeze the backbone; (re)wrap in DDP, which records what needs grads."""
        stage = "head" if epoch < self.cfg.freeze_epochs else "all"
        if stage == self.stage:
            return
        self.stage = stage
        apply_stage(self.model, self.plan, stage)
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DDP(self.model, device_ids=ids)
        if epoch > 0 or stage == "head":
            log.info("epoch %d: training %s", epoch + 1,
                     "the head only" if stage == "head" else "every layer")

    def _train_mode(self) -> None:
        self.model.train()
        # frozen layers keep their normalization statistics (inference mode BN)
        for m in frozen_norms(self.model, self.plan, self.stage or "all"):
            m.eval()
        if self.cfg.freeze_bn:
            head = self.built.head + "."
            for name, m in self.model.named_modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not name.startswith(head):
                    m.eval()

    # steps ----------------------------------------------------------------------------------

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def _inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if int(y.max()) >= (self.cfg.num_classes or 0) or int(y.min()) < 0:
            raise UsageError(f"label {int(y.max())} in the shards is outside 0.."
                             f"{self.cfg.num_classes - 1} (--num-classes {self.cfg.num_classes})")
        x = x.to(self.device, non_blocking=True)
        return (normalize(x, self.mean, self.std, self.cfg.channels_last),
                y.to(self.device, non_blocking=True))

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self._train_mode()
        self.train_stream.set_epoch(epoch)
        loader = make_loader(self.train_stream, cfg.workers, self.device.type == "cuda")
        # on the device, read back only for the progress bar: no per-step host sync on GPUs
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss sum, correct,
        #                                                             samples, non-finite
        bar = _progress(self.batches, f"epoch {epoch + 1}/{cfg.epochs}",
                        cfg.progress and self.dist.main)
        start, batches = time.perf_counter(), 0
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(loader):
            x, y = self._inputs(x, y)
            group_start = i // cfg.accum_steps * cfg.accum_steps
            group_len = min(cfg.accum_steps, self.batches - group_start)
            last = i - group_start == group_len - 1
            sync = contextlib.nullcontext()
            if self.dist.active and not last:
                sync = self.wrapped.no_sync()  # type: ignore[operator]
            with sync:
                with self._autocast():
                    loss, logits = model_loss(self.wrapped(x), y, self.criterion,
                                              self.built.aux_weight)
                self.scaler.scale(loss / group_len).backward()
            if last:
                self.base_lr = cfg.lr * lr_factor(cfg, self.step, self.optimizer_steps)
                set_lr(self.optimizer, self.base_lr, 1.0)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                if cfg.eval_every_steps and self.step % cfg.eval_every_steps == 0:
                    self._step_eval(epoch)
            batches += 1
            with torch.no_grad():
                value = loss.detach().double()
                finite = torch.isfinite(value)
                correct = (logits.detach().argmax(dim=1) == y).sum().double()
                totals += torch.stack([torch.where(finite, value * len(y), 0.0), correct,
                                       torch.full_like(value, len(y)), (~finite).double()])
            if bar is not None:
                bar.update(1)
                if i % 10 == 0 or i + 1 == self.batches:
                    loss_sum, _, seen, _ = totals.tolist()
                    bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}",
                                    img_s=f"{seen / (time.perf_counter() - start):.0f}")
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - start
        per_rank = self._gather(batches)
        self._reduce(totals)
        loss_sum, correct, samples, nonfinite = totals.tolist()
        n = max(samples, 1)
        return {"train_loss": loss_sum / n, "train_top1": correct / n,
                "train_samples": int(samples), "nonfinite_batches": int(nonfinite),
                "images_per_s": samples / seconds, "train_seconds": seconds,
                "batches_per_rank": per_rank,
                "lr": self.base_lr}  # --lr as scheduled; each group has x its multiplier

    @torch.no_grad()
    def _evaluate(self) -> dict[str, Any]:
        if self.val_stream is None:
            return {}
        self.model.eval()  # the bare module: no DDP collectives, ranks may differ in batches
        num_classes = self.cfg.num_classes or 0
        # loss sum, top-1, top-5, samples, then samples per class (for the chance level), then
        # top-1 hits per class (for the class-mean top-1)
        totals = torch.zeros(4 + 2 * num_classes, dtype=torch.float64, device=self.device)
        start = time.perf_counter()
        for x, y in make_loader(self.val_stream, self.cfg.workers,
                                self.device.type == "cuda"):
            x, y = self._inputs(x, y)
            with self._autocast():
                logits = self.model(x).float()
            loss = nn.functional.cross_entropy(logits, y, reduction="sum")
            totals[:4] += torch.stack([loss.double(), topk_correct(logits, y, 1).double(),
                                       topk_correct(logits, y, 5).double(),
                                       torch.tensor(len(y), dtype=torch.float64,
                                                    device=self.device)])
            totals[4:4 + num_classes] += torch.bincount(y, minlength=num_classes).double()
            hits = y[logits.argmax(dim=1) == y]
            totals[4 + num_classes:] += torch.bincount(hits, minlength=num_classes).double()
        self._reduce(totals)
        values = totals.tolist()
        n = max(values[3], 1)
        per_class, hits = values[4:4 + num_classes], values[4 + num_classes:]
        seen = [h / c for h, c in zip(hits, per_class, strict=True) if c]
        return {"val_loss": values[0] / n, "val_top1": values[1] / n, "val_top5": values[2] / n,
                "val_class_top1": sum(seen) / len(seen) if seen else 0.0,
                "val_samples": int(values[3]), "val_seconds": time.perf_counter() - start,
                "chance": max(per_class) / n if num_classes else 0.0}

    def _reduce(self, t: torch.Tensor) -> None:
        """Sum ``t`` over ranks, in place (a no-op for a single process)."""
        if self.dist.active:
            buf = t.to(self.device)
            dist.all_reduce(buf)
            t.copy_(buf)

    def _gather(self, value: int) -> list[int]:
        if not self.dist.active:
            return [value]
        t = torch.tensor([value], device=self.device)
        out = [torch.zeros_like(t) for _ in range(self.dist.world_size)]
        dist.all_gather(out, t)
        return [int(o.item()) for o in out]

    def _step_eval(self, epoch: int) -> None:
        """Validate mid-epoch (``--eval-every-steps``): record it, keep ``best.pt`` on a better
        top-1, check the diagnostics; then back to training mode."""
        m = self._evaluate()
        if not m:
            return
        m = {"epoch": epoch + 1, "step": self.step, **m}
        if self._better(m["val_top1"]):
            self.best_top1, self.best_epoch, self.best_step = m["val_top1"], epoch + 1, self.step
            m["best"] = True
        self.step_evals.append(m)
        self._diagnose_eval(m)
        if self.dist.main:
            if m.get("best"):
                save_checkpoint(self.out / "best.pt", self._checkpoint_state())
            lines = "".join(json.dumps(e) + "\n" for e in self.step_evals)
            tmp = self.out / ".evals.jsonl.tmp"
            tmp.write_text(lines)
            os.replace(tmp, self.out / "evals.jsonl")
            log.info("step %d: val loss %.4f | top-1 %.3f%s", self.step, m["val_loss"],
                     m["val_top1"], " (best)" if m.get("best") else "")
        self._train_mode()

    # bookkeeping ----------------------------------------------------------------------------

    def _better(self, top1: float) -> bool:
        return self.best_top1 is None or top1 > self.best_top1

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.append(kind)
            log.warning(message)

    def _diagnose_eval(self, m: dict[str, Any]) -> None:
        """Loss rising at chance, over every validation so far (epochs and steps)."""
        self.evals.append({k: m[k] for k in ("val_loss", "val_top1", "chance")})
        if (self.cfg.num_classes or 0) > 1 and diagnose.loss_rising_at_chance(self.evals):
            self._warn_once("loss_rising", diagnose.loss_rising_message(self.evals,
                                                                        self.cfg.lr))

    def _diagnose_epoch(self) -> None:
        if diagnose.overfitting(self.history):
            self._warn_once("overfitting", diagnose.overfitting_message(
                self.history, self.cfg.weight_decay, self.best_epoch))

    def _judge(self, m: dict[str, Any]) -> str | None:
        """Update best / patience / warnings from epoch metrics; return a reason to stop."""
        if m["nonfinite_batches"]:
            log.warning("loss is NaN or infinite in %d batch(es) of epoch %d: learning rate too "
                        "high? try --lr %g; stopping", m["nonfinite_batches"], m["epoch"],
                        self.cfg.lr / 10)
            return "diverged"
        if "val_top1" not in m:
            return None
        top1 = m["val_top1"]
        self._diagnose_eval(m)
        if self._better(top1):
            self.best_top1, self.best_epoch, self.bad_epochs = top1, m["epoch"], 0
            self.best_step = self.step
            m["best"] = True
        else:
            self.bad_epochs += 1
        if top1 <= m["chance"] + 0.01 and (self.cfg.num_classes or 0) > 1:
            self.chance_epochs += 1
            if self.chance_epochs == CHANCE_EPOCHS:
                log.warning("validation top-1 %.3f has stayed at chance (%.3f, the largest "
                            "class) for %d epochs: learning rate too high? try --lr %g",
                            top1, m["chance"], CHANCE_EPOCHS, self.cfg.lr / 10)
        else:
            self.chance_epochs = 0
        if self.cfg.early_stop and self.bad_epochs >= self.cfg.early_stop:
            log.info("early stop: no better val top-1 for %d epochs (best %.4f at epoch %d)",
                     self.bad_epochs, self.best_top1, self.best_epoch)
            return "early_stop"
        return None

    def _checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "step": self.step,
                "best_top1": self.best_top1, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "chance_epochs": self.chance_epochs,
                "history": self.history, "config": self.cfg.to_dict(),
                "best_step": self.best_step, "step_evals": self.step_evals,
                "evals": self.evals, "warned": self.warned,
                "classes": self.cfg.classes}

    def _write(self, m: dict[str, Any]) -> None:
        from dataprep.train.plots import plot_curves

        state = self._checkpoint_state()
        save_checkpoint(self.out / "last.pt", state)  # first: metrics never run ahead of it
        if m.get("best"):
            save_checkpoint(self.out / "best.pt", state)
        if self.cfg.save_every and m["epoch"] % self.cfg.save_every == 0:
            save_checkpoint(self.out / f"epoch-{m['epoch']}.pt", state)
        lines = "".join(json.dumps(h) + "\n" for h in self.history)
        tmp = self.out / ".metrics.jsonl.tmp"
        tmp.write_text(lines)
        os.replace(tmp, self.out / "metrics.jsonl")
        plot_curves(self.history, self.out / "curves.png", self.cfg.freeze_epochs,
                    self.cfg.num_classes or 0)

    def run(self) -> TrainResult:
        cfg = self.cfg
        stopped = "completed"
        if self.history and self.history[-1].get("stopped") in ("early_stop", "diverged"):
            stopped = self.history[-1]["stopped"]
        while self.epoch < cfg.epochs and stopped == "completed":
            epoch = self.epoch
            torch.manual_seed(_epoch_seed(cfg.seed, epoch))  # dropout etc.: resumable
            self._set_stage(epoch)
            t0 = time.perf_counter()
            m: dict[str, Any] = {"epoch": epoch + 1, "stage": self.stage}
            m.update(self._train_epoch(epoch))
            m.update(self._evaluate())
            m["seconds"] = time.perf_counter() - t0
            self.epoch = epoch + 1
            reason = self._judge(m)
            if reason:
                m["stopped"] = stopped = reason
            self.history.append(m)
            if "val_top1" in m:
                self._diagnose_epoch()
            if self.dist.main:
                self._write(m)
                log.info(_epoch_line(m))
            if self.dist.active:
                dist.barrier()
        return TrainResult(str(self.out), self.epoch, self.best_top1, self.best_epoch,
                           self.history, stopped, self.best_step)

    def close(self) -> None:
        if self.dist.active and dist.is_initialized():
            dist.destroy_process_group()


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True, leave=False)


def _model_line(cfg: TrainConfig, built: BuiltModel) -> str:
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


def _epoch_line(m: dict[str, Any]) -> str:
    parts = [f"epoch {m['epoch']}", f"train loss {m['train_loss']:.4f}",
             f"top-1 {m['train_top1']:.3f}"]
    if "val_top1" in m:
        parts += [f"val loss {m['val_loss']:.4f}", f"top-1 {m['val_top1']:.3f}",
                  f"top-5 {m['val_top5']:.3f}"]
    parts += [f"lr {m['lr']:.3g}", f"{m['images_per_s']:.0f} img/s", f"{m['seconds']:.1f}s"]
    return " | ".join(parts)


def train(cfg: TrainConfig) -> TrainResult:
    """Train as ``cfg`` says; see the module docstring. Raises :class:`UsageError` for bad
    configurations or data, before any epoch starts where it can."""
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        trainer.close()
