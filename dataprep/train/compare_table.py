"""A comparison of train runs (:class:`Comparison`, one :class:`RunRow` per run) and how it is
shown: the Markdown table (plain text too), ``compare.csv`` and ``compare.png`` (validation
top-1 and loss per epoch, every run overlaid; a second stage continues from its first stage's
best epoch). The figures are found by :func:`dataprep.train.compare.compare`.

Importing this module is cheap (stdlib only); matplotlib loads for the plot.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILES = ("compare.md", "compare.csv", "compare.png")


@dataclass
class RunRow:
    """One run's figures, as its files hold them."""

    name: str
    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    top1: float | None = None
    top5: float | None = None
    class_top1: float | None = None
    best_epoch: int | None = None
    epochs: int = 0
    epochs_planned: int | None = None
    stopped: str | None = None
    wall_seconds: float = 0.0
    images_per_s: float | None = None
    parameters: int | None = None
    val_samples: int | None = None
    tie: str = ""  # "best", "tie" or ""
    data_sha256: str | None = None  # the data identity its sweep recorded (sweep-run.json)
    val_set: str = ""  # "A", "B", ...: runs with the same letter share a validation set
    after: str | None = None  # started from this compared run's best.pt
    tta: dict[str, float] = field(default_factory=dict)  # evaluate mode -> top-1


@dataclass
class Comparison:
    rows: list[RunRow]
    varied: list[str]
    standard_error: float | None  # of the best top-1
    n: int | None  # validation images of the best run
    notes: list[str] = field(default_factory=list)  # warnings: other val sets, runs left out

    def table(self) -> list[dict[str, Any]]:
        """One dict per row, in order: the CSV's columns (the varied flags by their names,
        then the figures: none is named like a flag of ``train``)."""
        out = []
        for r in self.rows:
            d: dict[str, Any] = {"run": r.name}
            d.update({k: flag_text(k, r.config.get(k)) for k in self.varied})
            d.update(top1=r.top1, top5=r.top5, class_mean_top1=r.class_top1,
                     best_epoch=r.best_epoch, epochs_run=r.epochs, stopped=r.stopped or "",
                     wall_seconds=round(r.wall_seconds, 3),
                     images_per_s=None if r.images_per_s is None else round(r.images_per_s, 1),
                     parameters=r.parameters, val_samples=r.val_samples,
                     val_set=r.val_set, tie=r.tie,
                     path=str(r.path))
            out.append(d)
        return out

    def csv_text(self) -> str:
        rows = self.table()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
        return buf.getvalue()

    def lines(self) -> list[str]:
        """The Markdown table (it reads as plain text too), the tie rule, the TTA table."""
        sets = len({r.val_set for r in self.rows}) > 1
        head = ["run", *self.varied, "top-1", "top-5", "class-mean", "epoch", "wall s",
                "img/s", "params", *(["val set"] if sets else []), "tie"]
        body = []
        for r in self.rows:
            epoch = "-" if r.best_epoch is None else f"{r.best_epoch}/{r.epochs}"
            if r.stopped:
                epoch += f" ({r.stopped})"
            elif r.epochs_planned and r.epochs < r.epochs_planned:
                epoch += f" of {r.epochs_planned}"
            body.append([r.name, *(flag_text(k, r.config.get(k)) for k in self.varied),
                         _f(r.top1), _f(r.top5), _f(r.class_top1), epoch,
                         f"{r.wall_seconds:.1f}", _f(r.images_per_s, ".0f"),
                         "-" if r.parameters is None else f"{r.parameters:,}",
                         *([r.val_set] if sets else []), r.tie])
        out = _markdown(head, body)
        if self.standard_error is not None:
            among = (f", among the runs on its val set {self.rows[0].val_set}" if sets else "")
            out += ["", f"tie: top-1 within one standard error of the best{among}, "
                        f"sqrt(p(1-p)/n) = {self.standard_error:.4f} (p = "
                        f"{self.rows[0].top1:.4f}, n = {self.n} val images); top-5 and "
                        "class-mean are of the best top-1's epoch"]
        if self.notes:
            out += ["", *(f"note: {n}" for n in self.notes)]
        modes = sorted({m for r in self.rows for m in r.tta})
        if modes:
            out += ["", "evaluate top-1 per test-time mode:", ""]
            out += _markdown(["run", *modes], [[r.name, *(_f(r.tta.get(m)) for m in modes)]
                                               for r in self.rows if r.tta])
        return out

    def markdown(self) -> str:
        return "# Comparison of runs\n\n" + "\n".join(self.lines()) + \
            "\n\n![validation top-1 and loss](compare.png)\n"

    def plot(self) -> bytes:
        """PNG: validation top-1 (left) and loss (right; train dashed) per epoch."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
        offsets = {r.name: 0 for r in self.rows}
        by_name = {r.name: r for r in self.rows}
        for r in self.rows:  # a second stage continues from its first stage's best epoch
            seen, up = set(), r.after
            while up in by_name and up not in seen:
                seen.add(up)
                offsets[r.name] += by_name[up].best_epoch or by_name[up].epochs
                up = by_name[up].after
        cmap = plt.get_cmap("tab10" if len(self.rows) <= 10 else "tab20")
        for i, r in enumerate(self.rows):
            color = cmap(i % cmap.N)
            xs = [h["epoch"] + offsets[r.name] for h in r.history]
            label = r.name + (f" (top-1 {r.top1:.3f})" if r.top1 is not None else "")
            val = [(x, h["val_top1"]) for x, h in zip(xs, r.history, strict=True)
                   if h.get("val_top1") is not None]
            if val:
                ax_acc.plot(*zip(*val, strict=True), "-o", color=color, markersize=3,
                            label=label)
            vloss = [(x, h["val_loss"]) for x, h in zip(xs, r.history, strict=True)
                     if h.get("val_loss") is not None]
            if vloss:
                ax_loss.plot(*zip(*vloss, strict=True), "-o", color=color, markersize=3,
                             label=r.name + " val")
            tloss = [(x, h["train_loss"]) for x, h in zip(xs, r.history, strict=True)]
            if tloss:
                ax_loss.plot(*zip(*tloss, strict=True), "--", color=color, linewidth=1,
                             alpha=0.7)
        chance = [h["chance"] for r in self.rows for h in r.history[-1:] if "chance" in h]
        if chance:
            ax_acc.axhline(chance[0], color="gray", linestyle=":", linewidth=1,
                           label=f"chance ({chance[0]:.2f})")
        ax_acc.set_title("validation top-1")
        ax_loss.set_title("loss (val solid, train dashed)")
        for ax in (ax_acc, ax_loss):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        ax_acc.legend(fontsize=7, loc="lower right")
        ax_loss.legend(fontsize=7, loc="upper right")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        return buf.getvalue()

    def write(self, out: str | Path) -> list[Path]:
        """``compare.md``, ``compare.csv``, ``compare.png`` in ``out`` (each atomically)."""
        from dataprep.io import durable

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        data = [self.markdown().encode(), self.csv_text().encode(), self.plot()]
        paths = [out / name for name in FILES]
        for path, blob in zip(paths, data, strict=True):
            durable.write_atomic(path, blob)
        return paths


def _f(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _markdown(head: list[str], body: list[list[str]]) -> list[str]:
    cells = [[c.replace("|", "\\|") for c in row] for row in [head, *body]]
    width = [max(len(row[i]) for row in cells) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, width, strict=True)) + " |"

    return [fmt(cells[0]), "|" + "|".join("-" * (w + 2) for w in width) + "|",
            *(fmt(r) for r in cells[1:])]


def flag_text(key: str, value: Any) -> str:
    """A config value as the table shows it: a path by its last two parts, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(flag_text(key, v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    if "/" in text:
        parts = [p for p in text.split("/") if p]
        return "/".join(parts[-2:])
    return text


