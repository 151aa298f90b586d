"""``--pretrained`` where the weights cannot be downloaded: one line that says what to do
instead (``--weights FILE``, ``make weights``), exit 1, and no empty run folder left behind.
The download fails for real: an empty TORCH_HOME (nothing cached) and a proxy that refuses
every connection, so the test means the same with or without network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: connection refused


def offline_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "torch-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[key] = DEAD_PROXY
    return {**env, "TORCH_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def train(tmp_path: Path, shards: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dataprep", "train", str(shards), "-o", str(out),
         "--model", "mobilenet_v2", "--pretrained", "--epochs", "1", "--img-size", "32",
         "--device", "cpu", "--workers", "0", "--batch-size", "8"],
        capture_output=True, text=True, timeout=300, env=offline_env(tmp_path))


@pytest.mark.parametrize("existing", [False, True])
def test_pretrained_without_network_is_one_line_and_leaves_no_run_folder(shards, tmp_path,
                                                                          existing):
    out = tmp_path / "runs" / "ft"
    if existing:
        out.mkdir(parents=True)
    result = train(tmp_path, shards, out)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    assert "--pretrained" in errors[0] and "could not download" in errors[0]
    assert "--weights FILE" in errors[0] and "make weights" in errors[0]
    assert out.is_dir() == existing  # a folder the user made stays; one dataprep made goes
    if existing:
        assert not any(out.iterdir())
    assert not list((tmp_path / "torch-home").rglob("*.pth"))
