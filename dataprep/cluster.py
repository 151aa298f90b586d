"""Dask and Ray backends: the same record-chunk tasks on the workers of a cluster.

Results are consumed in input order by the caller (the runner), so the output is byte-identical
to a local run whatever the backend.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from dataprep.errors import UsageError, require
from dataprep.pool import resolve_jobs

BACKENDS = ("loky", "dask", "ray")
_cluster: dict[str, Any] = {"backend": "loky", "workers": None, "client": None}


@contextmanager
def cluster(backend: str = "loky", address: str | None = None,
            jobs: int | None = None) -> Iterator[None]:
    """Run the jobs started inside on ``backend``: local processes (loky), or the workers of a
    Dask or Ray cluster at ``address`` (a local one is started when no address is given).

    The tasks are the same record chunks whatever the backend, and their results are consumed
    in input order, so the output is byte-identical to a local run.
    """
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    previous = dict(_cluster)  # a cluster entered inside another gives it back after
    stack = ExitStack()
    try:
        if backend == "loky":
            _cluster.update(backend="loky", workers=None, client=None)
        else:
            try:
                client, workers = _connect(backend, address, jobs, stack)
            except (ConnectionError, OSError, TimeoutError) as exc:
                raise UsageError(f"cannot reach the {backend} cluster at "
                                 f"{address or 'localhost'}: {exc}; check "
                                 "--scheduler/--address") from exc
            _cluster.update(backend=backend, workers=workers, client=client)
        yield
    finally:
        _cluster.update(previous)
        stack.close()


def _connect(backend: str, address: str | None, jobs: int | None,
             stack: ExitStack) -> tuple[Any, int]:
    """(client, worker count) for a Dask or Ray cluster; cleanups go on ``stack``."""
    if backend == "dask":
        distributed = require("distributed", "dist")
        client = (distributed.Client(address) if address else
                  distributed.Client(n_workers=resolve_jobs(jobs), threads_per_worker=1,
                                     processes=True, dashboard_address=None))
        stack.callback(client.close)
        workers = sum(client.nthreads().values())
    else:
        ray = require("ray", "dist")
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=None if address else resolve_jobs(jobs),
                     include_dashboard=False, logging_level="ERROR")
            stack.callback(ray.shutdown)
        client = ray
        workers = int(ray.cluster_resources().get("CPU", 1))
    return client, workers


def active() -> tuple[str, int | None]:
    """(backend, number of cluster workers) of the :func:`cluster` in force."""
    return _cluster["backend"], _cluster["workers"]


def map_cluster(func: Callable, task: Any, chunks: Iterable[list], window: int) -> Iterator:
    """``(chunk, func(task, chunk))`` computed on the active cluster, at most ``window`` chunks
    in flight, in input order."""
    backend, client = _cluster["backend"], _cluster["client"]
    # the task is sent to the cluster once, and each chunk refers to it
    if backend == "dask":
        shared = client.scatter(task, broadcast=True, hash=False)
        return ordered_window(lambda c: client.submit(func, shared, c, pure=False),
                              lambda f: f.result(), chunks, window)
    remote, shared = client.remote(func), client.put(task)
    return ordered_window(lambda c: remote.remote(shared, c), client.get, chunks, window)


def ordered_window(submit: Callable, get: Callable, chunks: Iterable[list],
                   window: int) -> Iterator:
    """Submit chunks, keep at most ``window`` submitted and not yet consumed, yield
    ``(chunk, result)`` in input order. Results a slow consumer has not taken yet count against
    the window, so memory stays bounded whatever the speed of the writer."""
    pending: deque = deque()
    for chunk in chunks:
        pending.append((chunk, submit(chunk)))
        if len(pending) >= window:
            done, future = pending.popleft()
            yield done, get(future)
    while pending:
        done, future = pending.popleft()
        yield done, get(future)
