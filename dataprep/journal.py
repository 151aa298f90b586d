"""Journals: the durable record of a split being written, ``.journal-{split}.jsonl``.

Line 1 is the header: the split's identity (command, parameters, inputs) and format. Each
further line is a checkpoint or, last, the finish line:

* ``{"checkpoint": {...}}``: the index of the first record not yet durable
  (``next_record``), the writer's state once the checkpoint is committed, the split's
  counters, the errors found since the previous checkpoint and the shards finished since then
  (``files``: their temporary and final names, size and sha256), written *before* those
  shards are renamed into place;
* ``{"finish": entry}``: the split's ledger entry, written before the last renames and the
  ledger itself.

Lines are fsynced. A torn last line (a kill mid-write) is ignored; anything else that does not
parse is a damaged journal (:class:`~dataprep.errors.OutputError` naming the file).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import OutputError
from dataprep.io import durable

MAX_JOURNAL_BYTES = 1 << 30


@dataclass
class JournalState:
    """What a journal holds: its header and checkpoints, and the finish line if written."""

    header: dict[str, Any]
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    finish: dict[str, Any] | None = None

    def files(self) -> list[dict[str, Any]]:
        """Every shard the journal names, in order (``tmp``, ``final`` and shard fields)."""
        out = [f for c in self.checkpoints for f in c.get("files", [])]
        if self.finish is not None:
            out += self.finish.get("staged", [])
        return out


class Journal:
    """The journal of one split in an output folder."""

    def __init__(self, out_dir: str | Path, split: str) -> None:
        self.path = Path(out_dir) / f".journal-{split}.jsonl"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> JournalState | None:
        """The journal's content, or None without one (or with only a torn header). A damaged
        journal raises :class:`OutputError`."""
        from dataprep.io.files import read_regular

        if not os.path.lexists(self.path):
            return None
        raw = read_regular(self.path, limit=MAX_JOURNAL_BYTES, error=OutputError).split(b"\n")
        lines: list[dict[str, Any]] = []
        for i, line in enumerate(raw):
            try:
                value = json.loads(line)
                if not isinstance(value, dict):
                    raise ValueError("not an object")
                lines.append(value)
            except ValueError as exc:
                if i == len(raw) - 1 or (i == len(raw) - 2 and raw[-1] == b""):
                    break  # the last line, torn by a kill mid-write
                raise self.damaged(f"line {i + 1} is not a journal entry ({exc})") from None
        if not lines:
            return None  # killed while its header was written: no shard was journaled yet
        if not isinstance(lines[0].get("identity"), dict):
            raise self.damaged("it has no header")
        state = JournalState(lines[0])
        for i, line in enumerate(lines[1:], 2):
            if isinstance(line.get("checkpoint"), dict) and state.finish is None:
                state.checkpoints.append(line["checkpoint"])
            elif isinstance(line.get("finish"), dict) and state.finish is None:
                state.finish = line["finish"]
            else:
                raise self.damaged(f"line {i} is not a checkpoint")
            body = line.get("checkpoint") or line.get("finish")
            if not _well_formed(body):
                raise self.damaged(f"line {i} has fields of the wrong kind")
        return state

    def damaged(self, why: str) -> OutputError:
        return OutputError(
            f"{self.path} is damaged: {why}. It records an interrupted run; pass --overwrite "
            "to write the split again (dataprep then removes what that journal and "
            "dataprep.json name)")

    def start(self, header: dict[str, Any]) -> None:
        with durable.open_new(self.path) as f:
            f.write(json.dumps(header, sort_keys=True).encode() + b"\n")
            durable.fsync(f)
        durable.fsync_dir(self.path.parent)

    def rewrite(self, header: dict[str, Any], checkpoints: list[dict[str, Any]],
                finish: dict[str, Any] | None = None) -> None:
        """Replace the journal, atomically, by ``header``, ``checkpoints`` and ``finish``
        (so a torn last line is gone before anything is appended)."""
        lines = [header, *({"checkpoint": c} for c in checkpoints)]
        if finish is not None:
            lines.append({"finish": finish})
        durable.write_atomic(self.path, b"".join(
            json.dumps(line, sort_keys=True).encode() + b"\n" for line in lines))

    def append(self, entry: dict[str, Any]) -> None:
        with durable.open_new(self.path, append=True) as f:
            f.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
            durable.fsync(f)

    def remove(self) -> None:
        if os.path.lexists(self.path):
            durable.unlink(self.path)


def _well_formed(body: dict[str, Any]) -> bool:
    """A checkpoint's or finish line's lists hold what dataprep writes there."""
    for key in ("files", "staged", "errors", "shards"):
        value = body.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            return False
    for f in [*body.get("files", []), *body.get("staged", []), *body.get("shards", [])]:
        if not (isinstance(f.get("name"), str) and isinstance(f.get("sha256"), str)
                and all(isinstance(f.get(k), int) for k in ("bytes", "num_samples"))):
            return False
    return isinstance(body.get("writer", {}), dict) and all(
        isinstance(body.get(k, 0), int) for k in ("next_record", "records_in", "samples_out",
                                                  "bytes"))
