"""``dataprep sweep --dry-run``: the runs and their commands, and an estimate of the whole
sweep's time from a short probe of the first run to be trained.

Importing this module is cheap (click and stdlib only).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dataprep.errors import UsageError
from dataprep.train.sweep_folder import RUNS_DIR, read_metrics
from dataprep.train.sweep_launch import Launcher, child_env, launch_command
from dataprep.train.sweep_spec import Run, Spec, train_argv


def list_and_estimate(spec: Spec, mine: list[Run], root: Path, states: dict[str, str],
                      launcher: Launcher, probe_steps: int) -> float | None:
    """List the runs; with ``probe_steps``, time that many steps (and one validation) of the
    first run to be trained and extrapolate to every remaining epoch. Returns the estimated
    seconds of the runs left (None without a probe)."""
    log, params = launcher.log, launcher.params
    todo = [r for r in mine if states[r.name] != "finished"]
    probe = _probe(todo[0], launcher, probe_steps) if todo and probe_steps else None
    total = 0.0
    log(f"{len(spec.runs)} run(s) in {spec.path}"
        + (f"; this shard: {len(mine)}" if len(mine) != len(spec.runs) else ""))
    for i, run in enumerate(spec.runs):
        state = states[run.name]
        left = run.epochs - len(read_metrics(root / RUNS_DIR / run.name))
        what = {"finished": "finished, skipped", "skipped": "another shard's",
                "interrupted": f"resume: {left} of {run.epochs} epoch(s) left",
                "new": f"{run.epochs} epoch(s)"}[state]
        line = f"{i + 1:>3}. {run.name}: {what}"
        if run.after:
            line += f", from {run.after}/best.pt"
        if probe and state in ("new", "interrupted"):
            seconds = probe.estimate(run, left)
            total += seconds
            line += f", ~{_duration(seconds)}"
        log(line)
        log(f"     dataprep train {' '.join(train_argv(run.flags, params))}")
    if probe:
        log(f"estimated {_duration(total)} in all, from {probe.steps} steps of "
            f"{todo[0].name} ({probe.per_image * 1e3:.2f} ms per training image, "
            f"{probe.val_per_image * 1e3:.2f} ms per val image, {probe.startup:.0f} s to "
            "start); runs with other models, sizes or data will differ")
    return total if probe else None


@dataclass
class Probe:
    """What a probe measured, and the time of a whole run extrapolated from it."""

    steps: int
    per_image: float  # seconds per training image
    val_per_image: float
    val_samples: int
    train_samples: int  # samples x views of the probed data, per epoch
    startup: float  # seconds from the start of the process to the first step, and the end

    def estimate(self, run: Run, epochs: int) -> float:
        batch = int(run.params.get("batch_size") or 1)
        steps = run.params.get("steps_per_epoch") or max(self.train_samples // batch, 1)
        epoch = steps * batch * self.per_image + self.val_samples * self.val_per_image
        return self.startup + max(epochs, 0) * epoch


def _probe(run: Run, launcher: Launcher, steps: int) -> Probe:
    """Train ``steps`` steps and one validation of ``run`` in a scratch folder, timed."""
    # a second stage's first-stage weights do not exist yet: the same model, initialised
    argv = train_argv(run.flags, launcher.params)
    argv += ["--epochs", "1", "--steps-per-epoch", str(steps), "--no-progress"]
    with tempfile.TemporaryDirectory(prefix="dataprep-probe-") as tmp:
        cmd = launch_command(Path(tmp) / "probe", argv, launcher.nproc)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env=child_env(launcher.devices))
        wall = time.perf_counter() - t0
        if proc.returncode:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"the probe of run {run.name} failed: {tail[0]}")
        m = read_metrics(Path(tmp) / "probe")[-1]
        cfg = json.loads((Path(tmp) / "probe" / "config.json").read_text())
    resolved = cfg.get("resolved", {})
    views = resolved.get("views_per_sample") or 1
    per_sample = views if cfg.get("lazy_views") == "expand" else 1
    val_samples = int(m.get("val_samples") or 0)
    val_seconds = float(m.get("val_seconds") or 0.0)
    return Probe(steps, m["train_seconds"] / max(m["train_samples"], 1),
                 val_seconds / max(val_samples, 1), val_samples,
                 int((resolved.get("train_samples") or 0) * per_sample),
                 max(wall - m["train_seconds"] - val_seconds, 0.0))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
