"""One run of a sweep, to its end: its ``python -m dataprep train`` process (under
``torchrun`` for several processes), its log, its ``sweep-run.json`` and its ledger entries.

Importing this module is cheap (click and stdlib only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from dataprep.train.sweep_folder import (
    LOG_NAME,
    RUN_FILE,
    RUNS_DIR,
    Ledger,
    data_identity,
    read_metrics,
    run_state,
)
from dataprep.train.sweep_spec import Run, train_argv

Log = Callable[[str], None]


def launch_command(run_dir: Path, argv: list[str], nproc: int = 1) -> list[str]:
    """The process of one run: ``python -m dataprep train ...``, under ``torchrun``
    (``torch.distributed.run --standalone``) for ``nproc`` > 1."""
    tail = ["-m", "dataprep", "train", *argv, "-o", str(run_dir)]
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(nproc), *tail]
    return [sys.executable, *tail]


def child_env(devices: str | None) -> dict[str, str]:
    """This process's environment, with ``CUDA_VISIBLE_DEVICES`` set to ``devices`` if given."""
    env = dict(os.environ)
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices
    return env


def _run_process(cmd: list[str], log_path: Path, env: dict[str, str], echo: bool) -> int:
    """Run ``cmd``, its output to ``log_path`` (appended) and, with ``echo``, to stderr.
    On an interrupt the child is stopped too (SIGINT, then SIGKILL after 30 s)."""
    from dataprep.io import durable

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    try:
        with durable.open_new(log_path, append=True) as log:
            while chunk := os.read(proc.stdout.fileno(), 1 << 16):
                log.write(chunk)
                log.flush()
                if echo:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.buffer.flush()
        return proc.wait()
    except BaseException:
        import signal

        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


@dataclass
class Launcher:
    """How every run of a sweep is started: the train command's parameters (to write each
    command line), processes per run, the CUDA devices, whether a run's output is echoed, and
    where the progress lines go."""

    params: dict[str, click.Parameter]
    nproc: int = 1
    devices: str | None = None
    echo: bool = True
    log: Log = print


def start_run(run: Run, root: Path, state: str, ledger: Ledger, launcher: Launcher,
              label: str) -> str:
    """One run, to its end; its state afterwards (``finished``, ``failed``, or ``blocked``
    when its first stage left no ``best.pt``)."""
    run_dir = root / RUNS_DIR / run.name
    argv = _run_argv(run, root, state, launcher.params)
    if argv is None:
        launcher.log(f"{label}: not started ({root / RUNS_DIR / run.after / 'best.pt'} is "
                     "missing: the first stage needs validation data to keep a best.pt)")
        ledger.update(run.name, state="blocked", stage=run.stage, after=run.after)
        return "blocked"
    _write_run_file(run, run_dir, state)
    cmd = launch_command(run_dir, argv, launcher.nproc)
    launcher.log(f"{label}: {'resuming' if state == 'interrupted' else 'training'} "
                 f"({' '.join(cmd[cmd.index('train'):])})")
    t0 = time.time()
    ledger.update(run.name, state="running", stage=run.stage, after=run.after, command=cmd,
                  started_at=t0, resumed=state == "interrupted")
    try:
        code = _run_process(cmd, run_dir / LOG_NAME, child_env(launcher.devices), launcher.echo)
    except BaseException:
        ledger.update(run.name, state="interrupted", ended_at=time.time())
        raise
    return _finish_run(run, run_dir, code, t0, ledger, label, launcher.log)


def _run_argv(run: Run, root: Path, state: str,
              params: dict[str, click.Parameter]) -> list[str] | None:
    """The run's ``train`` arguments: a second stage starts from its first stage's
    ``best.pt`` (None when there is none), an interrupted run resumes."""
    argv = train_argv(run.flags, params)
    if run.after:
        best = root / RUNS_DIR / run.after / "best.pt"
        if not best.exists():
            return None
        argv += ["--weights", str(best.resolve())]
    if state == "interrupted":
        argv.append("--resume")
    return argv


def _write_run_file(run: Run, run_dir: Path, state: str) -> None:
    """``RUN/sweep-run.json``: the run's flags and the identity of its data; a resumed run
    keeps the data identity it started on (checked equal before)."""
    from dataprep.io import durable

    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": run.name, "stage": run.stage, **run.identity,
              "data_identity": data_identity(run.flags.get("data"))}
    if state == "interrupted" and (run_dir / RUN_FILE).exists():
        try:
            record["data_identity"] = json.loads((run_dir / RUN_FILE).read_text()).get(
                "data_identity", record["data_identity"])
        except (OSError, json.JSONDecodeError):
            pass
    durable.write_atomic(run_dir / RUN_FILE, (json.dumps(record, indent=2) + "\n").encode())


def _finish_run(run: Run, run_dir: Path, code: int, t0: float, ledger: Ledger, label: str,
                log: Log) -> str:
    """Record how the run's process ended (from its metrics.jsonl) and say so."""
    history = read_metrics(run_dir)
    stopped = history[-1].get("stopped") if history else None
    ok = run_state(run, run_dir) == "finished"
    new_state = "finished" if ok else "failed"
    ledger.update(run.name, state=new_state, returncode=code, ended_at=time.time(),
                  seconds=round(time.time() - t0, 3), epochs=len(history), stopped=stopped)
    if not ok:
        log(f"{label}: failed (exit {code}); see {run_dir / LOG_NAME}")
    elif history and "val_top1" in history[-1]:
        best = max(h.get("val_top1", 0.0) for h in history)
        log(f"{label}: best val top-1 {best:.4f} after {len(history)} epoch(s)"
            f"{f' ({stopped})' if stopped else ''}")
    return new_state
