"""The same shard tasks on a real Dask LocalCluster (two worker processes) and a real local Ray
instance, both on loopback: the output is byte-identical to the local run."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataprep.cli import cli

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "examples" / "photos"
ARGS = ["--short-side", "96", "--crop", "64", "--max-count", "60"]


def tencrop(out: Path, *extra: str):
    result = CliRunner().invoke(cli, ["tencrop", str(PHOTOS), "-o", str(out), *ARGS, *extra])
    assert result.exit_code == 0, result.output
    return result


def shards(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.glob("*.tar"))}


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("local") / "out"
    tencrop(out, "--jobs", "2")
    found = shards(out)
    assert len(found) == 5
    return found


def test_dask_local_cluster_gives_the_local_bytes(local, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        tencrop(tmp_path / "out", "--backend", "dask", "--scheduler", cluster.scheduler_address)
        with distributed.Client(cluster.scheduler_address) as client:
            assert len(client.nthreads()) == 2
    assert shards(tmp_path / "out") == local


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_local_instance_gives_the_local_bytes(local, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level="ERROR")
    try:
        result = tencrop(tmp_path / "out", "--backend", "ray")
        assert "2 jobs" in result.output  # the instance's two CPUs ran the tasks
        assert ray.is_initialized()  # an instance dataprep did not start is left running
    finally:
        ray.shutdown()
    assert shards(tmp_path / "out") == local


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    port = _free_port()
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = CliRunner().invoke(cli, ["resize", str(PHOTOS), "-o", str(tmp_path / "out"),
                                          "--backend", "dask", "--scheduler",
                                          f"tcp://127.0.0.1:{port}"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "cannot reach the dask cluster" in result.output
    assert not (tmp_path / "out").exists()


def test_a_job_naming_the_backend_in_force_runs_on_it_and_leaves_it_in_force(local, tmp_path):
    """``dataprep run`` tables (or Python calls) that name the backend already in force reuse
    its cluster; a nested cluster gives the outer one back when it ends."""
    distributed = pytest.importorskip("distributed")
    import dataprep
    from dataprep import runner
    from dataprep.cluster import active, cluster

    seen = []
    original = runner.map_cluster

    def spy(*args, **kwargs):
        seen.append(active())
        return original(*args, **kwargs)

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as local_cluster, \
            cluster("dask", local_cluster.scheduler_address):
        outer = active()
        runner.map_cluster = spy
        try:
            dataprep.tencrop(PHOTOS, tmp_path / "a", short_side=96, crop=64, max_count=60,
                             backend="dask")
            assert active() == outer and seen and all(s == outer for s in seen)
            with cluster("loky"):
                assert active() == ("loky", None)
            assert active() == outer
        finally:
            runner.map_cluster = original
    assert active() == ("loky", None)
    assert shards(tmp_path / "a") == local
