"""What every writing job shares: identity, disk budget, and the run around the output folder.

``run_job`` is the whole story of a writing verb: check the target and the inputs, take
the output folder's lock, identify each split (command, parameters, inputs), let the
output folder decide what is new, interrupted or complete (:mod:`dataprep.jobs.output`),
estimate the size, run the task over the records, and commit each split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

from dataprep.errors import DiskBudgetError, OutputError, UsageError
from dataprep.io.writers import (
    WRITERS,
    PackedGroup,
    TarPackingTask,
    current_lmdb_layout,
    make_writer,
    sample_json,
)
from dataprep.jobs.output import (
    OutputFolder,
    SplitOutput,
    SplitPlan,
    check_folder_sink,
    check_split_names,
)
from dataprep.records import Record, Sample
from dataprep.report import Report, human_bytes
from dataprep.runner import Task, execute, map_records, resolve_jobs
from dataprep.settings import RunSetting

Log = Callable[[str], None]
ESTIMATE_RECORDS = 12  # at most this many records are processed ahead to extrapolate the size
FREE_MARGIN = 0.95  # never plan to fill more than this fraction of the free space
FINGERPRINTS = ("stat", "content")


def command_line() -> str:
    return " ".join(["dataprep", *sys.argv[1:]]) if sys.argv and "dataprep" in sys.argv[0] else ""


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
    from dataprep.io.manifest import read_json

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


def source_inputs(source: Any) -> dict[str, Any]:
    """``run_job``'s ``inputs``, ``stream_files`` and ``input_errors`` for a scanned source."""
    from dataprep.io import lmdbread, readers

    files: list[str] | None = None
    if source.records is None:  # a stream of shards: they identify the inputs
        if source.kind == "lmdb":
            files = [os.path.join(env, "data.mdb")
                     for env in lmdbread.list_lmdbs(source.location)]
        else:
            files = list(readers.list_tar_shards(source.location))
    return {"inputs": [str(source.location)], "stream_files": files,
            "input_errors": list(getattr(source, "errors", None) or [])}


FINGERPRINT = RunSetting("--fingerprint", FINGERPRINTS, "stat")


def fingerprint_mode(mode: str) -> AbstractContextManager[None]:
    """Identify the inputs of the jobs run inside by ``mode``: ``stat`` (path, size and
    modification time of every input file, the default) or ``content`` (their sha256)."""
    return FINGERPRINT.use(mode)


def identities(command: str, params: dict[str, Any], splits: Iterable[str],
               records: Iterable[Record], default_split: str, mode: str,
               stream_files: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """Per split, what its output is made of: command, parameters (not --jobs) and inputs.
    One pass over ``records`` (which may be a packed RecordList); a stream's records are
    identified by its shard files instead."""
    FINGERPRINT.check(mode)
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


# what makes each verb's output smaller, in the words of its own flags
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


def run_job(
    command: str,
    records: Sequence[Record] | Iterable[Record],
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
    inputs: Sequence[str] = (),
    stream_files: Sequence[str] | None = None,
    input_errors: Sequence[dict[str, Any]] = (),
    fingerprint: str | None = None,
) -> Report:
    """Check, lock, plan (resume, budget), run the task over the records, commit each split.

    ``inputs``: the paths the run reads (the source; records' own files are checked too), which
    ``-o`` must not overlap. ``stream_files``: for a streamed shard source, its shard files
    (they identify the inputs). ``input_errors``: inputs the scan could not use (listed in
    ``errors.jsonl`` with the skipped images). ``fingerprint``: ``stat`` (size and mtime of
    every input file) or ``content`` (their bytes' sha256); default: :func:`fingerprint_mode`.
    """
    if fmt not in WRITERS:
        raise UsageError(f"--format {fmt!r} is not supported; choose one of {', '.join(WRITERS)}")
    layout = current_lmdb_layout()
    if layout != "dataprep":  # part of the identity; the default stays out (older outputs)
        if fmt != "lmdb":
            raise UsageError(f"--lmdb-layout {layout} applies to LMDB output; add --format lmdb")
        params = dict(params, lmdb_layout=layout)
    log = log or (lambda line: None)
    splits = list(splits)
    check_split_names(splits)
    if fmt == "folder":
        check_folder_sink(classes, (r.key for r in records) if isinstance(records, Sequence)
                          else ())
    out = OutputFolder(out_dir)
    out.check_target()
    listed: Sequence[Record]
    if not isinstance(records, Sequence):  # a stream: look at its head for the estimate only
        stream = iter(records)  # iterate once: a Source starts over on every iter()
        head = list(islice(stream, ESTIMATE_RECORDS))
        records, listed = chain(head, stream), head
    else:
        listed = records
        total = len(records) if total is None else total
    out.check_inputs([*inputs, *(stream_files or [])], listed if stream_files is None else ())
    idents = identities(command, params, splits, listed, default_split,
                        fingerprint or FINGERPRINT.current(), stream_files)
    for ident in idents.values():  # the class names go into the output (LMDB, ledger)
        ident["classes"] = list(classes)
    if fmt == "webdataset":  # workers pack the tar members: the writer appends bytes
        task = TarPackingTask(task)
    existed = out.path.is_dir()  # else it is made (and locked) only once the budget allows
    with out.locked(create=existed and not dry_run, shared=dry_run):
        plans = (out.plan(fmt, idents, overwrite, log, classes, dry_run=dry_run) if existed
                 else {s: SplitPlan("new") for s in idents})
        est, precomputed = _estimate(listed, records, total, plans, default_split, task, fmt,
                                     out.path, jobs, log)
        check_budget(est, out.path, max_disk, command)
        if dry_run:
            report = Report(command=command, out_dir=str(out.path), dry_run=True,
                            estimated_bytes=est.bytes)
            report.complete = [s for s, p in plans.items() if p.state == "complete"]
            return report
        with nullcontext() if existed else out.locked(create=True):
            if not existed:  # another run may have begun here since: plan under the lock
                plans = out.plan(fmt, idents, overwrite, log, classes)
            return _run(command, out, records, task, plans, idents, splits, est, precomputed,
                        fmt=fmt, classes=classes, max_count=max_count, max_bytes=max_bytes,
                        jobs=jobs, on_error=on_error, total=total, default_split=default_split,
                        input_errors=input_errors, lmdb_layout=layout)


def _run(command: str, out: OutputFolder, records: Any, task: Task,
         plans: dict[str, SplitPlan], idents: dict[str, dict[str, Any]], splits: list[str],
         est: Estimate, precomputed: dict, *, fmt: str, classes: list[str], max_count: int,
         max_bytes: int | None, jobs: int | None, on_error: str, total: int | None,
         default_split: str, input_errors: Sequence[dict[str, Any]],
         lmdb_layout: str = "dataprep") -> Report:
    """Run the task over the records into the planned splits (under the lock)."""
    complete = [s for s, p in plans.items() if p.state == "complete"]
    base = {"command": command, "command_line": command_line(), "params":
            idents[splits[0]]["params"] if splits else {}, "classes": classes}
    # what the scan could not read goes with the first split written, once: a resumed run
    # journaled it already
    errors_left = [] if any(p.point for p in plans.values()) else list(input_errors)

    def open_split(split: str) -> Any:
        plan = plans.get(split) or SplitPlan("new")
        header = {"identity": idents[split], "format": fmt,
                  "entry": base}
        stage = out.make_stage(split)
        writer = make_writer(fmt, out.path, split, max_count=max_count,
                             max_bytes=max_bytes, classes=classes,
                             resume=(plan.point or {}).get("writer") if plan.point else None,
                             stage_dir=stage, lmdb_layout=lmdb_layout)
        sink = SplitOutput(out, split, header, plan, writer)
        if plan.state == "new":
            while errors_left:  # what the scan could not read goes with the first split
                sink.note(dict(errors_left.pop(0), split=split))
        return sink

    report = execute(command, records, task, open_split, out.path, jobs=jobs,
                     on_error=on_error, total=total, default_split=default_split,
                     resume_after={s: int(p.point["next_record"]) for s, p in plans.items()
                                   if p.point},
                     skip_splits=frozenset(complete), precomputed=precomputed)
    report.complete = [s for s in complete if not plans[s].finished_now]
    report.finished = [s for s in complete if plans[s].finished_now]
    report.estimated_bytes = est.bytes
    return report


def _estimate(listed: Sequence[Record], records: Any, total: int | None,
              plans: dict[str, SplitPlan], default_split: str, task: Task, fmt: str,
              out: Path, jobs: int | None, log: Log,
              ) -> tuple[Estimate, dict[int, tuple[list[Sample] | None, str | None]]]:
    """The plan line: the size of what is left to write, from a few records processed now."""

    def pending(index: int, record: Record) -> bool:
        plan = plans.get(record.split or default_split, SplitPlan("new"))
        return plan.state != "complete" and index >= (plan.point or {}).get("next_record", 0)

    def todo() -> Iterator[tuple[int, Record]]:  # not a list: a million pairs weigh ~90 MB
        return ((i, r) for i, r in enumerate(listed) if pending(i, r))

    n_todo = sum(1 for _ in todo())
    est, precomputed = (estimate(todo(), n_todo, task, fmt, out, jobs=resolve_jobs(jobs))
                        if n_todo else (Estimate(0, 0, 0, _free_bytes(out)), {}))
    if listed is not records and total:  # a stream: scale the head's estimate to the total
        est = Estimate(total, est.samples * total // max(est.records, 1),
                       est.bytes * total // max(est.records, 1), est.free)
    if n_todo or any(p.state != "complete" for p in plans.values()):
        log(est.line(out))
    return est, precomputed
