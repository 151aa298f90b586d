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
epoch). This module finds the runs and their figures; :mod:`~dataprep.train.compare_table`
holds the comparison and writes it. Importing this module is cheap (stdlib and click);
matplotlib loads for the plot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from dataprep.errors import DataprepError, UsageError, cli_message
from dataprep.train.compare_table import Comparison, RunRow, flag_text

NOT_FLAGS = {"out", "resume", "overwrite", "progress", "resolved", "classes", "cache_dir",
             "num_classes"}  # differ between runs without making them different experiments


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
