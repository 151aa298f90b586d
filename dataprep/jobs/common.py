"""What every writing job shares: the disk budget, resume and overwrite rules, the run, and the
ledgers.

Per split, an output folder is in one of these states, decided before anything is written:

* **complete**: its ``dataprep.json`` entry has the same fingerprint (command, parameters and
  input records) and every shard still has its recorded size and sha256: nothing to do;
* **interrupted**: a journal with the same fingerprint exists: finished shards are checked
  (size, sha256) and kept, and the run resumes after the last checkpoint;
* **foreign**: output from another command, other parameters or other inputs: refused unless
  ``--overwrite`` (which removes it first);
* **new**.
"""

from __future__ import annotations

import glob
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

from dataprep.errors import DiskBudgetError, UsageError
from dataprep.io.manifest import read_ledger, write_info_json, write_ledger
from dataprep.io.writers import (
    TMP_SUFFIX,
    WRITERS,
    PackedGroup,
    TarPackingTask,
    make_writer,
    sample_json,
    sha256_file,
)
from dataprep.journal import Journal
from dataprep.records import Record, Sample
from dataprep.report import Report, human_bytes
from dataprep.runner import Task, execute, map_records, resolve_jobs

Log = Callable[[str], None]
ESTIMATE_RECORDS = 12  # at most this many records are processed ahead to extrapolate the size
FREE_MARGIN = 0.95  # never plan to fill more than this fraction of the free space


def command_line() -> str:
    return " ".join(["dataprep", *sys.argv[1:]]) if sys.argv and "dataprep" in sys.argv[0] else ""


def fingerprint(command: str, params: dict[str, Any], records: Iterable[Record]) -> str:
    """Identity of a split's output: command, parameters (not --jobs) and input records."""
    h = _fingerprint_start(command, params)
    for r in records:
        _fingerprint_add(h, r)
    return h.hexdigest()


def _fingerprint_start(command: str, params: dict[str, Any]) -> Any:
    return hashlib.sha256(json.dumps({"command": command, "params": params}, sort_keys=True,
                                     default=str).encode())


def _fingerprint_add(h: Any, r: Record) -> None:
    size = len(r.data) if r.data is not None else -1
    h.update(f"{r.key}\t{r.path}\t{r.label}\t{r.split}\t{size}\n".encode("utf-8", "surrogatepass"))


def split_outputs(out_dir: Path, split: str, fmt: str) -> list[Path]:
    """Files and folders a split's output consists of (finished and temporary)."""
    if fmt == "webdataset":
        pats = [f"{split}-*.tar", f"{split}-*.tar{TMP_SUFFIX}"]
    elif fmt == "lmdb":
        pats = [f"{split}.lmdb", f"{split}.lmdb{TMP_SUFFIX}"]
    else:
        pats = []
    return [Path(p) for pat in pats for p in sorted(glob.glob(str(out_dir / pat)))]


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def shards_intact(out_dir: Path, shards: list[dict[str, Any]]) -> bool:
    """Every shard exists with its recorded size and sha256."""
    for s in shards:
        path = out_dir / s["name"]
        if not path.is_file() or path.stat().st_size != s["bytes"]:
            return False
        if sha256_file(path) != s["sha256"]:
            return False
    return True


@dataclass
class SplitPlan:
    state: str  # complete | resume | new
    resume: dict[str, Any] | None = None


def plan_splits(out: Path, fmt: str, fingerprints: dict[str, str], overwrite: bool,
                log: Log) -> dict[str, SplitPlan]:
    """Decide, per split, what this run does with the output already there (module docstring)."""
    ledger = read_ledger(out)
    plans: dict[str, SplitPlan] = {}
    for split, fp in fingerprints.items():
        entry = ledger.get("splits", {}).get(split)
        journal = Journal(out, split)
        journal_fp, point = journal.load()
        outputs = split_outputs(out, split, fmt)
        if overwrite:
            _remove(outputs)
            journal.remove()
            plans[split] = SplitPlan("new")
            continue
        if (entry is not None and journal_fp is None and entry.get("records_in")
                and not entry.get("samples_out")):
            # a finished run that wrote nothing (every input skipped): nothing to keep, so the
            # split is done again (a rerun reports the failure again, a fixed input gets in)
            _remove(outputs)
            plans[split] = SplitPlan("new")
            continue
        if entry is not None and entry.get("fingerprint") == fp and journal_fp is None:
            if shards_intact(out, entry.get("shards", [])):
                plans[split] = SplitPlan("complete")
                continue
            log(f"{split}: a finished shard changed or is missing; writing the split again")
            _remove(outputs)
            plans[split] = SplitPlan("new")
            continue
        if journal_fp == fp:
            finished = (point or {}).get("writer", {}).get("shards", [])
            if point is not None and not shards_intact(out, finished):
                log(f"{split}: a finished shard of the interrupted run changed; starting over")
                point = None
            keep = {out / s["name"] for s in finished} if point else set()
            if fmt == "lmdb" and point is not None:
                keep.add(out / f"{split}.lmdb{TMP_SUFFIX}")
            _remove(p for p in outputs if p not in keep)
            plans[split] = SplitPlan("resume" if point else "new", point)
            continue
        if entry is not None or journal_fp is not None or outputs:
            raise UsageError(
                f"{out} already holds output for split {split!r} from another command, other "
                "parameters or other inputs; pass --overwrite to replace it, or choose another -o"
            )
        plans[split] = SplitPlan("new")
    return plans


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


def check_budget(est: Estimate, out: Path, max_disk: int | None) -> None:
    limit, what = est.free * FREE_MARGIN, f"{human_bytes(est.free)} free at {out}"
    if max_disk is not None and max_disk < limit:
        limit, what = max_disk, f"--max-disk {human_bytes(max_disk)}"
    if est.bytes > limit:
        raise DiskBudgetError(
            f"the output needs about {human_bytes(est.bytes)} but there is only {what}; nothing "
            "was written. Ways out: --views lazy (each record stored once, expanded when read), "
            "a lower --quality, fewer views (--five), or -o on a larger disk"
        )


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
    max_disk: int | None = None,
    dry_run: bool = False,
    log: Log | None = None,
) -> Report:
    """Plan (budget, resume), run the task over the records, then write the ledgers."""
    if fmt not in WRITERS:
        raise UsageError(f"--format {fmt!r} is not supported; choose one of {', '.join(WRITERS)}")
    log = log or (lambda line: None)
    out = Path(out_dir)
    for folder in (out, *out.parents):  # before any work: the nearest existing one decides
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"-o {out}: {folder} is a file, not a folder" if folder != out
                                 else f"-o {out} exists and is not a directory")
            break
    listed: Sequence[Record]
    if not isinstance(records, Sequence):  # a stream: look at its head for the estimate only
        stream = iter(records)  # iterate once: a Source starts over on every iter()
        head = list(islice(stream, ESTIMATE_RECORDS))
        records, listed = chain(head, stream), head
    else:
        listed = records
        total = len(records) if total is None else total
    hashers = {s: _fingerprint_start(command, params) for s in splits}
    for r in listed:  # one pass, nothing held: the records may be a packed RecordList
        h = hashers.get(r.split or default_split)
        if h is not None:
            _fingerprint_add(h, r)
    fingerprints = {s: h.hexdigest() for s, h in hashers.items()}
    clean = {k: v for k, v in params.items() if k != "jobs"}
    plans = plan_splits(out, fmt, fingerprints, overwrite, log) if out.exists() else {
        s: SplitPlan("new") for s in fingerprints}

    def pending(index: int, record: Record) -> bool:
        plan = plans.get(record.split or default_split, SplitPlan("new"))
        return plan.state != "complete" and index >= (plan.resume or {}).get("next_record", 0)

    def todo() -> Iterator[tuple[int, Record]]:  # not a list: a million pairs weigh ~90 MB
        return ((i, r) for i, r in enumerate(listed) if pending(i, r))

    if fmt == "webdataset":  # workers pack the tar members: the writer appends bytes
        task = TarPackingTask(task)
    n_todo = sum(1 for _ in todo())
    est, precomputed = (estimate(todo(), n_todo, task, fmt, out, jobs=resolve_jobs(jobs))
                        if n_todo else (Estimate(0, 0, 0, _free_bytes(out)), {}))
    if listed is not records and total:  # a stream: scale the head's estimate to the total
        est = Estimate(total, est.samples * total // max(est.records, 1),
                       est.bytes * total // max(est.records, 1), est.free)
    report_complete = [s for s, p in plans.items() if p.state == "complete"]
    if n_todo or len(report_complete) < len(plans):
        log(est.line(out))
    check_budget(est, out, max_disk)
    if dry_run:
        report = Report(command=command, out_dir=str(out), dry_run=True, estimated_bytes=est.bytes)
        report.complete = report_complete
        return report
    out.mkdir(parents=True, exist_ok=True)
    journals = {}
    for split, fp in fingerprints.items():
        plan = plans[split]
        if plan.state == "new":
            journals[split] = Journal(out, split)
            journals[split].start(fp)
        elif plan.state == "resume":
            journals[split] = Journal(out, split)

    def writer_for(split: str, resume: dict | None):
        return make_writer(fmt, out, split, max_count=max_count, max_bytes=max_bytes,
                           classes=classes, resume=resume)

    report = execute(command, records, task, writer_for, out, jobs=jobs, on_error=on_error,
                     total=total, default_split=default_split,
                     resume={s: p.resume for s, p in plans.items() if p.resume},
                     skip_splits=frozenset(report_complete), journals=journals,
                     precomputed=precomputed)
    report.complete = report_complete
    report.estimated_bytes = est.bytes
    skipped_per_split: dict[str, int] = {}
    for e in report.errors:
        skipped_per_split[e["split"]] = skipped_per_split.get(e["split"], 0) + 1
    for split in sorted(report.records):
        if split in report_complete:
            continue
        shards = report.shards.get(split, [])
        if fmt == "webdataset":
            write_info_json(out, split, shards)
        write_ledger(out, split, {
            "command": command,
            "command_line": command_line(),
            "params": clean,
            "fingerprint": fingerprints.get(split) or fingerprint(command, params, []),
            "format": fmt,
            "classes": classes,
            "records_in": report.records[split],
            "samples_out": report.counts.get(split, 0),
            "skipped": skipped_per_split.get(split, 0),
            "shards": [s.to_json() for s in shards],
        })
        if split in journals:
            journals[split].remove()
    return report
