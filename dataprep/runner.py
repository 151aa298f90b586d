"""Parallel execution of a job: records -> task (in workers) -> samples -> writers (in order).

Design (DESIGN 6): records are cut into small ordered chunks; joblib runs chunks in worker
processes and hands results back *in input order*, so shard boundaries, order and bytes depend
only on inputs and parameters, never on ``--jobs``. Chunks are small enough that a few hundred
images keep every core busy; memory is bounded by the chunks in flight, not the dataset size.
Writers live in this (the parent) process, which is what LMDB's single writer needs, and they
finalize each shard atomically. Per-image failures (:class:`ImageError`) are data: counted,
listed in ``errors.jsonl``, and raised only under ``on_error="raise"``. Code bugs still crash.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from dataprep.errors import DiskFullError, ImageError, UsageError, require
from dataprep.io.writers import ShardInfo, Writer
from dataprep.records import Record, Sample

Task = Callable[[Record], list[Sample]]
ChunkResult = list[tuple[list[Sample] | None, str | None]]
ON_ERROR = ("skip", "raise")


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_jobs(jobs: int | None) -> int:
    if jobs is None or jobs == 0:
        return default_jobs()
    if jobs < 0:  # joblib convention: -1 = all cores
        return max(1, default_jobs() + 1 + jobs)
    return jobs


def run_chunk(task: Task, records: list[Record]) -> ChunkResult:
    """Worker side: apply ``task`` to each record; image failures become data, bugs propagate."""
    out: ChunkResult = []
    for record in records:
        try:
            out.append((task(record), None))
        except ImageError as exc:
            out.append((None, str(exc)))
    return out


@dataclass
class Report:
    """What a job did: counts, bytes, time, shards per split, per-image errors."""

    command: str
    out_dir: str
    records_in: int = 0
    samples_out: int = 0
    skipped: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    jobs: int = 1
    shards: dict[str, list[ShardInfo]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # samples per split
    records: dict[str, int] = field(default_factory=dict)  # records in per split
    errors: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    estimated_bytes: int | None = None
    resumed: dict[str, int] = field(default_factory=dict)  # split -> records reused from a run
    complete: list[str] = field(default_factory=list)  # splits already complete, left as they were

    @property
    def images_per_s(self) -> float:
        return self.records_in / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        if self.dry_run:
            done = [f"  {s}: already complete; would be left as it is" for s in self.complete]
            return [*done, "dry run: nothing was written"]
        out = [
            f"{self.command}: {self.records_in:,} records in -> {self.samples_out:,} samples out, "
            f"{self.skipped:,} skipped",
            f"  {human_bytes(self.bytes_written)} written in {self.seconds:.1f} s "
            f"({self.images_per_s:,.1f} images/s, {self.jobs} job{'s' if self.jobs != 1 else ''})",
        ]
        stored = sum(s.bytes for shards in self.shards.values() for s in shards)
        if self.estimated_bytes and stored:
            err = (self.estimated_bytes - stored) / stored * 100
            out.append(f"  estimated {human_bytes(self.estimated_bytes)} before writing; the "
                       f"shards take {human_bytes(stored)} ({err:+.0f}%)")
        for split, n in sorted(self.resumed.items()):
            out.append(f"  {split}: resumed after {n:,} records from an interrupted run")
        for split in self.complete:
            out.append(f"  {split}: already complete (same command and inputs); left as it is")
        for split, n in sorted(self.counts.items()):
            shards = self.shards.get(split, [])
            where = f" in {len(shards)} shard{'s' if len(shards) != 1 else ''}" if shards else ""
            out.append(f"  {split}: {n:,} samples{where}")
        if self.errors:
            out.append(f"  skipped files are listed in {Path(self.out_dir) / 'errors.jsonl'}")
            for e in self.errors[:5]:
                out.append(f"    {e['reason']}")
            if len(self.errors) > 5:
                out.append(f"    ... and {len(self.errors) - 5} more")
        out.append(f"  output: {self.out_dir}")
        return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000.0
    return f"{n} B"  # pragma: no cover


def chunk_size(total: int | None, jobs: int) -> int:
    """Small enough to balance ~8 chunks per worker; large enough to amortize dispatch."""
    if total is None:
        return 16
    return max(1, min(32, total // (jobs * 8) or 1))


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


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
    if backend == "loky":
        yield
        return
    stack = ExitStack()
    try:
        try:
            client, workers = _connect(backend, address, jobs, stack)
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise UsageError(f"cannot reach the {backend} cluster at {address or 'localhost'}: "
                             f"{exc}; check --scheduler/--address") from exc
        _cluster.update(backend=backend, workers=workers, client=client)
        yield
    finally:
        _cluster.update(backend="loky", workers=None, client=None)
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


def _map_cluster(task: Task, chunks: Iterator[list[Record]], window: int) -> Iterator:
    """Submit chunks to the active cluster, at most ``window`` in flight; results in order."""
    backend, client = _cluster["backend"], _cluster["client"]
    if backend == "dask":
        def submit(chunk):
            return client.submit(run_chunk, task, chunk, pure=False)

        def get(future):
            return future.result()
    else:
        remote = client.remote(run_chunk)

        def submit(chunk):
            return remote.remote(task, chunk)

        get = client.get
    pending: deque = deque()
    for chunk in chunks:
        pending.append((chunk, submit(chunk)))
        if len(pending) >= window:
            done, future = pending.popleft()
            yield done, get(future)
    while pending:
        done, future = pending.popleft()
        yield done, get(future)


def map_records(task: Task, records: Iterable[Record], jobs: int,
                total: int | None = None) -> Iterator[tuple[Record, list[Sample] | None, str | None]]:
    """Yield ``(record, samples, error)`` in input order, computed by ``jobs`` processes (or the
    workers of the active :func:`cluster`)."""
    on_cluster = _cluster["backend"] != "loky"
    if on_cluster:
        jobs = _cluster["workers"] or jobs
    size = chunk_size(total, jobs)
    if on_cluster:
        for chunk, result in _map_cluster(task, _chunks(records, size), 2 * jobs):
            yield from ((r, s, e) for r, (s, e) in zip(chunk, result, strict=True))
        return
    if jobs == 1:
        for chunk in _chunks(records, size):
            yield from ((r, s, e) for r, (s, e) in zip(chunk, run_chunk(task, chunk), strict=True))
        return
    from joblib import Parallel, delayed

    pending: deque[list[Record]] = deque()

    def tasks() -> Iterator:
        for chunk in _chunks(records, size):
            pending.append(chunk)
            yield delayed(run_chunk)(task, chunk)

    with Parallel(n_jobs=jobs, backend="loky", return_as="generator", batch_size=1,
                  pre_dispatch=f"{2 * jobs}") as parallel:
        for result in parallel(tasks()):
            chunk = pending.popleft()
            yield from ((r, s, e) for r, (s, e) in zip(chunk, result, strict=True))


class Journal:
    """Checkpoints of one split's progress, ``.journal-{split}.jsonl`` in the output folder.

    The first line holds the run's fingerprint; each further line is a checkpoint: the index of
    the first record not yet durable (``next_record``), the writer's state, the split's counters
    and the errors found since the previous checkpoint. Lines are fsynced; a torn last line
    (a kill mid-write) is ignored.
    """

    def __init__(self, out_dir: str | Path, split: str) -> None:
        self.path = Path(out_dir) / f".journal-{split}.jsonl"

    def load(self) -> tuple[str | None, dict[str, Any] | None]:
        """(fingerprint, merged last checkpoint) or (None, None) without a journal."""
        if not self.path.exists():
            return None, None
        lines = []
        for line in self.path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                break  # torn write: everything before it is valid
        if not lines:
            return None, None
        fingerprint = lines[0].get("fingerprint")
        if len(lines) == 1:
            return fingerprint, None
        last = dict(lines[-1])
        last["errors"] = [e for entry in lines[1:] for e in entry.get("errors", [])]
        return fingerprint, last

    def start(self, fingerprint: str) -> None:
        with open(self.path, "w") as f:
            f.write(json.dumps({"fingerprint": fingerprint}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def append(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def execute(
    command: str,
    records: Iterable[Record],
    task: Task,
    make_writer: Callable[[str, dict | None], Writer],
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    on_error: str = "skip",
    total: int | None = None,
    default_split: str = "train",
    progress: bool | None = None,
    resume: dict[str, dict[str, Any]] | None = None,
    skip_splits: frozenset[str] = frozenset(),
    journals: dict[str, Journal] | None = None,
) -> Report:
    """Run ``task`` over ``records`` and stream the samples into one writer per split.

    ``resume[split]`` is a journal checkpoint: records of that split before its
    ``next_record`` are not processed again and its writer continues from the saved state.
    Records of ``skip_splits`` (already complete) are not processed at all. With ``journals``,
    each writer checkpoint is journaled. On any exception, unfinished shards are removed (an
    LMDB's committed part is kept for resuming) before it propagates; finished shards stay.
    Running out of disk space raises :class:`DiskFullError`.
    """
    from tqdm import tqdm

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    resume = resume or {}
    n_jobs = resolve_jobs(jobs)
    report = Report(command=command, out_dir=str(out_dir), jobs=n_jobs)
    bytes_per_split: dict[str, int] = {}
    new_errors: dict[str, list[dict[str, Any]]] = {}
    for split, point in resume.items():
        report.records[split] = point["records_in"]
        report.counts[split] = point["samples_out"]
        bytes_per_split[split] = point["bytes"]
        report.errors += point["errors"]
        report.resumed[split] = point["next_record"]
    report.records_in = sum(report.records.values())
    report.samples_out = sum(report.counts.values())
    report.skipped = len(report.errors)
    report.bytes_written = sum(bytes_per_split.values())
    writers: dict[str, Writer] = {}
    indices: deque[int] = deque()

    def todo() -> Iterator[Record]:
        for index, record in enumerate(records):
            split = record.split or default_split
            if split in skip_splits or index < resume.get(split, {}).get("next_record", 0):
                continue
            indices.append(index)
            yield record

    remaining = None if total is None else total - sum(
        p["next_record"] for p in resume.values())
    start = time.perf_counter()
    bar = tqdm(total=remaining, unit="img", desc=command, file=sys.stderr, leave=False,
               disable=None if progress is None else not progress)
    try:
        for record, samples, error in map_records(task, todo(), n_jobs, remaining):
            index = indices.popleft()
            bar.update(1)
            split = record.split or default_split
            if error is not None:
                if on_error == "raise":
                    raise ImageError(error)
                entry = {"key": record.key, "path": record.path, "split": split, "reason": error}
                report.errors.append(entry)
                new_errors.setdefault(split, []).append(entry)
                report.skipped += 1
            else:
                assert samples is not None
                if split not in writers:
                    writers[split] = make_writer(split, resume.get(split, {}).get("writer"))
                if writers[split].write_group(samples) and journals and split in journals:
                    journals[split].append({
                        "next_record": index, "writer": writers[split].state(),
                        "records_in": report.records.get(split, 0),
                        "samples_out": report.counts.get(split, 0),
                        "bytes": bytes_per_split.get(split, 0),
                        "errors": new_errors.pop(split, []),
                    })
                nbytes = sum(s.nbytes for s in samples)
                report.bytes_written += nbytes
                bytes_per_split[split] = bytes_per_split.get(split, 0) + nbytes
                report.samples_out += len(samples)
                report.counts[split] = report.counts.get(split, 0) + len(samples)
            report.records_in += 1
            report.records[split] = report.records.get(split, 0) + 1
        for split in resume:
            if split not in writers:  # resumed with nothing left to add: finish what was there
                writers[split] = make_writer(split, resume[split].get("writer"))
        for split, writer in writers.items():
            report.shards[split] = writer.close()
    except BaseException as exc:
        for writer in writers.values():
            writer.abort()
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(
                f"no space left while writing {out_dir} ({exc.strerror}); finished shards are "
                "kept and the unfinished one removed: free some space (or choose another -o) "
                "and run the same command again to resume"
            ) from exc
        raise
    finally:
        bar.close()
        report.seconds = time.perf_counter() - start
    write_errors(out_dir, report.errors, report.records)
    return report


def write_errors(out_dir: str | Path, errors: list[dict[str, Any]], splits: Iterable[str]) -> None:
    """Replace the ``errors.jsonl`` lines of ``splits``; keep those other jobs wrote."""
    path = Path(out_dir) / "errors.jsonl"
    replaced = set(splits)
    kept = []
    if path.exists():
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line).get("split") not in replaced]
    tmp = path.with_name(".errors.jsonl.tmp")
    with open(tmp, "w") as f:
        for line in kept:
            f.write(line + "\n")
        for e in errors:
            f.write(json.dumps(e, sort_keys=True) + "\n")
    os.replace(tmp, path)
