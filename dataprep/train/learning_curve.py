"""``learning_curve(src, out, per_class=[...])``: validation accuracy vs images per class.

The validation set is fixed once: ``--val`` (images, a manifest, or shards already resized),
or the val part of one seeded ``split(src, ratio=...)``. For each size ``N`` the training
images are ``split(train_part, per_class_limit=N)``: the limit takes the same seeded ranking
for every ``N``, so each subset holds the smaller ones (nested). The subset's own train and
val manifests are merged (the curve's validation set is the fixed one), resized into shards
with :func:`dataprep.jobs.tencrop.resize`, trained with :func:`dataprep.train.loop.train`
(no validation during training: nothing is selected on the validation set) and ``last.pt``
is evaluated with :func:`dataprep.train.evaluate.evaluate_model` in the asked test-time modes.

Layout of ``out``::

    split/            train.jsonl, val.jsonl (without --val)
    val/              validation shards (unless --val names shards)
    n{N}/subset/      the N-per-class manifests, n{N}/shards/, n{N}/run/, n{N}/metrics.json
    learning_curve.csv, learning_curve.png, learning_curve.json
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
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


@dataclass
class CurveResult:
    out: str
    modes: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    chance: float = 0.0  # share of the largest class in the validation set
    class_chance: float = 0.0  # class-mean top-1 of any constant prediction: 1 / classes

    def lines(self) -> list[str]:
        head = f"{'per class':>9} {'train':>6} {'steps':>6} {'seconds':>8}" + "".join(
            f" {'top-1 ' + m:>12} {'class-mean':>10}" for m in self.modes)
        out = [head]
        for r in self.rows:
            out.append(f"{r['per_class']:>9} {r['train_images']:>6} "
                       f"{r['steps_per_epoch'] * r['epochs']:>6} {r['train_seconds']:>8.1f}"
                       + "".join(f" {r[f'top1_{m}']:>12.4f} {r[f'class_mean_top1_{m}']:>10.4f}"
                                 for m in self.modes))
        out.append(f"chance: top-1 {self.chance:.4f} (largest validation class), class-mean "
                   f"{self.class_chance:.4f}")
        out.append(f"wrote {self.out}/learning_curve.csv, learning_curve.png")
        return out


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


def _is_shards(path: str) -> bool:
    from dataprep.io.scan import scan

    return scan(path).records is None


def _val_shards(src: str, out: Path, val: str | None, ratio: float, seed: int, short_side: int,
                jobs: int | None, overwrite: bool, log: Log) -> tuple[str, str, list[str]]:
    """(training part, validation shards, classes): split once, resize the val part once."""
    from dataprep.io.scan import scan
    from dataprep.jobs.split import split
    from dataprep.jobs.tencrop import resize

    if val is None:
        result = split(src, out / "split", ratio=ratio, seed=seed, overwrite=True)
        log(f"split {src}: {len(result.splits['train'])} train, {len(result.splits['val'])} "
            f"val images (ratio {ratio}, seed {seed})")
        train_part, val_src, classes = str(out / "split" / "train.jsonl"), \
            str(out / "split" / "val.jsonl"), result.classes
    else:
        train_part, val_src = src, val
        classes = scan(src).classes
        val_classes = scan(val).classes
        if val_classes and val_classes != classes:
            raise UsageError(f"--val {val} has classes {val_classes[:10]} but {src} has "
                             f"{classes[:10]}; they must be the same list in the same order")
        if _is_shards(val):
            return train_part, val, classes
    report = resize(val_src, out / "val", short_side=short_side, split="val", jobs=jobs,
                    overwrite=overwrite, classes=classes if val is not None else None)
    log(f"validation shards: already complete in {out / 'val'}" if report.complete else
        f"validation shards: {report.records_in} images -> {out / 'val'}")
    return train_part, str(out / "val"), classes


def learning_curve(src: str, out: str | Path, *, per_class: Sequence[int] | str,
                   val: str | None = None, ratio: float = 0.8, seed: int = 0,
                   short_side: int | None = None, modes: Sequence[str] | str = ("center",),
                   min_steps: int = 0, jobs: int | None = None, overwrite: bool = False,
                   log: Log | None = None, **train_options: Any) -> CurveResult:
    """Train and evaluate once per size of ``per_class``; write ``learning_curve.csv``,
    ``learning_curve.png`` and ``learning_curve.json`` into ``out``.

    ``train_options``: :class:`dataprep.train.config.TrainConfig` fields of
    :data:`TRAIN_FIELDS` (``model``, ``epochs``, ``lr``, ...). ``short_side`` (default: the
    trainer's, ``img_size / 0.875``) is both the stored size of the shards and the trainer's.
    ``min_steps``: at least this many optimizer steps per size (small sizes otherwise get
    one or two), by raising ``steps_per_epoch``. The batch size is lowered to the number of
    training images when it is larger.
    """
    from dataprep.jobs.split import split
    from dataprep.jobs.tencrop import resize
    from dataprep.train.config import TrainConfig
    from dataprep.train.evaluate import evaluate_model, load_model
    from dataprep.train.loop import train
    from dataprep.train.report import metrics_dict
    from dataprep.train.tta import parse_modes

    log = log or (lambda line: None)
    sizes = parse_sizes(per_class)
    modes = parse_modes(modes)
    unknown = sorted(set(train_options) - set(TRAIN_FIELDS))
    if unknown:
        raise UsageError(f"learning_curve: unknown training option(s) {unknown}; expected "
                         f"some of {', '.join(TRAIN_FIELDS)}")
    base = TrainConfig(data="", out="", short_side=short_side, seed=seed, progress=False,
                       **train_options)
    base.validate()
    short = base.crop_short_side
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_part, val_shards, classes = _val_shards(src, out, val, ratio, seed, short, jobs,
                                                  overwrite, log)
    result = CurveResult(str(out), modes)
    for n in sizes:
        folder = out / f"n{n}"
        subset = split(train_part, folder / "subset", ratio=0.5, seed=seed, per_class_limit=n,
                       overwrite=True)
        records = sorted((replace(r, split="train") for part in subset.splits.values()
                          for r in part), key=lambda r: (r.label, r.key))
        per = Counter(r.label for r in records)
        resize(train_part, folder / "shards", records=records, classes=classes,
               short_side=short, split="train", jobs=jobs, overwrite=overwrite)
        batch = min(base.batch_size, len(records))
        steps = max(len(records) // batch, math.ceil(min_steps / base.epochs))
        cfg = replace(base, data=str(folder / "shards"), out=str(folder / "run"),
                      batch_size=batch, steps_per_epoch=steps, overwrite=True,
                      num_classes=len(classes), classes=list(classes), resolved={})
        history = None if overwrite else finished_history(cfg)
        if history is None:
            log(f"n={n}: training on {len(records)} images ({min(per.values())}.."
                f"{max(per.values())} per class), {base.epochs} epoch(s) of {steps} step(s)")
            history = train(cfg).history
        else:
            log(f"n={n}: {folder / 'run'} already holds this training; evaluating it")
        seconds = sum(h.get("train_seconds", 0.0) for h in history)
        evaluated = evaluate_model(load_model(folder / "run" / "last.pt"), val_shards,
                                   modes=modes, batch_size=max(batch, 32),
                                   device=base.device)
        (folder / "metrics.json").write_text(json.dumps(metrics_dict(evaluated), indent=2)
                                             + "\n")
        labels = Counter(int(v) for v in evaluated.labels)
        result.chance = max(labels.values()) / evaluated.num_samples
        result.class_chance = 1 / len(classes)
        row: dict[str, Any] = {
            "per_class": n, "train_images": len(records), "min_class_images": min(per.values()),
            "max_class_images": max(per.values()), "epochs": base.epochs,
            "steps_per_epoch": steps, "batch_size": batch, "train_seconds": seconds,
            "train_loss": history[-1].get("train_loss") if history else None,
            "val_images": evaluated.num_samples,
        }
        for m, r in evaluated.modes.items():
            row[f"top1_{m}"] = r.top1(evaluated.labels)
            row[f"top5_{m}"] = r.top5()
            row[f"class_mean_top1_{m}"] = r.class_mean_top1(evaluated.labels)
        result.rows.append(row)
        log(f"n={n}: " + ", ".join(f"top-1 {m} {row[f'top1_{m}']:.4f}" for m in modes))
    write_curve(result, out, title=f"{base.model}, {base.img_size} px, {base.epochs} epoch(s)")
    return result


# config fields that do not change what a finished run learned
_IRRELEVANT = ("resolved", "overwrite", "resume", "progress", "workers", "device", "cache_dir",
               "cache_size")


def finished_history(cfg: Any) -> list[dict[str, Any]] | None:
    """The history of ``cfg.out/last.pt`` when it holds this exact training, finished; else
    None (so rerunning a curve, e.g. with more --tta modes, does not train again)."""
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
    if json.loads(json.dumps(saved)) != json.loads(json.dumps(wanted)) \
            or state.get("epoch") != cfg.epochs:
        return None
    return list(state.get("history") or [])


def write_curve(result: CurveResult, out: Path, title: str = "") -> None:
    from dataprep.train.report import write_csv

    columns = ["per_class", "train_images", "min_class_images", "max_class_images", "epochs",
               "steps_per_epoch", "batch_size", "train_seconds", "train_loss", "val_images"]
    columns += [f"{k}_{m}" for m in result.modes for k in ("top1", "top5", "class_mean_top1")]
    write_csv(out / "learning_curve.csv", result.rows, columns)
    (out / "learning_curve.json").write_text(json.dumps(
        {"modes": list(result.modes), "chance": result.chance,
         "class_chance": result.class_chance, "rows": result.rows},
        indent=2) + "\n")
    plot_curve(result, out / "learning_curve.png", title)


def plot_curve(result: CurveResult, path: str | Path, title: str = "") -> None:
    """Top-1 per test-time mode against images per class (log axis), chance dashed."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    xs = [r["per_class"] for r in result.rows]
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for i, m in enumerate(result.modes):
        color = f"C{i}"
        for key, style, marker, label in (
                (f"top1_{m}", "-", "o", f"top-1 ({m})"),
                (f"class_mean_top1_{m}", "--", "s", f"class-mean top-1 ({m})")):
            ys = [r[key] for r in result.rows]
            ax.plot(xs, ys, style, color=color, marker=marker, markersize=4, label=label)
            if i == 0:  # values of the first mode only: more would overlap
                for x, y in zip(xs, ys, strict=True):
                    ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points",
                                xytext=(0, 7 if marker == "o" else -12), ha="center",
                                fontsize=7, color=color)
    ax.axhline(result.chance, color="gray", linestyle=":",
               label=f"top-1 of the largest class ({result.chance:.3f})")
    ax.axhline(result.class_chance, color="gray", linestyle="-.",
               label=f"class-mean chance ({result.class_chance:.3f})")
    if len(xs) > 1 and max(xs) / min(xs) >= 4:
        ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("training images per class (limit)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or "learning curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    fig.savefig(path, dpi=100)
    plt.close(fig)
