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
  first mode (:func:`fit_log_linear`): ``100 b`` is the points of top-1 gained per doubling of
  images per class.

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
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError

Log = Callable[[str], None]

# TrainConfig fields a learning curve passes through (the rest keep the trainer's defaults)
TRAIN_FIELDS = ("model", "weights", "img_size", "epochs", "batch_size", "optimizer", "lr",
                "head_lr_mult", "momentum", "weight_decay", "schedule", "warmup_epochs",
                "freeze_epochs", "label_smoothing", "hflip", "mean", "std", "device",
                "workers", "amp", "channels_last")
SCORES = ("top1", "top5", "class_mean_top1")  # per test-time mode, summarized per size


@dataclass
class CurveResult:
    out: str
    modes: tuple[str, ...]
    runs: list[dict[str, Any]] = field(default_factory=list)  # one per (size, repeat)
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per size: summaries
    chance: float = 0.0  # share of the largest class in the test split
    class_chance: float = 0.0  # class-mean top-1 of any constant prediction: 1 / classes
    fit: dict[str, Any] | None = None  # fit_log_linear of the first mode's mean top-1
    fit_class_mean: dict[str, Any] | None = None  # the same of its class-mean top-1
    settings: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        m = self.modes[0]
        head = (f"{'per class':>9} {'train':>6} {'val':>5} {'runs':>4} {'epochs':>7} "
                f"{'seconds':>8} {'top-1 ' + m + ' (mean ± std, min..max)':>38} "
                f"{'class-mean':>16}")
        out = [head]
        for r in self.rows:
            spread = (f"{r[f'top1_{m}']:.4f} ± {r[f'top1_{m}_std']:.4f}, "
                      f"{r[f'top1_{m}_min']:.4f}..{r[f'top1_{m}_max']:.4f}")
            cm = f"{r[f'class_mean_top1_{m}']:.4f} ± {r[f'class_mean_top1_{m}_std']:.4f}"
            out.append(f"{r['per_class']:>9} {r['train_images']:>6} {r['val_images']:>5} "
                       f"{r['repeats']:>4} {r['epochs_run']:>7} {r['train_seconds']:>8.1f} "
                       f"{spread:>38} {cm:>16}")
        for other in self.modes[1:]:
            out.append(f"top-1 {other}: " + ", ".join(
                f"{r['per_class']}: {r[f'top1_{other}']:.4f} ± {r[f'top1_{other}_std']:.4f}"
                for r in self.rows))
        for fit in (self.fit, self.fit_class_mean):
            if fit is not None:
                out.append(slope_line(fit))
        out.append(f"test split: {self.settings.get('test_images')} images, the same for "
                   f"every size and repeat; chance: top-1 {self.chance:.4f} (largest test "
                   f"class), class-mean {self.class_chance:.4f}")
        out.append(f"wrote {self.out}/learning_curve.csv, learning_curve_runs.csv, "
                   "learning_curve.json, learning_curve.png")
        return out


def slope_line(fit: dict[str, Any]) -> str:
    score = "class-mean top-1" if fit.get("score") == "class_mean_top1" else "top-1"
    return (f"{fit['points_per_doubling']:+.1f} points of {score} per doubling of images per "
            f"class (least-squares fit of the mean {score} ({fit['mode']}) = "
            f"{fit['intercept']:.3f} + {fit['slope']:.4f} x log2(N), N = "
            f"{min(fit['per_class'])}..{max(fit['per_class'])})")


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


def fit_log_linear(per_class: Sequence[float], top1: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line ``top1 = intercept + slope * log2(n)``:
    ``slope`` is the top-1 gained per doubling of ``n`` (x 100: points). Needs two distinct
    sizes."""
    import numpy as np

    x = np.log2(np.asarray(per_class, dtype=np.float64))
    y = np.asarray(top1, dtype=np.float64)
    if len(x) != len(y) or len(np.unique(x)) < 2:
        raise UsageError("a log-linear trend needs scores at two or more distinct sizes")
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    return slope, float(ym - slope * xm)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """mean, std (ddof=1; 0 for one value), min, max."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def _is_shards(path: str) -> bool:
    from dataprep.io.scan import scan

    return scan(path).records is None


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pool_without_test(src: str, test: str, out: Path, classes: list[str], log: Log) -> str:
    """``src`` less the images that are also in ``test`` (the same resolved file, or the same
    bytes under another name), written as ``out/pool.jsonl``: the sizes draw from it, so no
    run trains on a test image. Raises :class:`UsageError` when a class is left empty."""
    from dataprep.io.durable import write_atomic
    from dataprep.io.scan import scan
    from dataprep.jobs.split import manifest_line

    test_records = list(scan(test, packed=False).records or [])
    test_paths = {os.path.realpath(r.path) for r in test_records}
    test_sizes = {os.path.getsize(r.path) for r in test_records}
    test_hashes: set[str] | None = None
    pool: list[Any] = []
    dropped = 0
    for r in scan(src, packed=False).records or []:
        real = os.path.realpath(r.path)
        same = real in test_paths
        if not same and os.path.getsize(real) in test_sizes:  # hash only when sizes match
            if test_hashes is None:
                test_hashes = {_sha256(t.path) for t in test_records}
            same = _sha256(real) in test_hashes
        if same:
            dropped += 1
        else:
            pool.append(replace(r, path=real))
    if dropped:
        log(f"{dropped} training images are also in the test split (same file or same "
            "bytes): left out")
    left = Counter(r.label for r in pool)
    empty = [c for i, c in enumerate(classes) if not left.get(i)]
    if empty:
        raise UsageError(f"no training image of class {empty[0]!r} is left once the images "
                         f"also in --test {test} are left out; give SRC images not in --test")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pool.jsonl"
    write_atomic(path, "".join(manifest_line(r) for r in pool).encode("utf-8"))
    return str(path)


def _test_shards(src: str, out: Path, test: str | None, ratio: float, seed: int,
                 short_side: int, jobs: int | None, overwrite: bool,
                 log: Log) -> tuple[str, str, str | None, list[str]]:
    """(training part, test shards, their split, classes): split once, resize once."""
    from dataprep.io.scan import scan
    from dataprep.jobs.split import split
    from dataprep.jobs.tencrop import resize

    if test is None:
        result = split(src, out / "split", ratio=ratio, seed=seed, overwrite=True)
        log(f"split {src}: {len(result.splits['train'])} images to draw from, "
            f"{len(result.splits['val'])} held out for testing (ratio {ratio}, seed {seed})")
        train_part, test_src, classes = str(out / "split" / "train.jsonl"), \
            str(out / "split" / "val.jsonl"), result.classes
    else:
        train_part, test_src = src, test
        classes = scan(src).classes
        test_classes = scan(test).classes
        if test_classes and test_classes != classes:
            raise UsageError(f"--test {test} has classes {test_classes[:10]} but {src} has "
                             f"{classes[:10]}; they must be the same list in the same order")
        if _is_shards(test):
            return train_part, test, None, classes
        train_part = _pool_without_test(src, test, out, classes, log)
    report = resize(test_src, out / "test", short_side=short_side, split="test", jobs=jobs,
                    overwrite=overwrite, classes=classes if test is not None else None)
    log(f"test shards: already complete in {out / 'test'}" if report.complete else
        f"test shards: {report.records_in} images -> {out / 'test'}")
    return train_part, str(out / "test"), "test", classes


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
    if test is not None and val is not None and test != val:
        raise UsageError("--test and --val name the same held-out set; pass one")
    test = test if test is not None else val
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
    base = TrainConfig(data="", out="", short_side=short_side, seed=seed, progress=False,
                       early_stop=patience, **train_options)
    base.validate()
    short = base.crop_short_side
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_part, test_shards, test_split, classes = _test_shards(
        src, out, test, ratio, seed, short, jobs, overwrite, log)
    result = CurveResult(str(out), modes)
    result.settings = {"src": str(src), "test": test, "ratio": ratio, "seed": seed,
                       "repeats": repeats, "inner_val": inner_val, "patience": patience,
                       "max_epochs": base.epochs, "model": base.model,
                       "img_size": base.img_size, "short_side": short,
                       "per_class": sizes}
    if inner_val == 0:
        log("--inner-val 0: no validation inside the runs; last.pt of each is scored")
    test_keys: list[str] | None = None
    for n in sizes:
        for r in range(repeats):
            run = _one_run(n, seed + r, train_part, classes, out, base, short, inner_val,
                           min_steps, jobs, overwrite, test_shards, test_split, modes, log)
            keys = run.pop("_test_keys")
            if test_keys is None:
                test_keys = keys
            elif keys != test_keys:  # the fixed test split is the point: never let it drift
                raise UsageError(f"n={n} seed {seed + r} was scored on other test images "
                                 "than the first run; remove the test/ folder and rerun")
            labels = run.pop("_test_labels")
            result.chance = max(labels.values()) / sum(labels.values())
            run["repeat"] = r
            result.runs.append(run)
    result.class_chance = 1 / len(classes)
    result.settings["test_images"] = len(test_keys or [])
    result.rows = summary_rows(result.runs, modes)
    if len(sizes) > 1:
        m = modes[0]
        fits = {}
        for score in ("top1", "class_mean_top1"):
            slope, intercept = fit_log_linear([r["per_class"] for r in result.rows],
                                              [r[f"{score}_{m}"] for r in result.rows])
            fits[score] = {"mode": m, "score": score, "slope": slope, "intercept": intercept,
                           "points_per_doubling": 100 * slope,
                           "per_class": [r["per_class"] for r in result.rows]}
        result.fit, result.fit_class_mean = fits["top1"], fits["class_mean_top1"]
    stop = f", patience {patience}" if patience else ""
    write_curve(result, out, title=f"{base.model}, {base.img_size} px, up to {base.epochs} "
                                   f"epoch(s){stop}, {repeats} seed(s) per size")
    return result


def _one_run(n: int, run_seed: int, train_part: str, classes: list[str], out: Path,
             base: Any, short: int, inner_val: float, min_steps: int, jobs: int | None,
             overwrite: bool, test_shards: str, test_split: str | None,
             modes: tuple[str, ...], log: Log) -> dict[str, Any]:
    """Draw, resize, train and score one (size, seed); returns its row."""
    from dataprep.jobs.split import split
    from dataprep.jobs.tencrop import resize
    from dataprep.train.eval_report import metrics_dict
    from dataprep.train.evaluate import evaluate_model, load_model
    from dataprep.train.loop import train

    folder = out / f"n{n}" / f"seed{run_seed}"
    subset = split(train_part, folder / "subset", ratio=1 - inner_val if inner_val else 0.5,
                   seed=run_seed, per_class_limit=n, overwrite=True)
    if inner_val:
        train_records = subset.splits["train"]
        val_records = subset.splits["val"]
    else:  # all N train; nothing validates
        train_records = sorted((replace(r, split="train") for part in subset.splits.values()
                                for r in part), key=lambda r: (r.label, r.key))
        val_records = []
    per = Counter(r.label for r in train_records) + Counter(r.label for r in val_records)
    shards = folder / "shards"
    resize(train_part, shards, records=train_records, classes=classes, short_side=short,
           split="train", jobs=jobs, overwrite=overwrite)
    if val_records:
        resize(train_part, shards, records=val_records, classes=classes, short_side=short,
               split="val", jobs=jobs, overwrite=overwrite)
    batch = min(base.batch_size, len(train_records))
    steps = max(len(train_records) // batch, math.ceil(min_steps / base.epochs))
    cfg = replace(base, data=str(shards), out=str(folder / "run"), batch_size=batch,
                  steps_per_epoch=steps, overwrite=True, num_classes=len(classes),
                  classes=list(classes), resolved={})
    history = None if overwrite else finished_history(cfg)
    if history is None:
        log(f"n={n} seed {run_seed}: training on {len(train_records)} images, validating on "
            f"{len(val_records)} ({min(per.values())}..{max(per.values())} per class drawn), "
            f"up to {base.epochs} epoch(s) of {steps} step(s)")
        with _quiet_no_validation(not val_records):
            history = train(cfg).history
    else:
        log(f"n={n} seed {run_seed}: {folder / 'run'} already holds this training; scoring it")
    best = [h for h in history if h.get("best")]
    checkpoint = folder / "run" / ("best.pt" if best and val_records else "last.pt")
    evaluated = evaluate_model(load_model(checkpoint), test_shards, modes=modes,
                               split=test_split, batch_size=max(batch, 32), device=base.device)
    (folder / "metrics.json").write_text(json.dumps(metrics_dict(evaluated), indent=2) + "\n")
    row: dict[str, Any] = {
        "per_class": n, "seed": run_seed, "train_images": len(train_records),
        "val_images": len(val_records), "min_class_images": min(per.values()),
        "max_class_images": max(per.values()), "max_epochs": base.epochs,
        "epochs_run": len(history), "best_epoch": best[-1]["epoch"] if best else None,
        "stopped": history[-1].get("stopped", "completed") if history else None,
        "val_top1": best[-1].get("val_top1") if best else None,
        "checkpoint": checkpoint.name, "steps_per_epoch": steps, "batch_size": batch,
        "train_seconds": sum(h.get("train_seconds", 0.0) for h in history),
        "train_loss": history[-1].get("train_loss") if history else None,
        "test_images": evaluated.num_samples,
    }
    for m, res in evaluated.modes.items():
        row[f"top1_{m}"] = res.top1(evaluated.labels)
        row[f"top5_{m}"] = res.top5()
        row[f"class_mean_top1_{m}"] = res.class_mean_top1(evaluated.labels)
    log(f"n={n} seed {run_seed}: " + ", ".join(f"test top-1 {m} {row[f'top1_{m}']:.4f}"
                                               for m in modes)
        + (f" (best.pt of epoch {row['best_epoch']}, inner val top-1 {row['val_top1']:.4f})"
           if row["checkpoint"] == "best.pt" else " (last.pt)"))
    row["_test_keys"] = sorted(evaluated.keys)
    row["_test_labels"] = Counter(int(v) for v in evaluated.labels)
    return row


def summary_rows(runs: list[dict[str, Any]], modes: Sequence[str]) -> list[dict[str, Any]]:
    """One row per size: counts of its first run, then for every score its mean (under the
    score's own name, as the one-seed curve wrote it), ``_std``, ``_min`` and ``_max``."""
    rows = []
    for n in sorted({r["per_class"] for r in runs}):
        mine = [r for r in runs if r["per_class"] == n]
        row: dict[str, Any] = {k: mine[0][k] for k in (
            "per_class", "train_images", "val_images", "min_class_images", "max_class_images",
            "max_epochs", "steps_per_epoch", "batch_size", "test_images")}
        row["repeats"] = len(mine)
        row["epochs_run"] = "/".join(str(r["epochs_run"]) for r in mine)
        row["train_seconds"] = sum(r["train_seconds"] for r in mine) / len(mine)
        for m in modes:
            for score in SCORES:
                s = summarize([r[f"{score}_{m}"] for r in mine])
                row[f"{score}_{m}"] = s["mean"]
                for k in ("std", "min", "max"):
                    row[f"{score}_{m}_{k}"] = s[k]
        rows.append(row)
    return rows


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


def write_curve(result: CurveResult, out: Path, title: str = "") -> None:
    from dataprep.io.durable import write_atomic
    from dataprep.train.eval_report import write_csv

    columns = ["per_class", "repeats", "train_images", "val_images", "min_class_images",
               "max_class_images", "max_epochs", "epochs_run", "steps_per_epoch",
               "batch_size", "train_seconds", "test_images"]
    columns += [f"{k}_{m}{s}" for m in result.modes for k in SCORES
                for s in ("", "_std", "_min", "_max")]
    write_csv(out / "learning_curve.csv", result.rows, columns)
    run_columns = ["per_class", "seed", "repeat", "train_images", "val_images",
                   "min_class_images", "max_class_images", "max_epochs", "epochs_run",
                   "best_epoch", "stopped", "val_top1", "checkpoint", "steps_per_epoch",
                   "batch_size", "train_seconds", "train_loss", "test_images"]
    run_columns += [f"{k}_{m}" for m in result.modes for k in SCORES]
    write_csv(out / "learning_curve_runs.csv", result.runs, run_columns)
    doc = {"modes": list(result.modes), "chance": result.chance,
           "class_chance": result.class_chance, "fit": result.fit,
           "fit_class_mean": result.fit_class_mean,
           "settings": result.settings, "rows": result.rows, "runs": result.runs}
    write_atomic(out / "learning_curve.json", (json.dumps(doc, indent=2) + "\n").encode())
    plot_curve(result, out / "learning_curve.png", title)


def plot_curve(result: CurveResult, path: str | Path, title: str = "") -> None:
    """Mean test top-1 (and class-mean top-1) per test-time mode against images per class on
    a log axis, error bars of one standard deviation, every run as a faint dot, the fitted
    log-linear trend with its slope, chance lines."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt
    import numpy as np

    xs = [r["per_class"] for r in result.rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    for i, m in enumerate(result.modes):
        color = f"C{i}"
        for key, style, marker, label in (
                (f"top1_{m}", "-", "o", f"top-1 ({m})"),
                (f"class_mean_top1_{m}", "--", "s", f"class-mean top-1 ({m})")):
            ys = [r[key] for r in result.rows]
            err = [r[f"{key}_std"] for r in result.rows]
            ax.errorbar(xs, ys, yerr=err, fmt=style, color=color, marker=marker,
                        markersize=4, capsize=3, label=label + " ± std")
            if i == 0:
                runs = [(r["per_class"], r[key]) for r in result.runs]
                ax.scatter([x for x, _ in runs], [y for _, y in runs], s=9, color=color,
                           marker=marker, alpha=0.3, zorder=3,
                           label=f"each run ({len(result.runs)})" if marker == "o" else None)
                for x, y in zip(xs, ys, strict=True):
                    ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points",
                                xytext=(6, 6 if marker == "o" else -12), fontsize=7,
                                color=color)
    grid = np.geomspace(min(xs), max(xs), 50)
    for fit, color, name in ((result.fit, "black", "top-1"),
                             (result.fit_class_mean, "dimgray", "class-mean")):
        if fit is None:
            continue
        ax.plot(grid, fit["intercept"] + fit["slope"] * np.log2(grid), ":", color=color,
                label=f"fit, {name}: {fit['points_per_doubling']:+.1f} points per doubling")
    if result.fit is not None:
        title = (title or "learning curve") + (
            f"\n{result.fit['points_per_doubling']:+.1f} points of top-1 "
            f"({result.fit['mode']}) per doubling of images per class")
        if result.fit_class_mean is not None:
            title += f" ({result.fit_class_mean['points_per_doubling']:+.1f} class-mean)"
    ax.axhline(result.chance, color="gray", linestyle=":",
               label=f"top-1 of the largest class ({result.chance:.3f})")
    ax.axhline(result.class_chance, color="gray", linestyle="-.",
               label=f"class-mean chance ({result.class_chance:.3f})")
    ax.set_xscale("log")
    if len(xs) > 1:
        ax.set_xlim(min(xs) / 1.25, max(xs) * 1.25)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("images per class (log scale; an inner validation share of them "
                  "validates)" if result.settings.get("inner_val") else
                  "training images per class (log scale)", fontsize=8)
    ax.set_ylabel("top-1 on the fixed test split")
    ax.set_title(title or "learning curve", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    import io

    from dataprep.io.durable import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
