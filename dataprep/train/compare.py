"""``dataprep compare RUN... [-o DIR]``: train runs side by side, from their own files.

Per run (a ``dataprep train`` run folder; a sweep folder stands for its ``runs/*``), from
``metrics.jsonl`` (one line per epoch) and ``config.json``:

* **top-1**: the best ``val_top1`` of any epoch (the epoch ``best.pt`` holds); **top-5** and
  **class-mean** top-1 (``val_class_top1``): of that same epoch;
* **epoch**: that epoch / the last epoch run, and why it stopped (early_stop, diverged);
* **wall s**: the sum of the epochs' ``seconds`` (training and validation, resumes included);
* **images/s**: the training images of all epochs over their ``train_seconds``;
* **params**: ``config.json``'s ``resolved.parameters``;
* the **varied flags**: every ``config.json`` value that differs between the runs compared.

Rows are sorted by top-1 (best first). A run whose top-1 is within one standard error of the
best's, ``sqrt(p (1 - p) / n)`` with ``p`` the best top-1 and ``n`` its validation images, is
marked a tie: on that validation set the difference is noise. Runs scored on other
validation sets (another class list, val image count or, where a sweep recorded it, data) are
lettered apart in a "val set" column, noted, and never marked ties of the best. A sweep
folder stands for the runs its ``sweep.json`` names (the current SPEC's; ``--all``: every
run folder under ``runs/``). ``evaluate`` reports found in a
run folder (``RUN/*/metrics.json``) add a table of top-1 per test-time mode.

With ``-o DIR``: ``compare.md``, ``compare.csv`` and ``compare.png`` (validation top-1 and
loss per epoch, every run overlaid; a second stage continues from its first stage's best
epoch). Importing this module is cheap (stdlib and click); matplotlib loads for the plot.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from dataprep.errors import DataprepError, UsageError, cli_message

NOT_FLAGS = {"out", "resume", "overwrite", "progress", "resolved", "classes", "cache_dir",
             "num_classes"}  # differ between runs without making them different experiments
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


def sweep_names(sweep: Path) -> set[str] | None:
    """The runs the sweep's current SPEC names (``sweep.json``'s ``names``; with --shard, every
    ``sweep-I-of-N.json``'s), or None when no ledger names them."""
    names: set[str] = set()
    found = False
    for ledger in sorted(sweep.glob("sweep*.json")):
        try:
            data = json.loads(ledger.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("names"), list):
            found = True
            names.update(str(n) for n in data["names"])
    return names if found else None


def run_folders(paths: list[str | Path], all_runs: bool = False,
                notes: list[str] | None = None) -> list[Path]:
    """Run folders of ``paths``: a folder holding ``metrics.jsonl`` is one; a sweep folder
    (``runs/`` inside) stands for its runs that have one and that its ``sweep.json`` names
    (the current SPEC's; every one with ``all_runs``). Anything else is refused. What was
    left out is said in ``notes``."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "metrics.jsonl").is_file():
            out.append(p)
        elif (p / "runs").is_dir():
            found = sorted(r for r in (p / "runs").iterdir() if (r / "metrics.jsonl").is_file())
            names = None if all_runs else sweep_names(p)
            if names is not None:
                other = [r for r in found if r.name not in names]
                found = [r for r in found if r.name in names]
                if other and notes is not None:
                    notes.append(f"{len(other)} run folder(s) in {p / 'runs'} that its sweep "
                                 "spec no longer names were left out (--all includes them)")
            if not found:
                raise UsageError(f"{p} is a sweep with no run that finished an epoch yet")
            out += found
        else:
            raise UsageError(f"{p} is not a run folder (no metrics.jsonl) nor a sweep folder "
                             "(no runs/); pass `dataprep train -o` folders")
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def load_run(path: Path) -> RunRow:
    """A run's row from its ``metrics.jsonl`` and ``config.json`` (see the module docstring)."""
    try:
        history = [json.loads(line) for line in
                   (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
        config = (json.loads((path / "config.json").read_text())
                  if (path / "config.json").exists() else {})
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read its metrics.jsonl / config.json ({exc})") from None
    row = RunRow(path.name, path, config, history, epochs=len(history),
                 epochs_planned=config.get("epochs"))
    if history:
        row.stopped = history[-1].get("stopped")
        row.wall_seconds = sum(float(h.get("seconds", 0.0)) for h in history)
        seconds = sum(float(h.get("train_seconds", 0.0)) for h in history)
        images = sum(int(h.get("train_samples", 0)) for h in history)
        row.images_per_s = images / seconds if seconds > 0 else None
        row.epochs = int(history[-1]["epoch"])
    scored = [h for h in history if h.get("val_top1") is not None]
    if scored:
        best = max(scored, key=lambda h: h["val_top1"])  # the first of equals, as best.pt
        row.top1, row.top5 = best["val_top1"], best.get("val_top5")
        row.class_top1 = best.get("val_class_top1")
        row.best_epoch, row.val_samples = int(best["epoch"]), best.get("val_samples")
    row.parameters = config.get("resolved", {}).get("parameters")
    try:
        identity = json.loads((path / "sweep-run.json").read_text()).get("data_identity")
        row.data_sha256 = identity.get("sha256") if isinstance(identity, dict) else None
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    for report in sorted(path.glob("*/metrics.json")):
        try:
            modes = json.loads(report.read_text()).get("modes", {})
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        row.tta.update({m: v["top1"] for m, v in modes.items()
                        if isinstance(v, dict) and "top1" in v})
    return row


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"Z{i - 25}"


def standard_error(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` images."""
    return math.sqrt(p * (1 - p) / n) if n > 0 else 0.0


def val_set_key(row: RunRow) -> str:
    """Runs with equal keys were scored on the same validation set: the same class list, val
    image count and (where a sweep recorded it) data identity."""
    return json.dumps([row.config.get("classes"), row.val_samples, row.data_sha256])


def compare(paths: list[str | Path], out: str | Path | None = None,
            all_runs: bool = False) -> Comparison:
    """Compare the runs of ``paths`` (run or sweep folders; a sweep's current runs, or every
    run folder with ``all_runs``); with ``out``, write ``compare.md``, ``compare.csv`` and
    ``compare.png`` there. Ties are marked only among runs on the best run's validation
    set; runs on others are lettered apart and noted."""
    notes: list[str] = []
    rows = [load_run(p) for p in run_folders(paths, all_runs, notes)]
    rows.sort(key=lambda r: (r.top1 is None, -(r.top1 or 0.0), r.name))
    names = {str(r.path.resolve()): r.name for r in rows}
    for r in rows:  # a second stage: --weights is another compared run's checkpoint
        weights = r.config.get("weights")
        if weights:
            r.after = names.get(str(Path(weights).resolve().parent))
    letters: dict[str, str] = {}
    for r in rows:  # A: the best run's validation set, B, C, ...: others, in row order
        key = val_set_key(r)
        if key not in letters:
            letters[key] = _letter(len(letters))
        r.val_set = letters[key]
    if len(letters) > 1:
        counts = sorted({(r.val_set, len(r.config.get("classes") or []), r.val_samples)
                         for r in rows})
        sets = "; ".join(f"{v}: {c} classes, {n if n is not None else '?'} val images"
                         for v, c, n in counts)
        notes.insert(0, f"the runs were scored on {len(letters)} different validation sets "
                        f"({sets}; equal counts: other data); their top-1 are not "
                        "comparable across sets, and ties are marked only within the best "
                        "run's")
    se = n = None
    best = rows[0]
    if best.top1 is not None and best.val_samples:
        n = int(best.val_samples)
        se = standard_error(best.top1, n)
        best.tie = "best"
        for r in rows[1:]:
            if r.val_set != best.val_set:
                continue
            if r.top1 is not None and (best.top1 - r.top1 < se or r.top1 == best.top1):
                r.tie = "tie"
    keys = sorted({k for r in rows for k in r.config} - NOT_FLAGS)
    varied = [k for k in keys if len({json.dumps(r.config.get(k), sort_keys=True)
                                      for r in rows}) > 1]
    if "data" in varied and len({flag_text("data", r.config.get("data")) for r in rows}) == 1:
        varied.remove("data")  # the same data, spelled differently
    result = Comparison(rows, varied, se, n, notes)
    if out is not None:
        result.write(out)
    return result


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", default=None, type=click.Path(file_okay=False),
              help="Write compare.md, compare.csv and compare.png (validation top-1 and loss "
                   "curves overlaid) here [default: print the table only].")
@click.option("--all", "all_runs", is_flag=True,
              help="For a sweep folder: every run folder under runs/, also those its current "
                   "spec no longer names [default: the runs its sweep.json names].")
def compare_cmd(runs: tuple[str, ...], out: str | None, all_runs: bool) -> None:
    """Compare train runs: the flags that differ, best val top-1 / top-5, class-mean top-1,
    epochs, wall time, images/s and parameters, best first; ties (within one standard error
    of the best top-1 on its validation set) marked.

    RUN: a `dataprep train -o` folder, or a `dataprep sweep -o` folder (the runs/* its
    sweep.json names; --all: every one). Runs scored on different validation sets (other
    classes, val image counts or data) get a "val set" letter and a warning. Every
    number is read from the runs' own metrics.jsonl and config.json; `dataprep evaluate`
    reports inside a run folder (RUN/*/metrics.json) add a top-1 table per test-time mode.

    \b
      dataprep compare runs/sgd runs/adam
      dataprep compare sweeps/opt -o sweeps/opt
      dataprep compare machine1/runs/* machine2/runs/* -o compared
    """
    try:
        result = compare(list(runs), out, all_runs=all_runs)
    except (DataprepError, OSError) as exc:
        if (message := cli_message(exc)) is None:
            raise
        raise click.ClickException(message) from exc
    click.echo("\n".join(result.lines()))
    for note in result.notes:
        click.echo(f"warning: {note}", err=True)
    if out:
        click.echo(f"comparison: {out}/compare.md, compare.csv, compare.png")
