"""The local worker pool: how many workers, and the processes themselves.

On Linux the workers are forked from the (single-threaded) main process, so they start in
milliseconds with every module imported; elsewhere, or with ``DATAPREP_POOL=loky``, joblib's
loky pool. Each worker dies with its parent and ignores Ctrl-C (the parent stops the run).
:func:`stop_local` is the interrupt path: pending chunks cancelled, running ones given a grace
period. :mod:`dataprep.runner` hands chunks to this pool (or to a cluster's workers).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


MAX_JOBS_PER_CORE = 4  # more local workers than this only add memory and start-up


def resolve_jobs(jobs: int | None) -> int:
    """Worker processes for ``--jobs``: 0 or None all cores, negative joblib's rule, and at
    most ``MAX_JOBS_PER_CORE`` a core (a typo like -j 1000000 must not fork a million)."""
    if jobs is None or jobs == 0:
        return default_jobs()
    if jobs < 0:  # joblib convention: -1 = all cores
        return max(1, default_jobs() + 1 + jobs)
    return min(jobs, MAX_JOBS_PER_CORE * default_jobs())


_forked: dict[int, Any] = {}  # jobs -> the process pool forked for them (one at a time)


_loky: list[Any] = []  # the loky executor handed out last, stopped with the forked one


_forked_exit: list[bool] = []  # the exit hook is registered


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that created it exits (the parent's
    main thread: see :func:`local_executor`). Best effort: elsewhere, or if ``prctl`` is
    refused, the check in :func:`init_worker` and the pool's own shutdown remain."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        pass


def init_worker(parent: int) -> None:
    """First thing a local worker runs: it dies with ``parent`` (its pid, taken before the
    fork), also when the parent was already gone before the death signal was armed; it
    ignores SIGINT (a Ctrl-C reaches the whole process group: the parent stops the run and
    the pool, no traceback per worker) and takes SIGTERM's default action (a forked worker
    would otherwise inherit the CLI's handler, which raises)."""
    import signal

    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def shutdown_local() -> None:
    """Stop the local worker pool (at exit, or to free its processes); pending chunks are
    cancelled, running ones finish."""
    import gc

    for pool in _forked.values():
        pool.shutdown(wait=True, cancel_futures=True)
    if _forked:
        gc.unfreeze()  # what local_executor froze for the fork is collectable again
    _forked.clear()


def _stop_forked(pool: Any, grace: float) -> bool:
    """Cancel the pool's pending chunks and give the running ones ``grace`` seconds (workers
    are not killed at once: one killed while sending its result leaves a partial message
    that the pool's reader thread then waits on forever). False, with the workers killed,
    when they did not stop in time."""
    thread, processes = pool._executor_manager_thread, dict(pool._processes or {})
    pool.shutdown(wait=False, cancel_futures=True)
    if thread is not None:
        thread.join(grace)
    if thread is None or not thread.is_alive():
        return True
    for process in processes.values():
        process.kill()
    return False


def stop_local(grace: float) -> bool:
    """Stop the local pool of an interrupted run within about ``grace`` seconds. False when
    a thread of the pool may still be blocked: the caller must then leave with ``os._exit``
    (a normal exit would join that thread); the workers are dead either way."""
    import gc

    stopped = all([_stop_forked(pool, grace) for pool in _forked.values()])
    if _forked:
        gc.unfreeze()
    _forked.clear()
    if _loky:
        stopped = _stop_loky(_loky.pop(), grace) and stopped
    return stopped


def _stop_loky(executor: Any, grace: float) -> bool:
    """Kill a loky pool's workers (loky's own way) and give its thread ``grace`` seconds to
    end. Loky's kill drops the pending work items but not their ids still queued, on which
    its thread then fails with a KeyError traceback: those ids are taken out first (nothing
    is submitted any more)."""
    import queue

    ids, thread = getattr(executor, "_work_ids", None), executor._executor_manager_thread
    while ids is not None:
        try:
            ids.get_nowait()
        except queue.Empty:
            break
    executor.shutdown(wait=False, kill_workers=True)
    if thread is not None:
        thread.join(grace)
    return thread is None or not thread.is_alive()


def _fork_pool(jobs: int) -> Any:
    """A pool of ``jobs`` processes forked now, all of them, from this (the main) thread:
    Python 3.11 forks them all at the first submit, from the submitting thread, and never
    replaces one (a lost worker breaks the pool), so the thread whose exit sends the
    workers' death signal is the main thread, which exits only with the process."""
    import gc
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # the objects alive now are shared with the workers page by page: left out of every
    # later cyclic collection (here and there), they stay shared instead of being copied
    # into each worker as collections touch them (the gc module's advice for fork)
    gc.collect()
    gc.freeze()
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                               initializer=init_worker, initargs=(os.getpid(),))
    pool.submit(int).result()  # fork the workers now, from this frozen state
    return pool


def local_executor(jobs: int) -> Any:
    """The worker pool of this machine, kept for later jobs in this process.

    On Linux, from a single-threaded parent: a pool of forked processes, which inherit the
    imported modules and start in milliseconds (joblib's loky pool starts fresh interpreters:
    about 0.6 s for two workers here, a sixth of a 4-second run). Elsewhere, from a parent
    that already runs threads (forking those is unsafe), or with ``DATAPREP_POOL=loky``:
    joblib's reusable loky pool, the one ``joblib.Parallel`` itself shares. Either way each
    worker runs :func:`init_worker` first: it dies with the parent.
    """
    import threading

    fork = sys.platform.startswith("linux") and os.environ.get("DATAPREP_POOL", "fork") == "fork"
    pool = _forked.get(jobs)
    if fork and pool is not None and not getattr(pool, "_broken", False):
        return pool
    shutdown_local()  # another size, broken, or not wanted: its threads end before any fork
    if (fork and threading.active_count() == 1
            and threading.current_thread() is threading.main_thread()):
        pool = _fork_pool(jobs)
        if not _forked_exit:
            import atexit

            atexit.register(shutdown_local)  # while the modules it needs are still there
            _forked_exit.append(True)
        _forked[jobs] = pool
        return pool
    from joblib.executor import get_memmapping_executor

    executor = get_memmapping_executor(jobs, initializer=init_worker, initargs=(os.getpid(),))
    _loky[:] = [executor]
    return executor
