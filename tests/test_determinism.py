"""Same inputs and parameters => byte-identical shards, whatever ``--jobs``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataprep.jobs.shard import shard
from dataprep.jobs.tencrop import resize, tencrop


def digests(out: Path) -> dict[str, str]:
    """sha256 of every shard file (tars, LMDB data), and the splits of _info.json."""
    files = sorted(out.glob("*.tar")) + sorted(out.glob("*.lmdb/data.mdb"))
    assert files, f"no output in {out}"
    out_digests = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in files}
    if (out / "_info.json").exists():  # its "name" is the folder's name, so compare the splits
        info = json.loads((out / "_info.json").read_text())
        out_digests["_info.json"] = json.dumps(info["splits"])
    return out_digests


def ledger_shards(out: Path) -> dict[str, list[dict]]:
    ledger = json.loads((out / "dataprep.json").read_text())
    return {split: entry["shards"] for split, entry in ledger["splits"].items()}


@pytest.fixture(scope="module")
def tencrop_runs(photo_subset, tmp_path_factory):
    """The same tencrop, webdataset and LMDB, run twice with one job and once with two."""
    base = tmp_path_factory.mktemp("determinism")
    runs: dict[tuple[str, str], Path] = {}
    for fmt in ("webdataset", "lmdb"):
        for name, jobs in (("a", 1), ("b", 1), ("parallel", 2), ("loky", 2)):
            out = base / f"{fmt}-{name}"
            if name == "loky":
                os.environ["DATAPREP_POOL"] = "loky"  # joblib's pool instead of a forked one
            try:
                # small shards so several boundaries are exercised
                tencrop(photo_subset, out, short_side=72, crop=64, fmt=fmt, jobs=jobs,
                        max_count=23)
            finally:
                os.environ.pop("DATAPREP_POOL", None)
            runs[fmt, name] = out
    return runs


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_same_command_twice_gives_identical_bytes(tencrop_runs, fmt):
    a, b = tencrop_runs[fmt, "a"], tencrop_runs[fmt, "b"]
    assert digests(a) == digests(b)
    assert ledger_shards(a) == ledger_shards(b)


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
@pytest.mark.parametrize("pool", ["parallel", "loky"])
def test_jobs_do_not_change_the_bytes(tencrop_runs, fmt, pool):
    one, two = tencrop_runs[fmt, "a"], tencrop_runs[fmt, pool]
    assert digests(one) == digests(two)
    assert ledger_shards(one) == ledger_shards(two)


@pytest.mark.parametrize("setting, expected", [(None, "ProcessPoolExecutor"),
                                               ("loky", "MemmappingExecutor")])
def test_local_pool_is_forked_on_linux_unless_loky_is_asked_for(setting, expected):
    env = {k: v for k, v in os.environ.items() if k != "DATAPREP_POOL"}
    if setting:
        env["DATAPREP_POOL"] = setting
    code = ("from dataprep.pool import local_executor; a = local_executor(2); "
            "print(type(a).__name__, a is local_executor(2), a.submit(sum, [1, 2]).result())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    name = expected if sys.platform.startswith("linux") else "MemmappingExecutor"
    assert out.stdout.split() == [name, "True", "3"]


def test_the_runs_really_produced_the_expected_shards(tencrop_runs):
    out = tencrop_runs["webdataset", "a"]
    info = json.loads((out / "_info.json").read_text())["splits"]["train"]
    assert info["num_samples"] == 100  # 10 photos x 10 views
    # a record's ten views stay in one shard: 23 samples at most means two records per shard
    assert info["shard_lengths"] == [20, 20, 20, 20, 20]
    lmdb_out = tencrop_runs["lmdb", "parallel"]
    assert ledger_shards(lmdb_out)["train"][0]["num_samples"] == 100


def test_resize_and_shard_are_deterministic_too(image_folder, tmp_path):
    for i in range(2):
        resize(image_folder, tmp_path / f"r{i}", short_side=32, jobs=1, max_count=5)
        shard(image_folder, tmp_path / f"s{i}", shuffle=True, seed=3, jobs=1, max_count=5)
    assert digests(tmp_path / "r0") == digests(tmp_path / "r1")
    assert digests(tmp_path / "s0") == digests(tmp_path / "s1")


def test_shuffle_seed_changes_the_order(image_folder, tmp_path):
    from dataprep.io.readers import iter_samples

    orders = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        shard(image_folder, out, shuffle=True, seed=seed, jobs=1)
        orders.append([s.key for s in iter_samples(out)])
    plain = tmp_path / "plain"
    shard(image_folder, plain, jobs=1)
    in_order = [s.key for s in iter_samples(plain)]
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(in_order)
    assert orders[0] != orders[1] and orders[0] != in_order


def test_asking_for_loky_after_a_forked_pool_gets_loky():
    env = {k: v for k, v in os.environ.items() if k != "DATAPREP_POOL"}
    code = ("import os; from dataprep.pool import local_executor; a = local_executor(2); "
            "os.environ['DATAPREP_POOL'] = 'loky'; b = local_executor(2); "
            "print(type(a).__name__, type(b).__name__, b.submit(sum, [1, 2]).result())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    first = "ProcessPoolExecutor" if sys.platform.startswith("linux") else "MemmappingExecutor"
    assert out.stdout.split() == [first, "MemmappingExecutor", "3"]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_a_fresh_process_with_the_forked_pool_writes_the_same_bytes(tencrop_runs, photo_subset,
                                                                    tmp_path, fmt):
    # the fixture's runs share this test process, whose threads (a cluster test's, say) may
    # rule the forked pool out; a new process with two jobs always forks on Linux
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "DATAPREP_POOL"}
    done = subprocess.run([sys.executable, "-m", "dataprep", "tencrop", str(photo_subset), "-o",
                           str(out), "--short-side", "72", "--crop", "64", "--format", fmt,
                           "--max-count", "23", "--jobs", "2"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr  # exit is clean
    assert digests(out) == digests(tencrop_runs[fmt, "a"])
