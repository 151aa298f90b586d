"""Two processes under torchrun (gloo on CPU) over an uneven number of shards: no hang, every
rank runs the same number of batches, validation counts every sample once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import make_shards, read_metrics

REPO = Path(__file__).resolve().parents[2]


def test_torchrun_two_ranks_uneven_shards(tmp_path):
    # 3 classes x 11 = 33 train samples in shards of 5,5,5,5,5,5,3 (7 shards for 2 ranks x 2
    # workers); 3 x 3 = 9 validation samples in shards of 5, 4 (fewer shards than workers)
    data = make_shards(tmp_path / "shards", train_per_class=11, val_per_class=3, max_count=5)
    info = json.loads((data / "_info.json").read_text())
    assert info["splits"]["train"]["shard_lengths"] == [5, 5, 5, 5, 5, 5, 3]
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "dataprep.train", "train", str(data), "-o", str(run), "--model",
           "tiny_cnn", "--img-size", "32", "--short-side", "36", "--batch-size", "4",
           "--workers", "2", "--epochs", "2", "--freeze-epochs", "1", "--lr", "0.05",
           "--device", "cpu", "--no-progress"]
    # its own session, so a hang kills torchrun *and* its ranks, and the failure shows what
    # the ranks printed up to then
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGABRT)  # PYTHONFAULTHANDLER: every process prints its stack
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        raise AssertionError(f"torchrun hung for 180 s; its output:\n{err[-8000:]}") from None
    assert proc.returncode == 0, err[-3000:]
    m = read_metrics(run)
    assert len(m) == 2
    expected = 33 // (2 * 4)  # batches per rank, computed from _info.json
    for epoch in m:
        assert epoch["batches_per_rank"] == [expected, expected]
        assert epoch["train_samples"] == 2 * expected * 4
        assert epoch["val_samples"] == 9
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2
    assert [h["stage"] for h in m] == ["head", "all"]  # DDP re-wrapped at the unfreeze
