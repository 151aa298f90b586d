"""Two dataprep runs on one -o at once: the second is refused with the first's pid (never two
writers), and what is left is a whole, verified output."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
PHOTOS = REPO / "examples" / "photos"
SLOW = ["--short-side", "160", "--crop", "128", "--exact", "--image-format", "png",
        "--jobs", "1"]


def start(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dataprep", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=180)
    assert "Traceback" not in out + err, out + err
    return proc.returncode, out + err


def wait_for_lock(out: Path, proc: subprocess.Popen) -> str:
    """The pid the lock file names once ``proc`` holds the folder's lock."""
    lock = out / ".dataprep.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip():
            return lock.read_text().strip()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("the first run never took the lock")


def verify(out: Path) -> tuple[int, str]:
    return finish(start("verify", out, "--jobs", "1"))


def photos_times(n: int, root: Path) -> Path:
    """The bundled photos ``n`` times over (``copy{i}_<name>``): a run long enough for two more
    processes to start and be refused while it holds the lock, on a loaded machine too."""
    import shutil

    for path in PHOTOS.rglob("*"):
        if path.is_file() and path.suffix != ".tsv":
            for i in range(n):
                dest = root / path.parent.relative_to(PHOTOS) / f"copy{i}_{path.name}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
    return root


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb", "folder"])
def test_a_second_run_is_refused_while_the_first_holds_the_folder(fmt, tmp_path):
    out = tmp_path / "out"
    copies = 4
    args = ["tencrop", photos_times(copies, tmp_path / "photos"), "-o", out, "--format", fmt,
            *SLOW]
    first = start(*args)
    pid = wait_for_lock(out, first)
    assert pid == str(first.pid)
    code, output = finish(start(*args))
    assert code == 1
    assert f"another dataprep run (pid {pid}) is writing to {out}" in output
    code, output = verify(out)
    assert code == 1 and f"pid {pid}" in output  # verify does not read a folder being written
    code, output = finish(first)
    assert code == 0, output
    assert verify(out)[0] == 0
    ledger = json.loads((out / "dataprep.json").read_text())["splits"]["train"]
    assert ledger["samples_out"] == 280 * copies
    assert not (out / ".dataprep.lock").read_text()  # no holder now


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_identical_runs_started_together_leave_one_whole_output(fmt, tmp_path):
    out = tmp_path / "out"
    args = ["tencrop", PHOTOS, "-o", out, "--format", fmt, "--short-side", "64", "--crop",
            "48", "--jobs", "1"]
    results = [finish(p) for p in [start(*args), start(*args)]]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 1]), results
    if codes == [0, 1]:
        assert "another dataprep run" in next(o for c, o in results if c == 1)
    else:  # one ran after the other had finished
        assert any("already complete" in o for _, o in results), results
    assert verify(out)[0] == 0
    ledger = json.loads((out / "dataprep.json").read_text())["splits"]["train"]
    assert ledger["samples_out"] == 280


def test_the_tour_run_at_once_keeps_both_splits(tmp_path):
    """tencrop of train and resize of val into one -o, started together (the README's tour)."""
    splits, out = tmp_path / "splits", tmp_path / "shards"
    code, output = finish(start("split", PHOTOS, "-o", splits, "--ratio", "0.8"))
    assert code == 0, output
    train = ["tencrop", splits / "train.jsonl", "-o", out, *SLOW]
    val = ["resize", splits / "val.jsonl", "-o", out, "--short-side", "64", "--jobs", "1"]
    first = start(*train)
    wait_for_lock(out, first)
    code, output = finish(start(*val))
    assert code == 1 and "another dataprep run" in output
    assert finish(first)[0] == 0
    code, output = finish(start(*val))  # once the first is done, the second goes through
    assert code == 0, output
    assert verify(out)[0] == 0
    ledger = json.loads((out / "dataprep.json").read_text())["splits"]
    assert sorted(ledger) == ["train", "val"]
    info = json.loads((out / "_info.json").read_text())["splits"]
    assert sorted(info) == ["train", "val"]
    assert finish(start(*train))[1].count("already complete") == 1
