"""What a run learns about itself as it goes: the history of epochs and validations, the best
top-1 so far (which decides ``best.pt``), patience for early stopping, the chance-level count,
and the warnings of :mod:`dataprep.train.diagnose`, each given once per run.

:class:`RunTracker` is plain state saved in every checkpoint and restored on ``--resume``, so a
resumed run judges its epochs exactly as the uninterrupted run would have. :func:`epoch_line`
and :func:`write_jsonl` are how that history reaches the log and ``metrics.jsonl`` /
``evals.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.train import diagnose
from dataprep.train.config import TrainConfig

log = logging.getLogger("dataprep.train")

CHANCE_EPOCHS = 2  # validation at chance this many epochs in a row -> warn


@dataclass
class RunTracker:
    """Best / patience / warnings of one run; :meth:`judge` updates them after an epoch."""

    cfg: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    best_top1: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None  # optimizer step of best.pt (with --eval-every-steps)
    bad_epochs: int = 0
    chance_epochs: int = 0
    step_evals: list[dict[str, Any]] = field(default_factory=list)  # --eval-every-steps
    evals: list[dict[str, Any]] = field(default_factory=list)  # every validation, in order
    warned: list[str] = field(default_factory=list)  # diagnostics given once per run

    def restore(self, state: dict[str, Any]) -> None:
        """Take the tracked state of a checkpoint (``--resume``)."""
        self.best_top1, self.best_epoch = state["best_top1"], state["best_epoch"]
        self.bad_epochs, self.chance_epochs = state["bad_epochs"], state["chance_epochs"]
        self.history = list(state["history"])
        self.best_step = state.get("best_step")
        self.step_evals = list(state.get("step_evals", []))
        self.evals = list(state.get("evals", []))
        self.warned = list(state.get("warned", []))

    def stopped(self) -> str:
        """How a resumed run had ended: ``completed`` unless it stopped early or diverged."""
        if self.history and self.history[-1].get("stopped") in ("early_stop", "diverged"):
            return str(self.history[-1]["stopped"])
        return "completed"

    def better(self, top1: float) -> bool:
        return self.best_top1 is None or top1 > self.best_top1

    def step_eval(self, m: dict[str, Any], step: int) -> None:
        """Record a mid-epoch validation (``m`` has ``epoch`` and ``step``): marks it ``best``
        on a better top-1, checks the diagnostics."""
        if self.better(m["val_top1"]):
            self.best_top1, self.best_epoch, self.best_step = m["val_top1"], m["epoch"], step
            m["best"] = True
        self.step_evals.append(m)
        self._diagnose_eval(m)

    def judge(self, m: dict[str, Any], step: int) -> str | None:
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
        if self.better(top1):
            self.best_top1, self.best_epoch, self.bad_epochs = top1, m["epoch"], 0
            self.best_step = step
            m["best"] = True
        else:
            self.bad_epochs += 1
        self._count_chance(top1, m["chance"])
        if self.cfg.early_stop and self.bad_epochs >= self.cfg.early_stop:
            log.info("early stop: no better val top-1 for %d epochs (best %.4f at epoch %d)",
                     self.bad_epochs, self.best_top1, self.best_epoch)
            return "early_stop"
        return None

    def end_epoch(self, m: dict[str, Any]) -> None:
        """Append the judged epoch to the history; check the epoch diagnostics."""
        self.history.append(m)
        if "val_top1" in m and diagnose.overfitting(self.history):
            self._warn_once("overfitting", diagnose.overfitting_message(
                self.history, self.cfg.weight_decay, self.best_epoch))

    def _count_chance(self, top1: float, chance: float) -> None:
        """Validation at chance (the largest class's share) for :data:`CHANCE_EPOCHS` epochs
        in a row: say the learning rate is likely too high."""
        if top1 <= chance + 0.01 and (self.cfg.num_classes or 0) > 1:
            self.chance_epochs += 1
            if self.chance_epochs == CHANCE_EPOCHS:
                log.warning("validation top-1 %.3f has stayed at chance (%.3f, the largest "
                            "class) for %d epochs: learning rate too high? try --lr %g",
                            top1, chance, CHANCE_EPOCHS, self.cfg.lr / 10)
        else:
            self.chance_epochs = 0

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


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as JSON lines, replacing ``path`` whole (a reader never sees half a file)."""
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(lines)
    os.replace(tmp, path)


def epoch_line(m: dict[str, Any]) -> str:
    parts = [f"epoch {m['epoch']}", f"train loss {m['train_loss']:.4f}",
             f"top-1 {m['train_top1']:.3f}"]
    if "val_top1" in m:
        parts += [f"val loss {m['val_loss']:.4f}", f"top-1 {m['val_top1']:.3f}",
                  f"top-5 {m['val_top5']:.3f}"]
    parts += [f"lr {m['lr']:.3g}", f"{m['images_per_s']:.0f} img/s", f"{m['seconds']:.1f}s"]
    return " | ".join(parts)
