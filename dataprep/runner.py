"""Parallel execution of a job: records -> task (in workers) -> samples -> writers (in order).

Design: records are cut into small ordered chunks; a pool of worker processes
(:func:`local_executor`: forked on Linux, joblib's loky pool elsewhere; or a Dask / Ray
cluster) runs them, and results are handed back *in input order*, so shard boundaries, order
and bytes depend only on inputs and parameters, never on ``--jobs`` or the pool. Chunks are
small enough that a few hundred images keep every core busy; memory is bounded by the chunks
in flight, not the dataset size.
Writers live in this (the parent) process, which is what LMDB's single writer needs, and they
finalize each shard atomically. Per-image failures (:class:`ImageError`) are data: counted,
listed in ``errors.jsonl``, and raised only under ``on_error="raise"``. Code bugs still crash.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice, tee
from pathlib import Path
from typing import Any

from dataprep.cluster import active, map_cluster, ordered_window
from dataprep.errors import DiskFullError, ImageError, WorkerError
from dataprep.io.writers import PackedGroup, image_bytes
from dataprep.records import Record, Sample
from dataprep.report import Report

# a record's samples; for WebDataset output packed as tar members by the worker
Group = list[Sample] | PackedGroup
Task = Callable[[Record], Group]
ChunkResult = list[tuple[Group | None, str | None]]
ON_ERROR = ("skip", "raise")


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


def run_chunk(task: Task, records: list[Record]) -> ChunkResult:
    """Worker side: apply ``task`` to each record; image failures become data, bugs propagate."""
    out: ChunkResult = []
    for record in records:
        try:
            out.append((task(record), None))
        except ImageError as exc:
            out.append((None, str(exc)))
    return out


CHUNK_MAX = 8  # records a chunk holds at most
WINDOW_PER_JOB = 8  # chunks submitted and not yet written, per worker


def chunk_size(total: int | None, jobs: int) -> int:
    """Small enough to balance ~16 chunks per worker (images differ in size a hundredfold: the
    last chunks decide how long the run waits for one worker) and to let workers run ahead of
    a slow chunk that the ordered writer waits for (see :func:`window`); large enough to
    amortize dispatch (a chunk of 8 images costs well under 1 % in hand-over)."""
    if total is None:
        return CHUNK_MAX
    return max(1, min(CHUNK_MAX, total // (jobs * 16) or 1))


def window(jobs: int) -> int:
    """Chunks in flight: results are written in input order, so while the oldest chunk is still
    running the other workers go on with the next ones, up to this many chunks (about 64 records
    a worker: memory bounded by the window, not the dataset)."""
    return WINDOW_PER_JOB * jobs


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


Mapped = tuple[Record, Group | None, str | None]  # record, its samples or its error

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


def prestart(jobs: int | None) -> None:
    """Start the local worker pool now, before the records are listed, when the run will use
    it: forked from a smaller parent, the workers share fewer pages that the parent then
    writes to (each such write copies a page)."""
    n = resolve_jobs(jobs)
    if n > 1 and active()[0] == "loky":
        local_executor(n)


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


def map_records(task: Task, records: Iterable[Record], jobs: int,
                total: int | None = None) -> Iterator[Mapped]:
    """:func:`_map_records`; a worker process that dies (killed, out of memory) is a
    :class:`WorkerError` saying what to do, not a pool's traceback."""
    try:
        yield from _map_records(task, records, jobs, total)
    except Exception as exc:
        if not _worker_died(exc):
            raise
        shutdown_local()
        raise WorkerError(
            "a worker process died (killed, or out of memory?); finished shards are kept: run "
            "the same command again to resume (with fewer --jobs if memory is short)") from exc


def _map_records(task: Task, records: Iterable[Record], jobs: int,
                 total: int | None = None) -> Iterator[Mapped]:
    """Yield ``(record, samples, error)`` in input order, computed by ``jobs`` processes (or the
    workers of the active :func:`cluster`)."""
    backend, workers = active()
    on_cluster = backend != "loky"
    if on_cluster:
        jobs = workers or jobs
    size = chunk_size(total, jobs)
    if on_cluster:
        for chunk, result in map_cluster(run_chunk, task, _chunks(records, size),
                                             window(jobs)):
            yield from ((r, s, e) for r, (s, e) in zip(chunk, result, strict=True))
        return
    if jobs == 1:
        for chunk in _chunks(records, size):
            yield from ((r, s, e) for r, (s, e) in zip(chunk, run_chunk(task, chunk), strict=True))
        return
    # a bounded window of chunks rather than joblib.Parallel, which keeps dispatching while
    # results wait for the writer
    executor = local_executor(jobs)
    for chunk, result in ordered_window(lambda c: executor.submit(run_chunk, task, c),
                                        lambda f: f.result(), _chunks(records, size),
                                        window(jobs)):
        yield from ((r, s, e) for r, (s, e) in zip(chunk, result, strict=True))


def ordered_results(task: Task, records: Iterable[Record], jobs: int, total: int | None,
                    is_done: Callable[[int, Record], bool],
                    precomputed: dict[int, tuple[list[Sample] | None, str | None]],
                    ) -> Iterator[tuple[int, Record, list[Sample] | None, str | None]]:
    """``(index, record, samples, error)`` in input order for the records not ``is_done``,
    taking ``precomputed`` results as they are and computing the others in parallel."""
    feed, order = tee(records)  # the two ends stay within the workers' window of each other

    def to_compute() -> Iterator[Record]:
        for index, record in enumerate(feed):
            if index not in precomputed and not is_done(index, record):
                yield record

    computed = map_records(task, to_compute(), jobs, total)
    for index, record in enumerate(order):
        if is_done(index, record):
            continue
        if index in precomputed:
            samples, error = precomputed[index]
        else:
            _, samples, error = next(computed)
        yield index, record, samples, error


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the output's file system is full (LMDB says it in words)."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    # LMDB reports a write that found no space at commit as an I/O error
    return type(exc).__module__ == "lmdb" and any(
        word in str(exc) for word in ("No space left", "Disk quota", "File too large",
                                      "Input/output error"))


def _worker_died(exc: BaseException) -> bool:
    """Whether ``exc`` says a worker process died (killed, or out of memory)."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(exc, BrokenProcessPool) or type(exc).__name__ == "TerminatedWorkerError"


def execute(
    command: str,
    records: Iterable[Record],
    task: Task,
    open_split: Callable[[str], Any],
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    on_error: str = "skip",
    total: int | None = None,
    default_split: str = "train",
    progress: bool | None = None,
    resume_after: dict[str, int] | None = None,
    skip_splits: frozenset[str] = frozenset(),
    precomputed: dict[int, tuple[list[Sample] | None, str | None]] | None = None,
) -> Report:
    """Run ``task`` over ``records`` and stream each split's samples into its sink.

    ``open_split(split)`` gives the sink of a split (a :class:`dataprep.jobs.output.SplitOutput`:
    it writes, checkpoints and commits). Records of ``split`` before ``resume_after[split]``
    are not processed again (an interrupted run wrote them); records of ``skip_splits``
    (complete) not at all. On any exception every sink is aborted (unfinished shards dropped,
    finished ones kept) before it propagates; running out of disk space raises
    :class:`DiskFullError`. ``precomputed`` maps record indices to results already computed
    (by the size estimate), which are not computed again.
    """
    from tqdm import tqdm

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    resume_after = resume_after or {}
    n_jobs = resolve_jobs(jobs)
    sinks: dict[str, Any] = {}

    def sink_of(split: str) -> Any:
        if split not in sinks:
            sinks[split] = open_split(split)
        return sinks[split]

    def is_done(index: int, record: Record) -> bool:
        split = record.split or default_split
        return split in skip_splits or index < resume_after.get(split, 0)

    remaining = None if total is None else total - sum(resume_after.values())
    start = time.perf_counter()
    bar = tqdm(total=remaining, unit="img", desc=command, file=sys.stderr, leave=False,
               disable=None if progress is None else not progress)
    end = 0
    try:
        for index, record, samples, error in ordered_results(
                task, records, n_jobs, remaining, is_done, precomputed or {}):
            bar.update(1)
            split = record.split or default_split
            if error is not None:
                if on_error == "raise":
                    raise ImageError(error)
                sink_of(split).skip({"key": record.key, "path": record.path, "split": split,
                                     "reason": error})
            else:
                assert samples is not None
                sink_of(split).add(index, samples, image_bytes(samples))
            end = index + 1
        for split in resume_after:
            sink_of(split)  # resumed with nothing left to add: finish what was there
        for sink in sinks.values():
            sink.finish(end)
    except BaseException as exc:
        for sink in sinks.values():
            sink.abort()
        if _disk_full(exc):
            raise DiskFullError(
                f"no space left while writing {out_dir} ({getattr(exc, 'strerror', exc)}); "
                "finished shards are kept and the unfinished one removed: free some space (or "
                "choose another -o) and run the same command again to resume"
            ) from exc
        raise
    finally:
        bar.close()
    return _report(command, str(out_dir), n_jobs, sinks, time.perf_counter() - start)


def _report(command: str, out_dir: str, jobs: int, sinks: dict[str, Any],
            seconds: float) -> Report:
    report = Report(command=command, out_dir=out_dir, jobs=jobs, seconds=seconds)
    for split, sink in sorted(sinks.items()):
        c = sink.counters
        report.records[split] = c.records_in
        report.counts[split] = c.samples_out
        report.shards[split] = list(sink.files)
        report.errors += sink.errors
        if sink.resumed_after is not None:
            report.resumed[split] = sink.resumed_after
    report.records_in = sum(report.records.values())
    report.samples_out = sum(report.counts.values())
    report.bytes_written = sum(s.counters.bytes for s in sinks.values())
    report.skipped = len(report.errors)
    return report
