"""Disk budget before writing, and running out of space while writing.

The disk-full test mounts a small tmpfs in a private mount namespace (``unshare -m``), fills it
from another process while dataprep writes, then frees the space and reruns the command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataprep.cli import cli

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "examples" / "photos"


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["tencrop", str(PHOTOS), "-o", str(out), "--dry-run",
                                      "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "plan: 28 records -> about 280 samples" in result.output
    assert "free at" in result.output and "nothing was written" in result.output
    assert not out.exists()


def test_estimate_over_max_disk_is_refused_before_writing(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["tencrop", str(PHOTOS), "-o", str(out),
                                      "--max-disk", "1MB", "--jobs", "1"])
    assert result.exit_code == 1
    assert "--max-disk 1.0 MB" in result.output and "--views lazy" in result.output
    assert "nothing was written" in result.output
    assert not out.exists()


def test_estimate_is_close_to_the_bytes_written(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["tencrop", str(PHOTOS), "-o", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    ledger = json.loads((out / "dataprep.json").read_text())["splits"]["train"]
    written = sum(s["bytes"] for s in ledger["shards"])
    line = next(x for x in result.output.splitlines() if x.startswith("plan:"))
    estimate_mb = float(line.split("about ")[2].split(" MB")[0])
    assert abs(estimate_mb * 1e6 - written) / written < 0.35, (line, written)


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs unshare -m and mount (root or user namespaces)")
@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_disk_full_mid_run_stops_cleanly_and_resumes_once_space_is_free(fmt, tmp_path):
    reference = tmp_path / "reference"
    args = ["tencrop", str(PHOTOS), "--short-side", "160", "--crop", "128", "--exact",
            "--image-format", "png", "--max-count", "10", "--jobs", "1", "--format", fmt]
    # the run is well under way: a second shard finished, or the LMDB past its first commits
    started = ("os.path.exists(os.path.join(out, 'train-000001.tar'))" if fmt == "webdataset"
               else "os.path.getsize(os.path.join(out, '.dataprep-tmp', 'train', 'train.lmdb', "
                    "'data.mdb')) > 1 << 20 if os.path.exists(os.path.join(out, '.dataprep-tmp', "
                    "'train', 'train.lmdb', 'data.mdb')) else False")
    ref = subprocess.run([sys.executable, "-m", "dataprep", *args, "-o", str(reference)],
                         capture_output=True, text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    mnt, keep = tmp_path / "mnt", tmp_path / "kept"
    mnt.mkdir()
    script = textwrap.dedent(f"""
        import os, subprocess, sys, time
        mnt, out = {str(mnt)!r}, {str(mnt / "out")!r}
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt], check=True)
        cmd = [sys.executable, "-m", "dataprep", *{args!r}, "-o", out]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not ({started}):
            assert proc.poll() is None, "finished before the disk could be filled"
            time.sleep(0.01)
        with open(os.path.join(mnt, "filler"), "wb") as f:  # another program fills the disk
            try:
                while True:
                    f.write(b"\\0" * 65536)
                    f.flush()
            except OSError:
                pass
        _, err = proc.communicate(timeout=120)
        print("FIRST", proc.returncode, err.replace("\\n", " "))
        names = sorted(os.listdir(out))
        print("AFTER", " ".join(names))
        subprocess.run(["cp", "-r", out, {str(keep / "after_failure")!r}], check=True)
        os.remove(os.path.join(mnt, "filler"))  # space is free again
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        print("SECOND", again.returncode, again.stdout.replace("\\n", " "))
        subprocess.run(["cp", "-r", out, {str(keep / "final")!r}], check=True)
    """)
    keep.mkdir()
    run = subprocess.run(["unshare", "-m", sys.executable, "-c", script], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = {line.split(" ", 1)[0]: line for line in run.stdout.splitlines()}
    first = lines["FIRST"]
    assert not first.startswith("FIRST 0"), first
    assert "no space left" in first and "run the same command again to resume" in first
    assert "Traceback" not in first
    after = keep / "after_failure"
    assert not [p for p in after.iterdir() if p.name.endswith(".tmp")]  # no partial shard
    assert not (after / "train.lmdb").exists()  # an LMDB is in place only when complete
    for tar in sorted(after.glob("*.tar")):  # whatever looks finished is whole
        assert tar.read_bytes() == (reference / tar.name).read_bytes()
    assert lines["SECOND"].startswith("SECOND 0"), lines["SECOND"]
    assert "resumed after" in lines["SECOND"]
    final = keep / "final"
    done = sorted(p.relative_to(reference) for p in reference.rglob("*") if p.is_file()
                  and p.suffix in (".tar", ".mdb"))
    assert done and done == sorted(p.relative_to(final) for p in final.rglob("*")
                                   if p.is_file() and p.suffix in (".tar", ".mdb"))
    for name in done:
        assert (final / name).read_bytes() == (reference / name).read_bytes(), name
