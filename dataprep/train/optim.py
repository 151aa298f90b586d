"""The optimizer of a run and its learning-rate schedule.

:func:`build_optimizer` makes one parameter group per trained group of the fine-tuning plan
(:func:`fine_tune_plan`, see :mod:`dataprep.train.finetune`), each carrying its ``lr_mult``;
every optimizer step, :func:`set_lr` sets each group to ``--lr`` times :func:`lr_factor` (the
warmup and schedule) times that multiplier.
"""

from __future__ import annotations

import math

import torch

from dataprep.errors import UsageError
from dataprep.train.config import TrainConfig
from dataprep.train.finetune import Plan, param_groups, parse_lr_group, plan
from dataprep.train.models import BuiltModel


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


OPTIMIZER_FACTORIES = {  # --optimizer -> (groups, config) -> optimizer
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
    return OPTIMIZER_FACTORIES[cfg.optimizer](param_list, cfg)


def set_lr(optimizer: torch.optim.Optimizer, base: float, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base * factor * group["lr_mult"]
