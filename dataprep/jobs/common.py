"""What every writing job shares: output preparation, the ledgers, and the run itself."""

from __future__ import annotations

import glob
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError
from dataprep.io.manifest import read_ledger, write_info_json, write_ledger
from dataprep.io.writers import TMP_SUFFIX, WRITERS, make_writer
from dataprep.records import Record
from dataprep.runner import Report, Task, execute


def command_line() -> str:
    return " ".join(["dataprep", *sys.argv[1:]]) if sys.argv and "dataprep" in sys.argv[0] else ""


def _split_outputs(out_dir: Path, split: str, fmt: str) -> list[Path]:
    if fmt == "webdataset":
        pats = [f"{split}-*.tar", f"{split}-*.tar{TMP_SUFFIX}"]
    elif fmt == "lmdb":
        pats = [f"{split}.lmdb", f"{split}.lmdb{TMP_SUFFIX}"]
    else:
        pats = []
    return [Path(p) for pat in pats for p in sorted(glob.glob(str(out_dir / pat)))]


def prepare_output(out_dir: str | Path, splits: Iterable[str], fmt: str, overwrite: bool) -> Path:
    """Create ``out_dir``; refuse to mix with earlier output of the same splits unless overwrite."""
    if fmt not in WRITERS:
        raise UsageError(f"--format {fmt!r} is not supported; choose one of {', '.join(WRITERS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    ledger = read_ledger(out)
    for split in splits:
        existing = _split_outputs(out, split, fmt)
        if fmt == "folder" and split in ledger.get("splits", {}):
            existing = [out]
        if split in ledger.get("splits", {}) or existing:
            if not overwrite:
                raise UsageError(
                    f"{out} already holds output for split {split!r}; pass --overwrite to "
                    "replace it, or choose another -o"
                )
            for path in existing:
                if path == out:
                    continue
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out


def run_job(
    command: str,
    records: list[Record] | Iterable[Record],
    task: Task,
    out_dir: str | Path,
    *,
    fmt: str,
    classes: list[str],
    params: dict[str, Any],
    splits: Iterable[str],
    jobs: int | None,
    on_error: str,
    overwrite: bool,
    max_count: int = 10_000,
    max_bytes: int | None = None,
    total: int | None = None,
    default_split: str = "train",
) -> Report:
    """Prepare the output, run the task over the records, write ``_info.json`` and the ledger."""
    out = prepare_output(out_dir, splits, fmt, overwrite)
    if total is None and isinstance(records, list):
        total = len(records)

    def writer_for(split: str):
        return make_writer(fmt, out, split, max_count=max_count, max_bytes=max_bytes,
                           classes=classes)

    report = execute(command, records, task, writer_for, out, jobs=jobs, on_error=on_error,
                     total=total, default_split=default_split)
    skipped_per_split: dict[str, int] = {}
    for e in report.errors:
        skipped_per_split[e["split"]] = skipped_per_split.get(e["split"], 0) + 1
    for split in sorted(report.records):
        shards = report.shards.get(split, [])
        if fmt == "webdataset":
            write_info_json(out, split, shards)
        write_ledger(out, split, {
            "command": command,
            "command_line": command_line(),
            "params": params,
            "format": fmt,
            "classes": classes,
            "records_in": report.records[split],
            "samples_out": report.counts.get(split, 0),
            "skipped": skipped_per_split.get(split, 0),
            "shards": [s.to_json() for s in shards],
        })
    return report
