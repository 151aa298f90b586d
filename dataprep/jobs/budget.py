"""The size of a run before it writes: a few records processed ahead, extrapolated, checked
against the free space and ``--max-disk``.

:func:`estimate` processes up to :data:`ESTIMATE_RECORDS` records spread over what is left to
write, on the run's workers, and counts the bytes their samples take in the sink (container
overhead included); their results are kept, so the run does not compute them again.
:func:`check_budget` refuses the run, naming the ways out in the verb's own flags.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dataprep.errors import DiskBudgetError
from dataprep.io.tarpack import PackedGroup, sample_json
from dataprep.records import Record, Sample
from dataprep.report import human_bytes
from dataprep.runner import Task, map_records

ESTIMATE_RECORDS = 12  # at most this many records are processed ahead to extrapolate the size


FREE_MARGIN = 0.95  # never plan to fill more than this fraction of the free space


@dataclass
class Estimate:
    records: int
    samples: int
    bytes: int
    free: int

    def line(self, out: Path) -> str:
        return (f"plan: {self.records:,} records -> about {self.samples:,} samples, about "
                f"{human_bytes(self.bytes)}; {human_bytes(self.free)} free at {out}")


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _stored_bytes(fmt: str, samples: list | PackedGroup) -> int:
    """Bytes the samples take in the sink, container overhead included (WebDataset results
    come packed: their tar members are the bytes)."""
    if isinstance(samples, PackedGroup):
        return len(samples.tar)
    if fmt == "lmdb":  # large values fill whole 4 KiB overflow pages; small entries share pages
        return sum((s.nbytes + 16 + 4095) // 4096 * 4096 + len(sample_json(s)) + 2 * 64
                   for s in samples)
    return sum((s.nbytes + 4095) // 4096 * 4096 for s in samples)  # folder: whole blocks


def estimate(todo: Iterable[tuple[int, Record]], n: int, task: Task, fmt: str, out: Path,
             k: int = ESTIMATE_RECORDS, jobs: int = 1,
             ) -> tuple[Estimate, dict[int, tuple[list[Sample] | None, str | None]]]:
    """Process ``k`` records spread over the ``n`` (index, record) pairs of ``todo``, on the
    run's workers, and extrapolate the output size. Also returns their results by index, so
    the run does not compute them again.
    """
    k = min(k, n)  # their results are written, not recomputed: a small run is all estimate
    wanted = {i * n // k for i in range(k)} if n > k else None
    picks = [item for j, item in enumerate(todo) if wanted is None or j in wanted]
    results: dict[int, tuple[list[Sample] | None, str | None]] = {}
    total_bytes = total_samples = 0
    mapped = map_records(task, [record for _, record in picks], jobs, len(picks))
    for (index, _), (_, samples, error) in zip(picks, mapped, strict=True):
        results[index] = (samples, error)  # skipped inputs write nothing
        if samples is not None:
            total_samples += len(samples)
            total_bytes += _stored_bytes(fmt, samples)
    scale = n / max(len(picks), 1)
    est = Estimate(n, round(total_samples * scale), round(total_bytes * scale), _free_bytes(out))
    return est, results


WAYS_OUT = {
    "tencrop": "--views lazy (each record stored once, expanded when read), a lower --quality, "
               "fewer views (--five), ",
    "resize": "a smaller --short-side, a lower --quality, ",
    "augment": "a smaller --short-side, a lower --quality, ",
    "shard": "--reencode with a lower --quality or a smaller --max-pixels, ",
}


def check_budget(est: Estimate, out: Path, max_disk: int | None, command: str = "") -> None:
    limit, what = est.free * FREE_MARGIN, f"{human_bytes(est.free)} free at {out}"
    if max_disk is not None and max_disk < limit:
        limit, what = max_disk, f"--max-disk {human_bytes(max_disk)}"
    if est.bytes > limit:
        raise DiskBudgetError(
            f"the output needs about {human_bytes(est.bytes)} but there is only {what}; nothing "
            f"was written. Ways out: {WAYS_OUT.get(command, '')}a larger --max-disk, "
            "or -o on a larger disk"
        )
