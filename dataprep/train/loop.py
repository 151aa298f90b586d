"""The training loop: ``train(config) -> TrainResult``.

Per epoch: pick the stage (head only while ``epoch < freeze_epochs``, then every layer the
fine-tuning plan of :mod:`dataprep.train.finetune` trains), stream exactly ``batches`` batches
per rank, step the optimizer every ``accum_steps`` micro-batches with the learning rate of
:func:`~dataprep.train.optim.lr_factor` times each group's multiplier, evaluate on the
validation shards (also every ``eval_every_steps`` optimizer steps), reduce the sums over ranks,
then (rank 0) write ``metrics.jsonl``, ``curves.png``, ``last.pt``, ``epoch-N.pt`` every
``save_every`` epochs and, on a better validation top-1, ``best.pt``. The warnings of
:mod:`dataprep.train.diagnose` are checked after every evaluation. Randomness is reseeded from
``(seed, epoch)`` at each epoch, so a run resumed from ``last.pt`` continues exactly as the
uninterrupted run would have.

Around the loop: :mod:`dataprep.train.run_setup` builds the run (folder, streams),
:mod:`dataprep.train.runtime` places it (process group, device, autocast),
:mod:`dataprep.train.optim` makes the optimizer and its schedule, and
:mod:`dataprep.train.tracker` keeps best / patience / warnings and the history.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dataprep.errors import UsageError
from dataprep.ops.rng import stable_rank
from dataprep.train.checkpoint import load_checkpoint, save_checkpoint
from dataprep.train.config import TrainConfig
from dataprep.train.data import make_loader
from dataprep.train.finetune import apply_stage, frozen_norms
from dataprep.train.metrics import topk_correct, train_sums, val_metrics
from dataprep.train.models import build_model, model_loss
from dataprep.train.optim import build_optimizer, fine_tune_plan, lr_factor, set_lr
from dataprep.train.pixels import normalize
from dataprep.train.run_setup import model_line, prepare_run_dir, setup_data
from dataprep.train.runtime import (
    gather_ints,
    reduce_sum,
    resolve_amp,
    resolve_device,
    setup_distributed,
)
from dataprep.train.tracker import RunTracker, epoch_line, write_jsonl

log = logging.getLogger("dataprep.train")


@dataclass
class TrainResult:
    out: str
    epochs_run: int
    best_top1: float | None
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = "completed"  # completed | early_stop | diverged
    best_step: int | None = None  # optimizer step of best.pt (with --eval-every-steps)


def _epoch_seed(seed: int, epoch: int) -> int:
    return stable_rank(seed, f"epoch-{epoch}") % (2**63)


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
        self.out = prepare_run_dir(cfg, self.dist)
        try:
            self.data = setup_data(cfg, self.dist, self.device, self.amp, self.out)
            self._setup_model()
        except BaseException:  # a run that never started leaves no empty run folder behind
            if fresh and self.dist.main and not any(self.out.iterdir()):
                self.out.rmdir()
            raise
        self.track = RunTracker(cfg)
        self.epoch = 0
        self.step = 0
        self.base_lr = cfg.lr  # --lr times the schedule's factor at the last step
        if cfg.resume:
            self._resume()
        if self.dist.main:
            (self.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    # setup ----------------------------------------------------------------------------------

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
            log.info(model_line(cfg, self.built))
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
        self.track.restore(state)
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
        self.data.train_stream.set_epoch(epoch)
        loader = make_loader(self.data.train_stream, cfg.workers, self.device.type == "cuda")
        # on the device, read back only for the progress bar: no per-step host sync on GPUs
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss sum, correct,
        #                                                             samples, non-finite
        bar = _progress(self.data.batches, f"epoch {epoch + 1}/{cfg.epochs}",
                        cfg.progress and self.dist.main)
        start, batches = time.perf_counter(), 0
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(loader):
            x, y = self._inputs(x, y)
            loss, logits = self._micro_step(i, x, y, epoch)
            batches += 1
            with torch.no_grad():
                totals += train_sums(loss, logits, y)
            if bar is not None:
                bar.update(1)
                if i % 10 == 0 or i + 1 == self.data.batches:
                    loss_sum, _, seen, _ = totals.tolist()
                    bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}",
                                    img_s=f"{seen / (time.perf_counter() - start):.0f}")
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - start
        per_rank = gather_ints(batches, self.dist, self.device)
        reduce_sum(totals, self.dist, self.device)
        loss_sum, correct, samples, nonfinite = totals.tolist()
        n = max(samples, 1)
        return {"train_loss": loss_sum / n, "train_top1": correct / n,
                "train_samples": int(samples), "nonfinite_batches": int(nonfinite),
                "images_per_s": samples / seconds, "train_seconds": seconds,
                "batches_per_rank": per_rank,
                "lr": self.base_lr}  # --lr as scheduled; each group has x its multiplier

    def _micro_step(self, i: int, x: torch.Tensor, y: torch.Tensor, epoch: int,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of batch ``i``, its loss scaled by the size of its
        accumulation group; the optimizer steps after the group's last batch (DDP syncs the
        gradients only then). Returns (loss, logits)."""
        cfg = self.cfg
        group_start = i // cfg.accum_steps * cfg.accum_steps
        group_len = min(cfg.accum_steps, self.data.batches - group_start)
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
            self._optimizer_step(epoch)
        return loss, logits

    def _optimizer_step(self, epoch: int) -> None:
        """One optimizer step at the scheduled learning rate; then validate when
        ``--eval-every-steps`` says so."""
        cfg = self.cfg
        self.base_lr = cfg.lr * lr_factor(cfg, self.step, self.data.optimizer_steps)
        set_lr(self.optimizer, self.base_lr, 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if cfg.eval_every_steps and self.step % cfg.eval_every_steps == 0:
            self._step_eval(epoch)

    @torch.no_grad()
    def _evaluate(self) -> dict[str, Any]:
        if self.data.val_stream is None:
            return {}
        self.model.eval()  # the bare module: no DDP collectives, ranks may differ in batches
        num_classes = self.cfg.num_classes or 0
        # loss sum, top-1, top-5, samples, then samples per class (for the chance level), then
        # top-1 hits per class (for the class-mean top-1)
        totals = torch.zeros(4 + 2 * num_classes, dtype=torch.float64, device=self.device)
        start = time.perf_counter()
        for x, y in make_loader(self.data.val_stream, self.cfg.workers,
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
        reduce_sum(totals, self.dist, self.device)
        return val_metrics(totals.tolist(), num_classes, time.perf_counter() - start)

    def _step_eval(self, epoch: int) -> None:
        """Validate mid-epoch (``--eval-every-steps``): record it, keep ``best.pt`` on a better
        top-1, check the diagnostics; then back to training mode."""
        m = self._evaluate()
        if not m:
            return
        m = {"epoch": epoch + 1, "step": self.step, **m}
        self.track.step_eval(m, self.step)
        if self.dist.main:
            if m.get("best"):
                save_checkpoint(self.out / "best.pt", self._checkpoint_state())
            write_jsonl(self.out / "evals.jsonl", self.track.step_evals)
            log.info("step %d: val loss %.4f | top-1 %.3f%s", self.step, m["val_loss"],
                     m["val_top1"], " (best)" if m.get("best") else "")
        self._train_mode()

    # bookkeeping ----------------------------------------------------------------------------

    def _checkpoint_state(self) -> dict[str, Any]:
        t = self.track
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "step": self.step,
                "best_top1": t.best_top1, "best_epoch": t.best_epoch,
                "bad_epochs": t.bad_epochs, "chance_epochs": t.chance_epochs,
                "history": t.history, "config": self.cfg.to_dict(),
                "best_step": t.best_step, "step_evals": t.step_evals,
                "evals": t.evals, "warned": t.warned,
                "classes": self.cfg.classes}

    def _write(self, m: dict[str, Any]) -> None:
        from dataprep.train.plots import plot_curves

        state = self._checkpoint_state()
        save_checkpoint(self.out / "last.pt", state)  # first: metrics never run ahead of it
        if m.get("best"):
            save_checkpoint(self.out / "best.pt", state)
        if self.cfg.save_every and m["epoch"] % self.cfg.save_every == 0:
            save_checkpoint(self.out / f"epoch-{m['epoch']}.pt", state)
        write_jsonl(self.out / "metrics.jsonl", self.track.history)
        plot_curves(self.track.history, self.out / "curves.png", self.cfg.freeze_epochs,
                    self.cfg.num_classes or 0)

    def run(self) -> TrainResult:
        cfg = self.cfg
        stopped = self.track.stopped()
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
            reason = self.track.judge(m, self.step)
            if reason:
                m["stopped"] = stopped = reason
            self.track.end_epoch(m)
            if self.dist.main:
                self._write(m)
                log.info(epoch_line(m))
            if self.dist.active:
                dist.barrier()
        t = self.track
        return TrainResult(str(self.out), self.epoch, t.best_top1, t.best_epoch, t.history,
                           stopped, t.best_step)

    def close(self) -> None:
        if self.dist.active and dist.is_initialized():
            dist.destroy_process_group()


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True, leave=False)


def train(cfg: TrainConfig) -> TrainResult:
    """Train as ``cfg`` says; see the module docstring. Raises :class:`UsageError` for bad
    configurations or data, before any epoch starts where it can."""
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        trainer.close()
