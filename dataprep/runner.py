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

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from dataprep.errors import ImageError
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

    @property
    def images_per_s(self) -> float:
        return self.records_in / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        out = [
            f"{self.command}: {self.records_in:,} records in -> {self.samples_out:,} samples out, "
            f"{self.skipped:,} skipped",
            f"  {human_bytes(self.bytes_written)} written in {self.seconds:.1f} s "
            f"({self.images_per_s:,.1f} images/s, {self.jobs} job{'s' if self.jobs != 1 else ''})",
        ]
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


def map_records(task: Task, records: Iterable[Record], jobs: int,
                total: int | None = None) -> Iterator[tuple[Record, list[Sample] | None, str | None]]:
    """Yield ``(record, samples, error)`` in input order, computed by ``jobs`` processes."""
    size = chunk_size(total, jobs)
    if jobs == 1:
        for chunk in _chunks(records, size):
            yield from ((r, s, e) for r, (s, e) in zip(chunk, run_chunk(task, chunk), strict=True))
        return
    from joblib import Parallel, delayed

    pending: list[list[Record]] = []

    def tasks() -> Iterator:
        for chunk in _chunks(records, size):
            pending.append(chunk)
            yield delayed(run_chunk)(task, chunk)

    with Parallel(n_jobs=jobs, backend="loky", return_as="generator", batch_size=1,
                  pre_dispatch=f"{2 * jobs}") as parallel:
        for result in parallel(tasks()):
            chunk = pending.pop(0)
            yield from ((r, s, e) for r, (s, e) in zip(chunk, result, strict=True))


def execute(
    command: str,
    records: Iterable[Record],
    task: Task,
    make_writer: Callable[[str], Writer],
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    on_error: str = "skip",
    total: int | None = None,
    default_split: str = "train",
    progress: bool | None = None,
) -> Report:
    """Run ``task`` over ``records`` and stream the samples into one writer per split.

    On any exception every unfinished shard is removed before it propagates; finished shards
    stay (they are whole) so a rerun can reuse them.
    """
    from tqdm import tqdm

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    n_jobs = resolve_jobs(jobs)
    report = Report(command=command, out_dir=str(out_dir), jobs=n_jobs)
    writers: dict[str, Writer] = {}
    start = time.perf_counter()
    bar = tqdm(total=total, unit="img", desc=command, disable=None if progress is None else not progress, file=sys.stderr, leave=False)
    try:
        for record, samples, error in map_records(task, records, n_jobs, total):
            report.records_in += 1
            bar.update(1)
            split = record.split or default_split
            report.records[split] = report.records.get(split, 0) + 1
            if error is not None:
                if on_error == "raise":
                    raise ImageError(error)
                report.skipped += 1
                report.errors.append({"key": record.key, "path": record.path, "split": split,
                                      "reason": error})
                continue
            assert samples is not None
            if split not in writers:
                writers[split] = make_writer(split)
            for sample in samples:
                writers[split].write(sample)
                report.bytes_written += sample.nbytes
            report.samples_out += len(samples)
            report.counts[split] = report.counts.get(split, 0) + len(samples)
        for split, writer in writers.items():
            report.shards[split] = writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
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
