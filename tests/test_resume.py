"""Killed at random moments with SIGKILL, a rerun of the same command finishes the job and the
output equals an uninterrupted run: byte-identical tars, the same LMDB keys and values, no
duplicates, no losses, no temporary files left."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "examples" / "photos"


def dataprep(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataprep", *args], capture_output=True,
                          text=True, timeout=120, **kwargs)


def start(*args: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dataprep", *args], stdout=stdout,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker processes
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def tree(path: Path) -> dict[str, bytes]:
    """Every output file (the ledgers name the folder and the command line: compared apart)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name not in ("dataprep.json", "_info.json")}


def info_splits(path: Path) -> dict:
    return json.loads((path / "_info.json").read_text())["splits"]


def lmdb_items(path: Path) -> dict[bytes, bytes]:
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = dict(txn.cursor())
    env.close()
    return items


ARGS = ["--short-side", "160", "--crop", "128", "--exact", "--image-format", "png", "--jobs", "2"]


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_sigkill_at_random_moments_then_rerun_equals_uninterrupted(fmt, tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    extra = ["--max-count", "20"] if fmt == "webdataset" else []
    done = dataprep("tencrop", str(PHOTOS), "-o", str(reference), "--format", fmt, *ARGS, *extra)
    assert done.returncode == 0, done.stderr
    args = ["tencrop", str(PHOTOS), "-o", str(resumed), "--format", fmt, *ARGS, *extra]
    # first kill: once a checkpoint is surely durable, so the rerun must resume (a tar shard
    # is recovered from its journal line; an LMDB commit follows its line, so wait for the next)
    journal = resumed / ".journal-train.jsonl"
    lines = 2 if fmt == "webdataset" else 3
    proc = start(*args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= lines:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before its first checkpoint"
    kill_group(proc)
    # then kills at random moments (bounded: a few, each within a couple of seconds); on a fast
    # machine a run may finish its work before the kill comes
    rng = random.Random(7)
    logs = []
    for i in range(3):
        logs.append(tmp_path / f"run{i}.out")
        with logs[-1].open("w") as out:
            proc = start(*args, stdout=out)
            time.sleep(rng.uniform(0.5, 2.0))
            kill_group(proc)
    final = dataprep(*args)
    assert final.returncode == 0, final.stderr
    outputs = [log.read_text() for log in logs] + [final.stdout]
    # the run that did the last of the work (a journal was always there) reports the resume
    worked = [o for o in outputs if "records in ->" in o and "already complete" not in o]
    assert len(worked) <= 1
    if worked:  # else that run was killed after finishing but before printing its summary
        assert "resumed after" in worked[0]
    if not worked or worked[0] is not outputs[-1]:  # an interrupted run finished the work
        assert "already complete" in final.stdout
    left = [p.name for p in resumed.rglob("*") if p.name.endswith(".tmp") or
            p.name.startswith(".journal")]
    assert left == []
    if fmt == "webdataset":
        assert tree(resumed) == tree(reference)
        assert info_splits(resumed) == info_splits(reference)
    else:
        ref, got = lmdb_items(reference / "train.lmdb"), lmdb_items(resumed / "train.lmdb")
        assert got.keys() == ref.keys()
        assert got == ref
        assert int(got[b"__len__"]) == 280
    ledger = json.loads((resumed / "dataprep.json").read_text())["splits"]["train"]
    assert ledger["records_in"] == 28 and ledger["samples_out"] == 280 and ledger["skipped"] == 0


def test_rerun_of_a_complete_output_skips_it_and_other_parameters_are_refused(tmp_path):
    out = tmp_path / "out"
    args = ["resize", str(PHOTOS), "-o", str(out), "--short-side", "64", "--jobs", "1"]
    assert dataprep(*args).returncode == 0
    before = tree(out)
    again = dataprep(*args)
    assert again.returncode == 0
    assert "already complete" in again.stdout
    assert "nothing to do" in again.stdout and "plan:" not in again.stdout + again.stderr
    assert tree(out) == before
    other = dataprep(*args[:-4], "--short-side", "65", "--jobs", "1")
    assert other.returncode != 0
    assert "--overwrite" in other.stderr and "Traceback" not in other.stderr
    forced = dataprep(*args[:-4], "--short-side", "65", "--jobs", "1", "--overwrite")
    assert forced.returncode == 0
    assert tree(out) != before


def test_a_damaged_finished_shard_is_written_again(tmp_path):
    out = tmp_path / "out"
    args = ["resize", str(PHOTOS), "-o", str(out), "--short-side", "64", "--max-count", "5",
            "--jobs", "1"]
    assert dataprep(*args).returncode == 0
    before = tree(out)
    shard = out / "train-000002.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    again = dataprep(*args)
    assert again.returncode == 0, again.stderr
    assert tree(out) == before


def test_a_resumed_run_compares_its_estimate_with_the_shards_it_wrote():
    """The estimate of a resumed run covers the part left to write: it is compared with the
    shards written now, not with those the interrupted run kept."""
    from dataprep.io.writers import ShardInfo
    from dataprep.report import Report

    shards = {"train": [ShardInfo("train-000000.tar", 10, 9_000_000, ""),
                        ShardInfo("train-000001.tar", 10, 1_000_000, "")]}
    fresh = Report("tencrop", "out", records_in=20, samples_out=20, shards=shards,
                   estimated_bytes=1_100_000, kept_bytes=9_000_000, resumed={"train": 10})
    line = next(x for x in fresh.lines() if "estimated" in x)
    assert "the shards written now take 1.0 MB" in line and "(+10%)" in line
    whole = Report("tencrop", "out", records_in=20, samples_out=20, shards=shards,
                   estimated_bytes=11_000_000)
    assert "the shards take 10.0 MB" in next(x for x in whole.lines() if "estimated" in x)
    lmdb = Report("tencrop", "out", records_in=20, samples_out=20, shards=shards,
                  estimated_bytes=1_000_000, kept_bytes=None, resumed={"train": 10})
    line = next(x for x in lmdb.lines() if "estimated" in x)
    assert "for the part left to write" in line and "%" not in line
