"""Ledgers beside the output: ``_info.json`` (timm's schema) and ``dataprep.json`` (provenance).

Both are merged per split, so several commands may write different splits into one directory.
Both are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dataprep.io.writers import ShardInfo

INFO_NAME = "_info.json"
LEDGER_NAME = "dataprep.json"


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path: str | Path, default: Any = None) -> Any:
    p = Path(path)
    if not p.exists():
        return default
    return json.loads(p.read_text())


def write_info_json(out_dir: str | Path, split: str, shards: list[ShardInfo],
                    name: str = "") -> None:
    """Record one split's shards in timm's ``_info.json``: num_samples, filenames and
    shard_lengths."""
    path = Path(out_dir) / INFO_NAME
    info = read_json(path, {"name": name or Path(out_dir).name, "splits": {}})
    info["splits"][split] = {
        "name": split,
        "num_samples": sum(s.num_samples for s in shards),
        "filenames": [s.name for s in shards],
        "shard_lengths": [s.num_samples for s in shards],
    }
    info["splits"] = dict(sorted(info["splits"].items()))
    write_json_atomic(path, info)


def write_ledger(out_dir: str | Path, split: str, entry: dict[str, Any]) -> None:
    """Merge one split's entry (command, params, counts, shards) into ``dataprep.json``."""
    from dataprep import __version__

    path = Path(out_dir) / LEDGER_NAME
    ledger = read_json(path, {"dataprep_version": __version__, "splits": {}})
    ledger["dataprep_version"] = __version__
    ledger["splits"][split] = entry
    ledger["splits"] = dict(sorted(ledger["splits"].items()))
    write_json_atomic(path, ledger)


def read_ledger(out_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(out_dir) / LEDGER_NAME, {"splits": {}})
