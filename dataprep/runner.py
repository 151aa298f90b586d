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
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice, tee
from pathlib import Path
from typing import Any

from dataprep.cluster import active, map_cluster, ordered_window
from dataprep.errors import DiskFullError, ImageError, WorkerError
from dataprep.io.tarpack import PackedGroup, image_bytes
from dataprep.options import RunOptions
from dataprep.pool import local_executor, resolve_jobs, shutdown_local
from dataprep.records import Record, Sample
from dataprep.report import Report

# a record's samples; for WebDataset output packed as tar members by the worker
Group = list[Sample] | PackedGroup
Task = Callable[[Record], Group]
ChunkResult = list[tuple[Group | None, str | None]]








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


















def prestart(jobs: int | None) -> None:
    """Start the local worker pool now, before the records are listed, when the run will use
    it: forked from a smaller parent, the workers share fewer pages that the parent then
    writes to (each such write copies a page)."""
    n = resolve_jobs(jobs)
    if n > 1 and active()[0] == "loky":
        local_executor(n)






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


@dataclass(frozen=True)
class Resume:
    """Where a run picks up: records of a split before ``after[split]`` were written by an
    interrupted run, ``skip_splits`` are complete; ``precomputed`` maps record indices to
    results computed already (by the size estimate)."""

    after: dict[str, int] = field(default_factory=dict)
    skip_splits: frozenset[str] = frozenset()
    precomputed: dict[int, tuple[list[Sample] | None, str | None]] = field(default_factory=dict)

    def is_done(self, index: int, record: Record) -> bool:
        split = record.split or "train"
        return split in self.skip_splits or index < self.after.get(split, 0)


def execute(command: str, records: Iterable[Record], task: Task,
            open_split: Callable[[str], Any], out_dir: str | Path,
            options: RunOptions | None = None, *, total: int | None = None,
            resume: Resume | None = None, progress: bool | None = None) -> Report:
    """Run ``task`` over ``records`` and stream each split's samples into its sink.

    ``open_split(split)`` gives the sink of a split (a :class:`dataprep.jobs.output.SplitOutput`:
    it writes, checkpoints and commits). ``resume`` says which records not to process again.
    On any exception every sink is aborted (unfinished shards dropped, finished ones kept)
    before it propagates; running out of disk space raises :class:`DiskFullError`.
    """
    from tqdm import tqdm

    options, resume = options or RunOptions(), resume or Resume()
    n_jobs = resolve_jobs(options.jobs)
    sinks = _Sinks(open_split)
    remaining = None if total is None else total - sum(resume.after.values())
    start = time.perf_counter()
    bar = tqdm(total=remaining, unit="img", desc=command, file=sys.stderr, leave=False,
               disable=None if progress is None else not progress)
    try:
        end = 0
        for index, record, samples, error in ordered_results(
                task, records, n_jobs, remaining, resume.is_done, resume.precomputed):
            bar.update(1)
            sinks.take(record, samples, error, index, options.on_error)
            end = index + 1
        sinks.finish(end, resume.after)
    except BaseException as exc:
        sinks.abort()
        if _disk_full(exc):
            raise DiskFullError(
                f"no space left while writing {out_dir} ({getattr(exc, 'strerror', exc)}); "
                "finished shards are kept and the unfinished one removed: free some space (or "
                "choose another -o) and run the same command again to resume"
            ) from exc
        raise
    finally:
        bar.close()
    return _report(command, str(out_dir), n_jobs, sinks.open, time.perf_counter() - start)


class _Sinks:
    """The sinks of a run's splits, opened as their first record arrives."""

    def __init__(self, open_split: Callable[[str], Any]) -> None:
        self.open_split, self.open = open_split, {}

    def __getitem__(self, split: str) -> Any:
        if split not in self.open:
            self.open[split] = self.open_split(split)
        return self.open[split]

    def take(self, record: Record, samples: Group | None, error: str | None, index: int,
             on_error: str) -> None:
        """One record's result: its samples into its split, or its error listed (raised
        under ``on_error="raise"``)."""
        split = record.split or "train"
        if error is not None:
            if on_error == "raise":
                raise ImageError(error)
            self[split].skip({"key": record.key, "path": record.path, "split": split,
                              "reason": error})
        else:
            assert samples is not None
            self[split].add(index, samples, image_bytes(samples))

    def finish(self, end: int, resumed: dict[str, int]) -> None:
        for split in resumed:
            self[split]  # resumed with nothing left to add: finish what was there
        for sink in self.open.values():
            sink.finish(end)

    def abort(self) -> None:
        for sink in self.open.values():
            sink.abort()


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
    kept = [s.kept_bytes for s in sinks.values()]
    report.kept_bytes = None if None in kept else sum(kept)
    report.skipped = len(report.errors)
    return report
