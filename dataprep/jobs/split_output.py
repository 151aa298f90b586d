"""One split being written into an output folder: :class:`SplitOutput` drives its writer,
journals each checkpoint before the shards it names are renamed into place, and commits the
split's ledger entry when it is finished (the protocol of :mod:`dataprep.jobs.output`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataprep.io.staging import ShardInfo, Staged, Writer
from dataprep.jobs.output_files import FolderFiles, finish_entry, staged_json
from dataprep.jobs.output_recovery import SplitPlan
from dataprep.journal import Journal
from dataprep.records import Sample


@dataclass
class Counters:
    """A split's running totals, as its checkpoints journal them."""

    records_in: int = 0
    samples_out: int = 0
    bytes: int = 0  # encoded image bytes


class SplitOutput:
    """One split being written: its writer, journal, counters and errors. Only the output
    folder's protocol renames or commits anything (module docstring)."""

    def __init__(self, folder: FolderFiles, split: str, header: dict[str, Any],
                 plan: SplitPlan, writer: Writer) -> None:
        self.folder, self.split, self.header, self.writer = folder, split, header, writer
        self.journal = Journal(folder.path, split)
        point = plan.point or {}
        self.counters = Counters(int(point.get("records_in", 0)),
                                 int(point.get("samples_out", 0)), int(point.get("bytes", 0)))
        self.files: list[ShardInfo] = list(plan.files)
        self.errors: list[dict[str, Any]] = list(plan.errors)
        self._new_errors: list[dict[str, Any]] = []
        self.resumed_after = int(point.get("next_record", 0)) if plan.point else None
        # the bytes an interrupted run's shards already take (None: an LMDB environment goes
        # on growing, its earlier part is not told apart)
        self.kept_bytes: int | None = (sum(f.bytes for f in plan.files)
                                       if header.get("format") != "lmdb" or not plan.point
                                       else None)
        if plan.point is None:
            self.journal.start(header)

    def add(self, index: int, samples: list[Sample] | Any, nbytes: int) -> None:
        """Write record ``index``'s samples (a checkpoint first, when one is due)."""
        if self.writer.due(samples):
            self._checkpoint(index, self.writer.checkpoint(), final=False)
        self.writer.write_group(samples)
        self.counters.records_in += 1
        self.counters.samples_out += len(samples)
        self.counters.bytes += nbytes

    def skip(self, entry: dict[str, Any]) -> None:
        """Record ``entry`` (a skipped input) as one record in."""
        self.counters.records_in += 1
        self.note(entry)

    def note(self, entry: dict[str, Any]) -> None:
        """List ``entry`` in errors.jsonl (e.g. a folder the scan could not read)."""
        self.errors.append(entry)
        self._new_errors.append(entry)

    def _checkpoint(self, next_record: int, staged: list[Staged], final: bool) -> None:
        out = self.folder.path
        self.journal.append({"checkpoint": {
            "next_record": next_record, "writer": self.writer.state(), "final": final,
            "records_in": self.counters.records_in, "samples_out": self.counters.samples_out,
            "bytes": self.counters.bytes, "errors": self._new_errors,
            "files": [staged_json(out, s) for s in staged]}})
        self._new_errors = []
        self.writer.commit()
        self.folder.publish(staged)
        self.files += [s.info for s in staged]

    def finish(self, next_record: int) -> dict[str, Any]:
        """Finish the split: final checkpoint, finish line, renames, ledger commit."""
        self._checkpoint(next_record, self.writer.finish(), final=True)
        more = self.writer.finished()
        entry = finish_entry(self.header, {"records_in": self.counters.records_in,
                                           "samples_out": self.counters.samples_out},
                             self.files + [s.info for s in more], self.errors)
        out = self.folder.path
        self.journal.append({"finish": dict(entry, staged=[staged_json(out, s) for s in more])})
        self.folder.publish(more)
        self.files += [s.info for s in more]
        self.folder.commit(self.split, entry, self.errors)
        self.journal.remove()
        self.folder.drop_stage(self.split)
        return entry

    def abort(self) -> None:
        self.writer.abort()
