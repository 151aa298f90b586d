"""Ctrl-C in the middle of a real run: one line that says how to go on, exit 130; ``verify`` on
the folder it leaves says the run was interrupted and that the same command resumes it; the
rerun finishes and verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import PHOTOS

INTERRUPTED = "interrupted: run the same command again to resume"


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory) -> Path:
    """The example photos, eight distinct copies each (one pixel differs), as JPEG."""
    root = tmp_path_factory.mktemp("many")
    for path in sorted(PHOTOS.glob("*/*")):
        image = Image.open(path).convert("RGB")
        image.thumbnail((640, 640))
        (root / path.parent.name).mkdir(exist_ok=True)
        for i in range(8):
            image.putpixel((0, 0), (i * 30, 0, 0))
            image.save(root / path.parent.name / f"{path.stem}_{i}.jpg", quality=90)
    return root


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # even if pytest runs with SIGINT ignored


def dataprep(*args: object, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataprep", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **kw)


def test_ctrl_c_exits_130_and_verify_says_rerun_resumes(many_photos, tmp_path):
    out = tmp_path / "out"
    args = ["tencrop", many_photos, "-o", out, "-j", "1", "--max-count", "100"]
    proc = subprocess.Popen([sys.executable, "-m", "dataprep", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not (out / ".dataprep-tmp").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never staged a shard"
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the run finished before the signal could come")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == INTERRUPTED
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    assert not (out / "dataprep.json").exists()

    checked = dataprep("verify", out)
    assert checked.returncode != 0
    message = checked.stderr + checked.stdout
    assert "interrupted" in message and "run the same command again to resume" in message
    assert "has no dataprep.json" not in message
    assert "Traceback" not in message

    rerun = dataprep(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(os.listdir(out)).count("dataprep.json") == 1
    assert not (out / ".dataprep-tmp").exists()
    final = dataprep("verify", out)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "OK:" in final.stdout and "2,240 samples" in final.stdout  # 28 photos x 8 x 10 views


def test_verify_of_a_folder_dataprep_never_wrote_still_says_so(tmp_path):
    (tmp_path / "x").mkdir()
    checked = dataprep("verify", tmp_path / "x")
    assert checked.returncode != 0
    assert "has no dataprep.json" in checked.stderr
    assert "interrupted" not in checked.stderr
