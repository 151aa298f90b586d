"""The Makefile's install commands, as ``make -n`` prints them: CPU-only torch wheels where
there is no GPU (no ``nvidia-smi``), PyPI's where there is one, ``TORCH_PINS`` wins over both;
``make weights`` runs the fetch script into models/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CPU_PINS = "--extra-index-url {} torch torchvision"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(tmp_path: Path, *args: str, gpu: bool, index: str | None = None) -> str:
    """``make -n -B ARGS`` with a PATH that has an ``nvidia-smi`` (gpu) or none; ``index``:
    the CPU-wheel index the Makefile probes (default: a local one that does not exist, so no
    test reaches the network)."""
    bin_dir = tmp_path / ("gpu" if gpu else "cpu")
    bin_dir.mkdir()
    if gpu:
        fake = bin_dir / "nvidia-smi"
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    env = {**{k: v for k, v in os.environ.items() if k != "TORCH_PINS"}, "PATH": path}
    index = index or (tmp_path / "no-index").as_uri()
    result = subprocess.run(["make", "-n", "-B", f"TORCH_CPU_INDEX={index}", *args], cwd=REPO,
                            env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def install_line(out: str) -> str:
    lines = [line for line in out.splitlines() if "pip install" in line and "[train" in line]
    assert len(lines) == 1, out
    return lines[0]


def test_no_gpu_installs_cpu_only_torch_when_the_index_answers(tmp_path):
    if any(Path(d, "nvidia-smi").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("this machine has nvidia-smi in /usr/bin")
    index = tmp_path / "cpu-index"
    index.write_text("<html></html>")
    line = install_line(dry_run(tmp_path, "test", gpu=False, index=index.as_uri()))
    assert line.endswith(CPU_PINS.format(index.as_uri()))


def test_no_gpu_and_no_answer_from_the_index_installs_pypi_torch(tmp_path):
    """A network that reaches only PyPI: pip would retry the other index for every package."""
    line = install_line(dry_run(tmp_path, "test", gpu=False))
    assert "--extra-index-url" not in line
    assert line.rstrip().endswith("'.[train,aug,dist,dev,caffe,interop]'")


def test_gpu_installs_pypi_torch(tmp_path):
    line = install_line(dry_run(tmp_path, "test", gpu=True))
    assert "download.pytorch.org" not in line
    assert line.rstrip().endswith("'.[train,aug,dist,dev,caffe,interop]'")


@pytest.mark.parametrize("gpu", [False, True])
def test_torch_pins_overrides_the_default(tmp_path, gpu):
    pins = "TORCH_PINS=torch==2.14.1 torchvision==0.29.1"
    line = install_line(dry_run(tmp_path, "test", pins, gpu=gpu))
    assert line.endswith("torch==2.14.1 torchvision==0.29.1")
    assert "download.pytorch.org" not in line


def test_make_weights_runs_the_fetch_script_into_models(tmp_path):
    out = dry_run(tmp_path, "weights", gpu=False)
    assert "benchmarks/fetch_real_images.sh" in out and "--models models" in out
    assert (REPO / "benchmarks" / "fetch_real_images.sh").is_file()
