"""What a job did: the report every writing verb prints and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.io.staging import ShardInfo


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
    finished: list[str] = field(default_factory=list)  # interrupted splits whose last step was done
    kept_bytes: int | None = 0  # shards of an interrupted run this one went on from (None: LMDB)

    @property
    def images_per_s(self) -> float:
        """Input images this run used per second (skipped inputs do not count: a run that
        skips everything did no work worth a rate)."""
        used = self.records_in - self.skipped
        return used / self.seconds if self.seconds > 0 and used > 0 else 0.0

    def _rate(self) -> str:
        if self.records_in - self.skipped <= 0:
            return "no input image used"
        return f"{self.images_per_s:,.1f} input images/s"

    def _estimate_line(self, stored: int) -> str:
        """The estimate against what it estimated: the shards this run wrote (a resumed run
        estimated only the part left to write)."""
        est = human_bytes(self.estimated_bytes or 0)
        if self.kept_bytes is None:  # a resumed LMDB: one environment holds both parts
            return (f"  the shards take {human_bytes(stored)} with their headers and metadata; "
                    f"estimated {est} before writing, for the part left to write")
        new = stored - self.kept_bytes
        what = "the shards written now take" if self.kept_bytes else "the shards take"
        if new <= 0:
            return f"  nothing new was written; estimated {est} before writing"
        err = ((self.estimated_bytes or 0) - new) / new * 100
        return (f"  {what} {human_bytes(new)} with their headers and metadata; estimated "
                f"{est} before writing ({err:+.0f}%)")

    def lines(self) -> list[str]:
        if self.dry_run:
            done = [f"  {s}: already complete; would be left as it is" for s in self.complete]
            return [*done, "dry run: nothing was written"]
        if (self.complete or self.finished) and not (self.records_in or self.counts
                                                      or self.errors):
            return [f"{self.command}: nothing to do" if not self.finished else
                    f"{self.command}: finished what an interrupted run had written",
                    *(f"  {s}: already complete (same command and inputs); left as it is"
                      for s in self.complete),
                    *(f"  {s}: the interrupted run had written every sample; its ledger "
                      "entry is now committed" for s in self.finished),
                    f"  output: {self.out_dir}"]
        out = [
            f"{self.command}: {self.records_in:,} records in -> {self.samples_out:,} samples out, "
            f"{self.skipped:,} skipped",
            f"  {human_bytes(self.bytes_written)} of encoded images in {self.seconds:.1f} s "
            f"({self._rate()}, {self.jobs} job{'s' if self.jobs != 1 else ''})",
        ]
        stored = sum(s.bytes for shards in self.shards.values() for s in shards)
        if self.estimated_bytes and stored:
            out.append(self._estimate_line(stored))
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
