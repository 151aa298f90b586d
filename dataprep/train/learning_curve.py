"""``learning_curve(src, out, per_class=[...])``: held-out top-1 against images per class.

The curve a practitioner draws by hand, done so its points can be trusted:

* **One fixed test split.** ``--test`` (images, a manifest, or shards already resized), or
  the held-out part of one seeded ``split(src, ratio=...)`` (seed ``--seed``). Every size and
  every repeat is scored on exactly these images; nothing is ever selected on them.
* **Per size N and repeat r** (seed ``seed + r``): ``split(train_part, ratio=1 - inner_val,
  per_class_limit=N, seed=seed + r)`` draws N images per class (the same seeded ranking for
  every N of one repeat, so its subsets are nested; another repeat draws another subset) and
  cuts its own stratified **inner validation split** from them (every class with 2 or more
  images has one in each part). Both parts are resized into ``n{N}/seed{S}/shards`` (splits
  ``train`` and ``val``) with :func:`dataprep.jobs.tencrop.resize` and trained with
  :func:`dataprep.train.loop.train`: validation each epoch, ``best.pt`` by inner val top-1,
  early stopping after ``patience`` epochs without a better one. ``best.pt`` is then scored
  on the test split with :func:`dataprep.train.evaluate.evaluate_model` in the asked modes.
  N counts the images drawn per class: ``(1 - inner_val) x N`` train, the rest validate.
  ``inner_val=0`` trains on all N without validation and scores ``last.pt`` (the old curve).
* **Spread.** ``repeats`` seeds per size give the mean, the standard deviation (``ddof=1``;
  0 for one repeat), the min and the max of every score.
* **Trend.** A least-squares line ``top-1 = a + b * log2(N)`` through the mean top-1 of the
  first mode (:func:`~dataprep.train.curve_output.fit_log_linear`): ``100 b`` is the points
  of top-1 gained per doubling of images per class.

This module runs the curve; :mod:`~dataprep.train.curve_split` makes the fixed test split and
:mod:`~dataprep.train.curve_output` summarizes the runs and writes the files.

Layout of ``out``::

    split/                 train.jsonl, val.jsonl (the held-out test part; without --test)
    test/                  test shards (unless --test names shards)
    n{N}/seed{S}/subset/   the manifests of the draw, n{N}/seed{S}/shards/ (train + val),
                           n{N}/seed{S}/run/, n{N}/seed{S}/metrics.json (the test scores)
    learning_curve.csv     one row per size: means, std, min, max
    learning_curve_runs.csv   one row per (size, repeat)
    learning_curve.json, learning_curve.png
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError
from dataprep.train.curve_output import CurveResult, summary_rows, trend, write_curve
from dataprep.train.curve_split import HeldOut, Log, held_out_split

# TrainConfig fields a learning curve passes through (the rest keep the trainer's defaults)
TRAIN_FIELDS = ("model", "weights", "img_size", "epochs", "batch_size", "optimizer", "lr",
                "head_lr_mult", "momentum", "weight_decay", "schedule", "warmup_epochs",
                "freeze_epochs", "label_smoothing", "hflip", "mean", "std", "device",
                "workers", "amp", "channels_last")


def parse_sizes(text: str | Sequence[int]) -> list[int]:
    """``"10,20,50"`` -> [10, 20, 50] (sorted, no repeats); every size at least 1."""
    try:
        sizes = [int(v) for v in (text.split(",") if isinstance(text, str) else text)
                 if str(v).strip()]
    except ValueError:
        raise UsageError(f"--per-class {text!r}: expected comma-separated integers, e.g. "
                         "10,20,50,100") from None
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--per-class {text!r}: expected sizes of at least 1 image per class")
    return sorted(set(sizes))


class _DropNoValidation(logging.Filter):
    """Without an inner validation split the trainer's "no validation shards" warning is
    expected: the curve says so once itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("no validation shards")


@contextlib.contextmanager
def _quiet_no_validation(active: bool) -> Iterator[None]:
    logger = logging.getLogger("dataprep.train")
    flt = _DropNoValidation()
    if active:
        logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def learning_curve(src: str, out: str | Path, *, per_class: Sequence[int] | str,
                   test: str | None = None, val: str | None = None, ratio: float = 0.8,
                   seed: int = 0, repeats: int = 1, inner_val: float = 0.2,
                   patience: int | None = None, short_side: int | None = None,
                   modes: Sequence[str] | str = ("center",), min_steps: int = 0,
                   jobs: int | None = None, overwrite: bool = False, log: Log | None = None,
                   **train_options: Any) -> CurveResult:
    """Train and score ``repeats`` runs per size of ``per_class`` (see the module docstring);
    write ``learning_curve.csv``, ``learning_curve_runs.csv``, ``learning_curve.json`` and
    ``learning_curve.png`` into ``out``.

    ``test`` (``val`` is its older name): a fixed held-out set instead of splitting ``src``.
    ``train_options``: :class:`dataprep.train.config.TrainConfig` fields of
    :data:`TRAIN_FIELDS` (``model``, ``epochs`` (the most epochs a run may take), ``lr``...).
    ``short_side`` (default: the trainer's, ``img_size / 0.875``) is both the stored size of
    the shards and the trainer's. ``min_steps``: at least this many optimizer steps per run
    (small sizes otherwise get one or two), by raising ``steps_per_epoch``. The batch size is
    lowered to the number of training images when it is larger.
    """
    from dataprep.train.config import TrainConfig
    from dataprep.train.tta import parse_modes

    log = log or (lambda line: None)
    sizes = parse_sizes(per_class)
    modes = parse_modes(modes)
    test = _check_options(sizes, test, val, repeats, inner_val, patience, train_options)
    base = TrainConfig(data="", out="", short_side=short_side, seed=seed, progress=False,
                       early_stop=patience, **train_options)
    base.validate()
    short = base.crop_short_side
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    held = held_out_split(src, out, test, ratio=ratio, seed=seed, short_side=short, jobs=jobs,
                          overwrite=overwrite, log=log)
    plan = _Plan(out, base, short, held, modes, inner_val, min_steps, jobs, overwrite, log)
    result = CurveResult(str(out), modes)
    result.settings = {"src": str(src), "test": test, "ratio": ratio, "seed": seed,
                       "repeats": repeats, "inner_val": inner_val, "patience": patience,
                       "max_epochs": base.epochs, "model": base.model,
                       "img_size": base.img_size, "short_side": short,
                       "per_class": sizes}
    if inner_val == 0:
        log("--inner-val 0: no validation inside the runs; last.pt of each is scored")
    _run_sizes(plan, result, sizes, seed, repeats)
    result.class_chance = 1 / len(held.classes)
    result.rows = summary_rows(result.runs, modes)
    if len(sizes) > 1:
        result.fit = trend(result.rows, modes[0], "top1")
        result.fit_class_mean = trend(result.rows, modes[0], "class_mean_top1")
    stop = f", patience {patience}" if patience else ""
    write_curve(result, out, title=f"{base.model}, {base.img_size} px, up to {base.epochs} "
                                   f"epoch(s){stop}, {repeats} seed(s) per size")
    return result


def _check_options(sizes: list[int], test: str | None, val: str | None, repeats: int,
                   inner_val: float, patience: int | None,
                   train_options: dict[str, Any]) -> str | None:
    """Refuse options that cannot make a curve, in the flags' own words; the test set
    (``--test``, or its older name ``--val``)."""
    if test is not None and val is not None and test != val:
        raise UsageError("--test and --val name the same held-out set; pass one")
    unknown = sorted(set(train_options) - set(TRAIN_FIELDS))
    if unknown:
        raise UsageError(f"learning_curve: unknown training option(s) {unknown}; expected "
                         f"some of {', '.join(TRAIN_FIELDS)}")
    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {repeats}")
    if not 0 <= inner_val < 1:
        raise UsageError(f"--inner-val {inner_val}: expected a share in [0, 1) of each size's "
                         "images per class (0: no validation, last.pt is scored)")
    if inner_val > 0 and sizes[0] < 2:
        raise UsageError(f"--per-class {sizes[0]} leaves no image for the inner validation "
                         "split; use sizes of at least 2 images per class, or --inner-val 0")
    if patience is not None and (patience < 1 or inner_val == 0):
        raise UsageError("--patience needs an inner validation split (--inner-val > 0) and "
                         f"at least 1 epoch, got {patience}")
    return test if test is not None else val


@dataclass
class _Plan:
    """What every (size, seed) run of one curve shares."""

    out: Path
    base: Any  # the TrainConfig every run starts from
    short: int  # short side of the stored images (and the trainer's)
    held: HeldOut
    modes: tuple[str, ...]
    inner_val: float
    min_steps: int
    jobs: int | None
    overwrite: bool
    log: Log


@dataclass
class _Draw:
    """One (size, seed): its folder and the images drawn for it."""

    n: int
    seed: int
    folder: Path
    train: list[Any]  # records
    val: list[Any]  # records of its inner validation split (none with inner_val 0)

    @property
    def per_class(self) -> Counter:
        return Counter(r.label for r in self.train) + Counter(r.label for r in self.val)

    @property
    def name(self) -> str:
        return f"n={self.n} seed {self.seed}"


def _run_sizes(plan: _Plan, result: CurveResult, sizes: list[int], seed: int,
               repeats: int) -> None:
    """Every (size, repeat) run into ``result.runs``, checking that each was scored on the
    same test images as the first: the fixed test split is the point, it must never drift."""
    test_keys: list[str] | None = None
    for n in sizes:
        for r in range(repeats):
            run = _one_run(plan, n, seed + r)
            keys = run.pop("_test_keys")
            if test_keys is None:
                test_keys = keys
            elif keys != test_keys:
                raise UsageError(f"n={n} seed {seed + r} was scored on other test images "
                                 "than the first run; remove the test/ folder and rerun")
            labels = run.pop("_test_labels")
            result.chance = max(labels.values()) / sum(labels.values())
            run["repeat"] = r
            result.runs.append(run)
    result.settings["test_images"] = len(test_keys or [])


def _one_run(plan: _Plan, n: int, run_seed: int) -> dict[str, Any]:
    """Draw, resize, train and score one (size, seed); returns its row."""
    from dataprep.train.eval_report import metrics_dict
    from dataprep.train.evaluate import evaluate_model, load_model

    draw = _draw(plan, n, run_seed)
    cfg = _run_config(plan, draw)
    history = _train(plan, draw, cfg)
    best = [h for h in history if h.get("best")]
    checkpoint = draw.folder / "run" / ("best.pt" if best and draw.val else "last.pt")
    evaluated = evaluate_model(load_model(checkpoint), plan.held.shards, modes=plan.modes,
                               split=plan.held.split, batch_size=max(cfg.batch_size, 32),
                               device=plan.base.device)
    (draw.folder / "metrics.json").write_text(json.dumps(metrics_dict(evaluated), indent=2)
                                              + "\n")
    row = _row(plan, draw, cfg, history, checkpoint.name, evaluated)
    plan.log(f"{draw.name}: " + ", ".join(f"test top-1 {m} {row[f'top1_{m}']:.4f}"
                                          for m in plan.modes)
             + (f" (best.pt of epoch {row['best_epoch']}, inner val top-1 "
                f"{row['val_top1']:.4f})" if row["checkpoint"] == "best.pt" else " (last.pt)"))
    row["_test_keys"] = sorted(evaluated.keys)
    row["_test_labels"] = Counter(int(v) for v in evaluated.labels)
    return row


def _draw(plan: _Plan, n: int, run_seed: int) -> _Draw:
    """Draw ``n`` images per class with this seed, cut the inner validation split from them
    and resize both parts into ``n{N}/seed{S}/shards``."""
    from dataprep.jobs.split import split
    from dataprep.jobs.tencrop import resize

    folder = plan.out / f"n{n}" / f"seed{run_seed}"
    subset = split(plan.held.pool, folder / "subset",
                   ratio=1 - plan.inner_val if plan.inner_val else 0.5,
                   seed=run_seed, per_class_limit=n, overwrite=True)
    if plan.inner_val:
        draw = _Draw(n, run_seed, folder, subset.splits["train"], subset.splits["val"])
    else:  # all N train; nothing validates
        train = sorted((replace(r, split="train") for part in subset.splits.values()
                        for r in part), key=lambda r: (r.label, r.key))
        draw = _Draw(n, run_seed, folder, train, [])
    for name, records in (("train", draw.train), ("val", draw.val)):
        if name == "train" or records:
            resize(plan.held.pool, folder / "shards", records=records,
                   classes=plan.held.classes, short_side=plan.short, split=name,
                   jobs=plan.jobs, overwrite=plan.overwrite)
    return draw


def _run_config(plan: _Plan, draw: _Draw) -> Any:
    """The draw's TrainConfig: the batch no larger than its images, at least ``min_steps``
    optimizer steps in all."""
    base = plan.base
    batch = min(base.batch_size, len(draw.train))
    steps = max(len(draw.train) // batch, math.ceil(plan.min_steps / base.epochs))
    return replace(base, data=str(draw.folder / "shards"), out=str(draw.folder / "run"),
                   batch_size=batch, steps_per_epoch=steps, overwrite=True,
                   num_classes=len(plan.held.classes), classes=list(plan.held.classes),
                   resolved={})


def _train(plan: _Plan, draw: _Draw, cfg: Any) -> list[dict[str, Any]]:
    """Train the draw, unless its run folder already holds this training, finished."""
    from dataprep.train.loop import train

    history = None if plan.overwrite else finished_history(cfg)
    if history is not None:
        plan.log(f"{draw.name}: {draw.folder / 'run'} already holds this training; scoring it")
        return history
    per = draw.per_class
    plan.log(f"{draw.name}: training on {len(draw.train)} images, validating on "
             f"{len(draw.val)} ({min(per.values())}..{max(per.values())} per class drawn), "
             f"up to {plan.base.epochs} epoch(s) of {cfg.steps_per_epoch} step(s)")
    with _quiet_no_validation(not draw.val):
        return train(cfg).history


def _row(plan: _Plan, draw: _Draw, cfg: Any, history: list[dict[str, Any]],
         checkpoint: str, evaluated: Any) -> dict[str, Any]:
    """The run's row of ``learning_curve_runs.csv``: its draw, its training, its scores."""
    best = [h for h in history if h.get("best")]
    per = draw.per_class
    row: dict[str, Any] = {
        "per_class": draw.n, "seed": draw.seed, "train_images": len(draw.train),
        "val_images": len(draw.val), "min_class_images": min(per.values()),
        "max_class_images": max(per.values()), "max_epochs": plan.base.epochs,
        "epochs_run": len(history), "best_epoch": best[-1]["epoch"] if best else None,
        "stopped": history[-1].get("stopped", "completed") if history else None,
        "val_top1": best[-1].get("val_top1") if best else None,
        "checkpoint": checkpoint, "steps_per_epoch": cfg.steps_per_epoch,
        "batch_size": cfg.batch_size,
        "train_seconds": sum(h.get("train_seconds", 0.0) for h in history),
        "train_loss": history[-1].get("train_loss") if history else None,
        "test_images": evaluated.num_samples,
    }
    for m, res in evaluated.modes.items():
        row[f"top1_{m}"] = res.top1(evaluated.labels)
        row[f"top5_{m}"] = res.top5()
        row[f"class_mean_top1_{m}"] = res.class_mean_top1(evaluated.labels)
    return row


# config fields that do not change what a finished run learned
_IRRELEVANT = ("resolved", "overwrite", "resume", "progress", "workers", "device", "cache_dir",
               "cache_size")


def finished_history(cfg: Any) -> list[dict[str, Any]] | None:
    """The history of ``cfg.out/last.pt`` when it holds this exact training, finished (all
    epochs, or stopped early); else None (so rerunning a curve, e.g. with more --tta modes,
    does not train again)."""
    from dataprep.train.checkpoint import load_checkpoint

    path = Path(cfg.out) / "last.pt"
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
    except UsageError:
        return None
    saved = dict(state.get("config") or {})
    wanted = cfg.to_dict()
    for key in _IRRELEVANT:
        saved.pop(key, None)
        wanted.pop(key, None)
    history = list(state.get("history") or [])
    stopped = bool(history) and history[-1].get("stopped") in ("early_stop", "diverged")
    if json.loads(json.dumps(saved)) != json.loads(json.dumps(wanted)) \
            or (state.get("epoch") != cfg.epochs and not stopped):
        return None
    return history
