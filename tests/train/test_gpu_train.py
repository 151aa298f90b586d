"""``benchmarks/gpu_train.py``: the smoke mode runs on the CPU and prints its table; the
utilisation sampler collects readings while its block runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_train.py"


@pytest.mark.slow
def test_smoke_run_prints_the_table():
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True,
                          text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "input", "images", "seconds", "images/s", "vs synthetic", "GPU utilisation %"]
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in lines[1:]]
    assert [r[0].split()[0] for r in rows] == ["synthetic", "dataprep", "dataprep"]
    for r in rows:
        assert int(r[1]) > 0 and float(r[3]) > 0  # images seen, images/s
        assert r[5] == "n/a (no CUDA)"
    assert int(rows[0][1]) == int(rows[1][1]) == 3 * 8  # 3 timed steps of batch 8
    assert "smoke run: not a measurement" in proc.stdout


def test_utilisation_sampler_collects_while_the_block_runs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_train import sampled
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    seen: list[float] = []
    with sampled(lambda: 42.0, seen, interval_s=0.02):
        time.sleep(0.2)
    count = len(seen)
    time.sleep(0.1)
    assert count >= 3 and set(seen) == {42.0} and len(seen) == count  # stopped on exit
    with sampled(None, seen):  # nothing to read: no thread, nothing added
        pass
    assert len(seen) == count
