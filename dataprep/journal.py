"""Journals: durable checkpoints of a split's progress, for resuming interrupted runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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
