"""What a learning curve measured (:class:`CurveResult`), its summaries (mean, spread and the
log-linear trend per size) and the files it is written to:
``learning_curve.csv`` (one row per size), ``learning_curve_runs.csv`` (one per size and
repeat), ``learning_curve.json`` and ``learning_curve.png``.

The plot draws the mean test top-1 and class-mean top-1 of every test-time mode against
images per class on a log axis, one standard deviation as error bars, each run as a faint dot,
the fitted log-linear trend and the chance lines. Importing this module is cheap (stdlib only);
numpy and matplotlib load for the plot.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError

SCORES = ("top1", "top5", "class_mean_top1")  # per test-time mode, summarized per size


@dataclass
class CurveResult:
    """A learning curve: every (size, repeat) run, the summary per size, chance, the trend."""

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
    """A fitted trend as one sentence: points gained per doubling, and the line itself."""
    score = "class-mean top-1" if fit.get("score") == "class_mean_top1" else "top-1"
    return (f"{fit['points_per_doubling']:+.1f} points of {score} per doubling of images per "
            f"class (least-squares fit of the mean {score} ({fit['mode']}) = "
            f"{fit['intercept']:.3f} + {fit['slope']:.4f} x log2(N), N = "
            f"{min(fit['per_class'])}..{max(fit['per_class'])})")


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


def trend(rows: list[dict[str, Any]], mode: str, score: str) -> dict[str, Any]:
    """:func:`fit_log_linear` of ``score``'s mean per size, as the curve records it."""
    slope, intercept = fit_log_linear([r["per_class"] for r in rows],
                                      [r[f"{score}_{mode}"] for r in rows])
    return {"mode": mode, "score": score, "slope": slope, "intercept": intercept,
            "points_per_doubling": 100 * slope, "per_class": [r["per_class"] for r in rows]}


def write_curve(result: CurveResult, out: Path, title: str = "") -> None:
    """The curve's four files in ``out`` (each written atomically)."""
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

    from dataprep.io.durable import write_atomic

    xs = [r["per_class"] for r in result.rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    for i, m in enumerate(result.modes):
        _plot_mode(ax, result, xs, m, i)
    _plot_fits(ax, result, xs)
    _dress(ax, result, xs, _title(result, title))
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def _plot_mode(ax: Any, result: CurveResult, xs: list[int], m: str, i: int) -> None:
    """Mode ``m``'s mean top-1 (solid) and class-mean top-1 (dashed) with their spread; the
    first mode also gets every run as a dot and its means written beside the points."""
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


def _plot_fits(ax: Any, result: CurveResult, xs: list[int]) -> None:
    """The fitted trends ``a + b log2(N)`` of top-1 and class-mean top-1, dotted."""
    import numpy as np

    grid = np.geomspace(min(xs), max(xs), 50)
    for fit, color, name in ((result.fit, "black", "top-1"),
                             (result.fit_class_mean, "dimgray", "class-mean")):
        if fit is None:
            continue
        ax.plot(grid, fit["intercept"] + fit["slope"] * np.log2(grid), ":", color=color,
                label=f"fit, {name}: {fit['points_per_doubling']:+.1f} points per doubling")


def _title(result: CurveResult, title: str) -> str:
    """``title``, with the fitted points per doubling below it when there is a fit."""
    if result.fit is not None:
        title = (title or "learning curve") + (
            f"\n{result.fit['points_per_doubling']:+.1f} points of top-1 "
            f"({result.fit['mode']}) per doubling of images per class")
        if result.fit_class_mean is not None:
            title += f" ({result.fit_class_mean['points_per_doubling']:+.1f} class-mean)"
    return title or "learning curve"


def _dress(ax: Any, result: CurveResult, xs: list[int], title: str) -> None:
    """Chance lines, the log axis ticked at the sizes, labels, title, grid and legend."""
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
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)
