"""``dataprep sweep SPEC.toml -o SWEEP``: many ``dataprep train`` runs from one TOML file.

The SPEC (strict TOML; keys are ``dataprep train``'s parameter names, dashes or underscores)::

    [base]                     # flags every run shares; ``data`` is train's DATA argument
    data = "shards"
    model = "resnet18"
    epochs = 5
    [grid]                     # lists: one run per element of their cartesian product
    optimizer = ["sgd", "adam"]
    lr = [0.01, 0.001]
    [[variant]]                # optional named runs: base + these overrides (besides the grid)
    name = "adam-then-sgd"
    optimizer = "adam"
    lr = 0.001
    [variant.then]             # optional second stage of this variant
    optimizer = "sgd"
    lr = 0.001
    [then]                     # optional second stage of every other run

A run is base + its overrides; a second stage is its first stage's flags + ``then``'s, started
from the first stage's ``best.pt`` (``--weights``: the model's weights only, a fresh optimizer;
``--reinit-last`` and ``--pretrained`` are reset unless ``then`` sets them). Every key and value
is checked against the real ``train`` command (its click types, then ``TrainConfig.validate``)
before any run starts: a typo is refused with the closest flag names.

Each run is an ordinary run folder ``SWEEP/runs/<name>``: grid runs are named by their grid
values (``optimizer=adam,lr=0.001``), variants by ``name``, second stages ``<name>+then``.
Runs go one after another, each ``python -m dataprep train`` in its own process (its output
also in ``RUN/train.log``); ``RUN/sweep-run.json`` holds the flags it was made with. A rerun
reads every run folder: finished runs (all epochs, or stopped early / diverged) are skipped, an
interrupted one continues with ``--resume`` from its ``last.pt``, and a run whose flags in the
SPEC changed is refused, naming the flag. ``sweep-run.json`` also holds the identity of the
data the run was trained on (:func:`~dataprep.train.sweep_folder.data_identity`): a finished
or interrupted run whose data folder holds other data now is refused too. ``-o`` may not be,
be inside or hold a run's data. ``SWEEP/sweep.json`` (written atomically) records each run's
state, command and times, and the current SPEC's run names (``dataprep compare SWEEP`` shows
those). At the end, :func:`dataprep.train.compare.compare` writes ``SWEEP/compare.md``,
``compare.csv`` and ``compare.png``.

This module holds the sweep's story and its command; the pieces live beside it:
:mod:`~dataprep.train.sweep_spec` (the SPEC, checked and expanded into runs),
:mod:`~dataprep.train.sweep_folder` (run folders, the ledger, the lock),
:mod:`~dataprep.train.sweep_launch` (one run's process) and
:mod:`~dataprep.train.sweep_estimate` (``--dry-run``). Importing any of them is cheap (click and
stdlib only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from dataprep.errors import DataprepError, UsageError, cli_message
from dataprep.train.sweep_estimate import list_and_estimate
from dataprep.train.sweep_folder import (
    LEDGER_NAME,
    LOG_NAME,
    RUNS_DIR,
    Ledger,
    check_existing,
    check_root,
    lock_sweep,
    run_state,
)
from dataprep.train.sweep_launch import Launcher, Log, start_run
from dataprep.train.sweep_spec import Run, Spec, load_spec, train_params


@dataclass
class SweepResult:
    """What a sweep call did: every run's state, the --dry-run estimate, the comparison."""

    out: str
    runs: list[Run]
    states: dict[str, str]  # name -> finished | failed | blocked | skipped (other shard) ...
    estimate_s: float | None = None  # --dry-run
    compared: Any = None  # the Comparison written at the end

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.states.items() if s in ("failed", "blocked")]


def sweep(spec_path: str | Path, out: str | Path, *, dry_run: bool = False,
          shard: tuple[int, int] | None = None, max_runs: int | None = None, nproc: int = 1,
          devices: str | None = None, probe_steps: int = 5, echo: bool = True,
          log: Log = print) -> SweepResult:
    """Run (or with ``dry_run`` list and time) the SPEC's runs into ``out``; see the module
    docstring. ``shard=(i, n)`` takes every n-th run group from the i-th; ``max_runs`` stops
    after that many runs were started (the rest stay for the next call). Raises
    :class:`UsageError` for a bad SPEC or a changed run before anything runs."""
    spec = load_spec(spec_path)
    root = Path(out)
    mine = _check_folder(spec, root, shard)
    launcher = Launcher(train_params(), nproc, devices, echo, log)
    states = {r.name: ("skipped" if r not in mine else
                       run_state(r, root / RUNS_DIR / r.name)) for r in spec.runs}
    if dry_run:
        estimate = list_and_estimate(spec, mine, root, states, launcher, probe_steps)
        return SweepResult(str(root), spec.runs, states, estimate_s=estimate)
    lock = lock_sweep(root, shard)
    try:
        ledger_name = (f"sweep-{shard[0]}-of-{shard[1]}.json" if shard else LEDGER_NAME)
        ledger = Ledger(root / ledger_name, spec.path, shard)
        ledger.name_runs([r.name for r in spec.runs])
        _run_all(mine, states, root, ledger, launcher, max_runs)
    finally:
        lock.close()
    return _compared(SweepResult(str(root), spec.runs, states))


def _check_folder(spec: Spec, root: Path, shard: tuple[int, int] | None) -> list[Run]:
    """This shard's runs, once ``root`` is known to be a fit ``-o``: not in, at or holding a
    run's data, no other files, and no run folder made with other flags or data."""
    from dataprep.jobs.output import OutputFolder

    datas = {str(r.flags["data"]) for r in spec.runs if "data" in r.flags}
    OutputFolder(root).check_inputs(sorted(datas))  # -o in, at or holding a run's data
    check_root(root)
    mine = [r for r in spec.runs if shard is None or r.group % shard[1] == shard[0] - 1]
    check_existing(spec.runs, root)
    return mine


def _run_all(mine: list[Run], states: dict[str, str], root: Path, ledger: Ledger,
             launcher: Launcher, max_runs: int | None) -> None:
    """Train this shard's runs in order, each to its end; ``states`` follows them."""
    started = 0
    for i, run in enumerate(mine):
        label = f"[{i + 1}/{len(mine)}] {run.name}"
        full = f"--max-runs {max_runs}" if max_runs is not None and started >= max_runs else None
        if _held_back(run, states, ledger, full, label, launcher.log):
            continue
        started += 1
        states[run.name] = start_run(run, root, states[run.name], ledger, launcher, label)


def _held_back(run: Run, states: dict[str, str], ledger: Ledger, full: str | None,
               label: str, log: Log) -> bool:
    """Whether ``run`` is not started this call (its line said, its state recorded): it
    finished before, its first stage is left for the next call or did not finish, or ``full``
    (the --max-runs reached) says no more runs start now."""
    if states[run.name] == "finished":
        log(f"{label}: finished before, skipped")
        ledger.update(run.name, state="finished", stage=run.stage, after=run.after)
        return True
    if run.after and states.get(run.after) == "pending":
        log(f"{label}: left for the next call (after {run.after})")
        states[run.name] = "pending"
        return True
    if run.after and states.get(run.after) != "finished":
        log(f"{label}: not started ({run.after} did not finish)")
        states[run.name] = "blocked"
        ledger.update(run.name, state="blocked", stage=run.stage, after=run.after)
        return True
    if full is not None:
        log(f"{label}: left for the next call ({full})")
        states[run.name] = "pending"
        return True
    return False


def _compared(result: SweepResult) -> SweepResult:
    """``result`` with the comparison of every run that finished an epoch, written into the
    sweep folder (``compare.md``, ``compare.csv``, ``compare.png``)."""
    root = Path(result.out)
    done = [root / RUNS_DIR / r.name for r in result.runs
            if (root / RUNS_DIR / r.name / "metrics.jsonl").exists()]
    if done:
        from dataprep.train.compare import compare

        result.compared = compare(done, root)
    return result


# -- the command -----------------------------------------------------------------------------


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/3"`` -> ``(2, 3)``: the second of every three run groups."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UsageError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 1/4")
    return int(m.group(1)), int(m.group(2))


@click.command("sweep")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Sweep folder: runs/<name>/ (one train run folder each), sweep.json, "
                   "compare.md/csv/png.")
@click.option("--dry-run", is_flag=True,
              help="List the runs and their commands, time --probe-steps steps of the first "
                   "run to train and estimate the whole sweep; trains nothing.")
@click.option("--probe-steps", type=click.IntRange(min=0), default=5, show_default=True,
              help="Training steps the --dry-run probe times (0: no probe, no estimate).")
@click.option("--shard", default=None, metavar="I/N",
              help="Run only every N-th run group, starting with the I-th (1-based); a "
                   "second stage stays with its first. For several machines.")
@click.option("--max-runs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Start at most N runs this time; the next call goes on.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes per run (torchrun --standalone --nproc_per_node N): all the "
                   "GPUs of this machine for each run in turn.")
@click.option("--devices", default=None, metavar="LIST",
              help="CUDA_VISIBLE_DEVICES of every run, e.g. 0,1 (with --nproc 2).")
@click.option("--quiet", is_flag=True, help="Do not echo each run's output (RUN/train.log "
                                            "has it).")
def sweep_cmd(spec: str, out: str, dry_run: bool, probe_steps: int, shard: str | None,
              max_runs: int | None, nproc: int, devices: str | None, quiet: bool) -> None:
    """Train every run a SPEC.toml describes, one after another, then compare them.

    SPEC: [base] flags every run shares (train's flag names, dashes or underscores; data =
    train's DATA); [grid] lists, one run per combination; [[variant]] named runs (name = ...
    plus overrides); [then] (or [variant.then]) a second stage that starts from the first
    stage's best.pt, e.g. Adam, then SGD. Every key and value is checked against `dataprep
    train` before anything runs.

    \b
      [base]
      data = "shards"
      model = "resnet18"
      epochs = 5
      [grid]
      optimizer = ["sgd", "adam"]
      lr = [0.01, 0.001]

    \b
      dataprep sweep spec.toml -o sweeps/opt --dry-run     # runs, commands, estimated time
      dataprep sweep spec.toml -o sweeps/opt               # train; rerun to resume
      dataprep compare sweeps/opt -o sweeps/opt            # the table again

    Each run is an ordinary run folder SWEEP/runs/<name> (optimizer=adam,lr=0.001; a
    variant's name; <name>+then). A rerun skips finished runs, resumes an interrupted one
    (train --resume) and refuses a run whose flags the SPEC changed or whose data folder
    now holds other data (other shards, classes or val count). At the end, compare
    writes SWEEP/compare.md, compare.csv and compare.png.

    Several machines: give each the same SPEC and --shard I/N (I = 1..N), with a shared -o or
    one -o each; when all are done, `dataprep compare` over every SWEEP/runs/* folder (or the
    shared SWEEP) makes one table.
    """
    try:
        result = sweep(spec, out, dry_run=dry_run, shard=parse_shard(shard), max_runs=max_runs,
                       nproc=nproc, devices=devices, probe_steps=probe_steps, echo=not quiet,
                       log=lambda line: click.echo(line, err=True))
    except (DataprepError, OSError) as exc:
        if (message := cli_message(exc)) is None:
            raise
        raise click.ClickException(message) from exc
    if dry_run:
        return
    if result.compared is not None:
        click.echo("\n".join(result.compared.lines()))
        click.echo(f"comparison: {out}/compare.md, compare.csv, compare.png")
    pending = [n for n, s in result.states.items() if s == "pending"]
    if pending:
        click.echo(f"{len(pending)} run(s) left: run the same command again to go on")
    if result.failed:
        raise click.ClickException(f"{len(result.failed)} run(s) did not finish: "
                                   f"{', '.join(result.failed)} (see each RUN/{LOG_NAME})")
