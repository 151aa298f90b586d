"""Ledgers beside the output: ``dataprep.json`` (provenance) and ``_info.json`` (timm's schema).

``dataprep.json`` holds one entry per split (command, parameters, identity, counts, and every
shard's name, size and sha256); several commands may write different splits into one folder.
``_info.json`` and each WebDataset split's ``{split}.wids.json`` are derived from it:
rewritten from the ledger's WebDataset splits at every commit. All are written atomically
(temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dataprep.errors import OutputError
from dataprep.io import durable

INFO_NAME = "_info.json"
WIDS_SUFFIX = ".wids.json"  # {split}.wids.json: the split's shard list in wids' format
WIDS_KIND = "wids-shard-index-v1"
LEDGER_NAME = "dataprep.json"
MAX_LEDGER_BYTES = 1 << 30  # no ledger dataprep writes is this large


def write_json_atomic(path: str | Path, obj: Any) -> None:
    durable.write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | Path, default: Any = None) -> Any:
    """A JSON file's value, ``default`` when it does not exist; a damaged or oversized file
    is an :class:`OutputError` naming it."""
    from dataprep.io.files import read_regular

    p = Path(path)
    if not os.path.lexists(p):
        return default
    data = read_regular(p, limit=MAX_LEDGER_BYTES, error=OutputError)  # a FIFO never blocks
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise OutputError(f"{p} is damaged (not JSON: {str(exc)[:200]})") from exc


def _shard_ok(s: Any) -> bool:
    return (isinstance(s, dict) and isinstance(s.get("name"), str)
            and all(isinstance(s.get(k), int) and not isinstance(s.get(k), bool)
                    for k in ("num_samples", "bytes")) and isinstance(s.get("sha256"), str))


def ledger_problem(ledger: Any) -> str | None:
    """Why ``ledger`` is not a dataprep ledger of shards, or None."""
    if not isinstance(ledger, dict) or not isinstance(ledger.get("splits"), dict):
        return "it has no 'splits' table"
    for split, entry in ledger["splits"].items():
        if not isinstance(entry, dict):
            return f"split {split!r} is not a table"
        shards = entry.get("shards", [])
        if not isinstance(shards, list) or not all(_shard_ok(s) for s in shards):
            return f"split {split!r} has a malformed shard list"
        for key, kind in (("records_in", int), ("samples_out", int), ("skipped", int),
                          ("classes", list), ("identity", dict), ("params", dict),
                          ("format", str), ("command", str)):
            value = entry.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                return f"split {split!r} has a malformed {key!r}"
        if "\0" in "".join(s["name"] for s in shards):
            return f"split {split!r} names a shard with a NUL byte"
    return None


def read_ledger(out_dir: str | Path) -> dict[str, Any]:
    """``dataprep.json`` of ``out_dir`` (``{"splits": {}}`` when there is none). A damaged
    ledger is an :class:`OutputError`: dataprep cannot tell then which files it wrote."""
    path = Path(out_dir) / LEDGER_NAME
    ledger = read_json(path, {"splits": {}})
    problem = ledger_problem(ledger)
    if problem is not None:
        raise OutputError(
            f"{path} is damaged or not a ledger of shards ({problem}), so dataprep cannot tell "
            "which files it wrote there; move the folder's content away or choose another -o")
    return ledger


def info_json(ledger: dict[str, Any], name: str) -> dict[str, Any]:
    """timm's ``_info.json`` for the WebDataset splits of ``ledger``: per split
    ``num_samples``, ``filenames`` and ``shard_lengths``."""
    splits = {}
    for split, entry in sorted(ledger["splits"].items()):
        if entry.get("format", "webdataset") != "webdataset":
            continue
        shards = entry.get("shards", [])
        splits[split] = {
            "name": split,
            "num_samples": sum(s["num_samples"] for s in shards),
            "filenames": [s["name"] for s in shards],
            "shard_lengths": [s["num_samples"] for s in shards],
            "image_fields": image_fields(entry.get("params") or {}),
        }
    return {"name": name, "splits": splits}


def image_fields(params: dict[str, Any]) -> list[str]:
    """The image field(s) the samples of a split written with ``params`` have: one,
    ``image_format``, unless ``shard --keep-formats`` kept each file's own."""
    first = str(params.get("image_format", "jpg"))
    if params.get("keep_formats"):
        return sorted({first, "jpg", "png", "webp"})
    return [first]


def wids_name(split: str) -> str:
    return f"{split}{WIDS_SUFFIX}"


def wids_index(entry: dict[str, Any]) -> dict[str, Any]:
    """A WebDataset split's ``{split}.wids.json``, in the format ``widsindex create`` writes
    (``wids.ShardListDataset`` reads it): per shard its ``url`` (relative to the index),
    ``nsamples`` and ``filesize``. It names no folder, so a moved output stays right."""
    return {
        "__kind__": WIDS_KIND,
        "wids_version": 1,
        "shardlist": [{"url": s["name"], "nsamples": s["num_samples"], "filesize": s["bytes"]}
                      for s in entry.get("shards", [])],
    }


def write_info_json(out_dir: str | Path, split: str, shards: list) -> None:
    """Record one split's shards in ``_info.json`` (for shards written without a job)."""
    path = Path(out_dir) / INFO_NAME
    info = read_json(path, {"name": Path(out_dir).name, "splits": {}})
    info["splits"][split] = info_json({"splits": {split: {"shards": [
        s.to_json() if hasattr(s, "to_json") else s for s in shards]}}}, "")["splits"][split]
    info["splits"] = dict(sorted(info["splits"].items()))
    write_json_atomic(path, info)


def write_ledger(out_dir: str | Path, split: str, entry: dict[str, Any]) -> None:
    """Merge one split's entry into ``dataprep.json`` (for shards written without a job; jobs
    commit through :class:`dataprep.jobs.output.OutputFolder`, under its lock)."""
    from dataprep._version import __version__

    path = Path(out_dir) / LEDGER_NAME
    ledger = read_json(path, {"dataprep_version": __version__, "splits": {}})
    ledger["dataprep_version"] = __version__
    ledger["splits"][split] = entry
    ledger["splits"] = dict(sorted(ledger["splits"].items()))
    write_json_atomic(path, ledger)
