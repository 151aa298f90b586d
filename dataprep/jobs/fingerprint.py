"""What a split's output is made of: its identity, compared by a rerun.

A split's identity is the command, its parameters (not ``--jobs``: the output does not depend
on it) and a digest of its inputs: every record's key, file, label and split with the file's
size and modification time (``--fingerprint stat``) or its bytes' sha256 (``content``); a
stream of shards is identified by its shard files. :mod:`dataprep.jobs.output` compares the
identity with the ledger's to decide what a rerun resumes, skips or refuses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from dataprep.errors import OutputError
from dataprep.io.manifest import read_json
from dataprep.records import Record


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _file_identity(path: str, mode: str) -> str:
    """A file as the fingerprint sees it: its size and modification time (``stat``), or its
    bytes' sha256 (``content``); a file that cannot be read is that fact."""
    try:
        if mode == "content":
            return _file_sha256(path)
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError as exc:
        return f"unreadable:{exc.errno}"


def record_inputs(h: Any, r: Record, mode: str) -> None:
    """Add one record to an inputs digest: its key, file, label, split and the file's
    identity (:func:`_file_identity`), or the size and hash of the bytes it carries."""
    if r.data is not None:
        what = f"{len(r.data)}:{hashlib.sha256(r.data).hexdigest()}" if mode == "content" \
            else str(len(r.data))
    else:
        what = _file_identity(r.path, mode)
    h.update(f"{r.key}\t{r.path}\t{r.label}\t{r.split}\t{what}\n".encode(
        "utf-8", "surrogatepass"))


def shard_inputs(files: Sequence[str], mode: str) -> str:
    """Digest of streamed shard inputs: every shard's name, size and modification time and,
    when a ledger beside it lists it, its recorded sha256 (``content``: also the sha256 of its
    bytes)."""
    h = hashlib.sha256()
    ledgers: dict[str, dict[str, str]] = {}
    for path in files:
        folder, name = os.path.split(path)
        if folder not in ledgers:
            try:
                ledger = read_json(os.path.join(folder, "dataprep.json"), {}) or {}
                ledgers[folder] = {s["name"]: s["sha256"] for e in ledger["splits"].values()
                                   for s in e.get("shards", [])}
            except (OutputError, KeyError, TypeError, AttributeError):
                ledgers[folder] = {}  # an unreadable or foreign ledger adds nothing
        rel = name if not name.endswith("data.mdb") else os.path.basename(folder) + "/" + name
        recorded = ledgers.get(folder, {}).get(rel) or ledgers.get(
            os.path.dirname(folder), {}).get(rel, "")
        h.update(f"{path}\t{_file_identity(path, 'stat')}\t{recorded}\t"
                 f"{_file_identity(path, 'content') if mode == 'content' else ''}\n".encode())
    return h.hexdigest()


def identities(command: str, params: dict[str, Any], splits: Iterable[str],
               records: Iterable[Record], default_split: str, mode: str,
               stream_files: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """Per split, what its output is made of: command, parameters (not --jobs) and inputs.
    One pass over ``records`` (which may be a packed RecordList); a stream's records are
    identified by its shard files instead."""
    clean = {k: v for k, v in params.items() if k != "jobs"}
    clean["fingerprint"] = mode  # another mode is another digest: say so, not "inputs changed"
    clean = json.loads(json.dumps(clean, sort_keys=True, default=str))
    hashers = {s: hashlib.sha256() for s in splits}
    counts = dict.fromkeys(hashers, 0)
    if stream_files is not None:
        digest = shard_inputs(stream_files, mode)
        return {s: {"command": command, "params": clean, "inputs": digest, "records": None}
                for s in hashers}
    for r in records:
        split = r.split or default_split
        if split in hashers:
            record_inputs(hashers[split], r, mode)
            counts[split] += 1
    return {s: {"command": command, "params": clean, "inputs": h.hexdigest(),
                "records": counts[s]} for s, h in hashers.items()}
