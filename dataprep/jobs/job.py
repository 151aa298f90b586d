"""One writing job, start to end: the story every writing verb tells.

A verb (``resize``, ``tencrop``, ``augment``, ``shard``) builds its task and the two option
objects (:class:`~dataprep.options.OutputSpec`, :class:`~dataprep.options.RunOptions`), then
:func:`write_records` reads the input (:func:`read_input`) and :func:`run_job` does the rest:

1. **check**: the output folder is a place dataprep may write, away from the inputs;
2. **identify** each split (command, parameters, inputs: :mod:`dataprep.jobs.fingerprint`);
3. **plan**: the output folder decides, under its lock, what is new, interrupted or complete
   (:mod:`dataprep.jobs.output`);
4. **estimate** the size of what is left from a few records and check the budget
   (:mod:`dataprep.jobs.budget`);
5. **write**: the runner runs the task over the records (:mod:`dataprep.runner`) into one
   :class:`~dataprep.jobs.output.SplitOutput` per split, which checkpoints and commits.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields, replace
from itertools import chain, islice
from pathlib import Path
from typing import Any

from dataprep.cluster import active, cluster
from dataprep.io import lmdbread, readers
from dataprep.io.scan import scan
from dataprep.io.tarpack import TarPackingTask
from dataprep.io.writers import make_writer
from dataprep.jobs.budget import (
    ESTIMATE_RECORDS,
    Estimate,
    _free_bytes,
    check_budget,
    estimate,
)
from dataprep.jobs.fingerprint import identities
from dataprep.jobs.output import (
    OutputFolder,
    SplitOutput,
    SplitPlan,
    check_folder_sink,
    check_split_names,
)
from dataprep.options import OutputSpec, RunOptions
from dataprep.pool import resolve_jobs
from dataprep.records import Record, RecordList, Sample
from dataprep.report import Report
from dataprep.runner import Resume, Task, execute, prestart

Precomputed = dict[int, tuple[list[Sample] | None, str | None]]


def command_line() -> str:
    return " ".join(["dataprep", *sys.argv[1:]]) if sys.argv and "dataprep" in sys.argv[0] else ""


@dataclass(frozen=True)
class InputSpec:
    """What a verb reads: ``src`` (folder, list, manifest, shards; see
    :func:`dataprep.io.scan.scan`), ``root`` for a list's relative paths, ``split``: the one
    output split every record goes to (default: each record's own, else ``train``). A caller
    that has the records already (the ``run`` verb) passes them with their ``classes``."""

    src: str | Path
    root: str | Path | None = None
    split: str | None = None
    records: Sequence[Record] | None = None
    classes: list[str] | None = None


@dataclass
class JobInput:
    """The records of a job as read: a list, or a stream of shards read once; the class names,
    the output splits, and what identifies the inputs (``inputs``: the paths ``-o`` must not
    overlap; ``stream_files``: a stream's shard files; ``errors``: inputs the scan could not
    use, listed in errors.jsonl)."""

    records: Sequence[Record] | Iterable[Record]
    classes: list[str]
    splits: list[str]
    total: int | None = None
    inputs: list[str] = field(default_factory=list)
    stream_files: list[str] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def with_records(self, records: list[Record]) -> JobInput:
        """The same input with ``records`` (e.g. balanced or shuffled) listed in full."""
        return replace(self, records=records, total=None, stream_files=None,
                       splits=sorted({r.split or "train" for r in records}))


def _renamed(records: Any, split: str) -> Any:
    """Every record in ``split``, as the same kind of collection (streams stay streams)."""
    renamed = (replace(r, split=split) for r in records)
    if isinstance(records, RecordList):
        return RecordList(renamed)
    return list(renamed) if isinstance(records, list) else renamed


def read_input(spec: InputSpec, listed: bool = False) -> JobInput:
    """Scan ``spec.src`` (unless its records are given). Shards stay a stream unless
    ``listed`` (shuffling and balancing need the whole list)."""
    if spec.records is not None:
        got = JobInput(spec.records, list(spec.classes or []), [], len(spec.records),
                       [str(spec.src)])
    else:
        source = scan(spec.src, root=spec.root)
        got = JobInput(source.records if source.records is not None else source,
                       list(source.classes or []),
                       sorted({s or "train" for s in source.splits or []}) or ["train"],
                       len(source) if source.records is not None or source.num_records
                       else None, [str(source.location)], errors=list(source.errors or []))
        if listed:
            got = got.with_records(list(got.records))
        elif source.records is None:  # a stream of shards: they identify the inputs
            got.stream_files = ([os.path.join(env, "data.mdb") for env in lmdbread.list_lmdbs(
                source.location)] if source.kind == "lmdb"
                else list(readers.list_tar_shards(source.location)))
    if spec.split:
        got.records, got.splits = _renamed(got.records, spec.split), [spec.split]
    elif isinstance(got.records, Sequence):
        got.splits = sorted({r.split or "train" for r in got.records})
    return got


def verb_objects(args: dict[str, Any]) -> tuple[InputSpec, OutputSpec, RunOptions]:
    """A verb function's :class:`InputSpec`, :class:`~dataprep.options.OutputSpec` and
    :class:`~dataprep.options.RunOptions`, from its keyword arguments (``locals()``): each
    object takes the arguments named as its fields."""
    return tuple(cls(**{f.name: args[f.name] for f in fields(cls) if f.name in args})
                 for cls in (InputSpec, OutputSpec, RunOptions))  # type: ignore[return-value]


@contextmanager
def workers(options: RunOptions) -> Iterator[None]:
    """The run's workers: ``options.backend`` (the backend in force when it is None or already
    that one, e.g. a ``dataprep run`` table inside ``--backend dask``), the local pool started
    early (see :func:`dataprep.runner.prestart`)."""
    same = options.backend == active()[0] and options.scheduler is None
    with (cluster(options.backend, options.scheduler, jobs=options.jobs)
          if options.backend and not same else nullcontext()):
        prestart(options.jobs)
        yield


def write_records(command: str, inputs: InputSpec, task: Any, out_dir: str | Path,
                  output: OutputSpec, options: RunOptions) -> Report:
    """Read ``inputs`` and write ``task``'s samples of every record (resize, tencrop,
    augment); ``task.params()`` is the task's part of each split's identity."""
    with workers(options):
        source = read_input(inputs)
        params = dict(task.params(), src=str(inputs.src))
        return run_job(command, source, task, out_dir, output, options, params)


def run_job(command: str, source: JobInput, task: Task, out_dir: str | Path,
            output: OutputSpec, options: RunOptions, params: dict[str, Any]) -> Report:
    """Check, identify, plan (resume, budget), estimate, write; see the module docstring."""
    job = _Job(command, source, task, OutputFolder(out_dir), output, options,
               dict(params, **output.params()))
    job.check()
    idents = job.identify()
    existed, dry = job.out.path.is_dir(), options.dry_run
    with job.out.locked(create=existed and not dry, shared=dry):
        plans = job.plan(idents) if existed else {s: SplitPlan("new") for s in idents}
        est, precomputed = job.estimate(plans)
        check_budget(est, job.out.path, options.max_disk, command)
        if dry:
            return job.dry_report(plans, est)
        with nullcontext() if existed else job.out.locked(create=True):
            if not existed:  # another run may have begun here since: plan under the lock
                plans = job.plan(idents)
            return job.write(plans, idents, est, precomputed)


@dataclass
class _Job:
    """The state :func:`run_job` carries from one step to the next."""

    command: str
    source: JobInput
    task: Task
    out: OutputFolder
    output: OutputSpec
    options: RunOptions
    params: dict[str, Any]
    listed: Sequence[Record] = ()  # the records known before the run (a stream: its head)

    def check(self) -> None:
        """The split names, the folder sink's names, the target folder and the inputs."""
        src = self.source
        check_split_names(src.splits)
        if self.output.fmt == "folder":
            check_folder_sink(src.classes, (r.key for r in src.records)
                              if isinstance(src.records, Sequence) else ())
        self.out.check_target()
        if isinstance(src.records, Sequence):
            self.listed = src.records
        else:  # a stream: look at its head for the estimate only, iterate it once
            stream = iter(src.records)
            self.listed = list(islice(stream, ESTIMATE_RECORDS))
            src.records = chain(self.listed, stream)
        self.out.check_inputs([*src.inputs, *(src.stream_files or [])],
                              self.listed if src.stream_files is None else ())

    def identify(self) -> dict[str, dict[str, Any]]:
        """Per split: command, parameters, inputs and class names (see
        :func:`dataprep.jobs.fingerprint.identities`)."""
        idents = identities(self.command, self.params, self.source.splits, self.listed,
                            "train", self.options.fingerprint, self.source.stream_files)
        for ident in idents.values():  # the class names go into the output (LMDB, ledger)
            ident["classes"] = list(self.source.classes)
        return idents

    def plan(self, idents: dict[str, dict[str, Any]]) -> dict[str, SplitPlan]:
        return self.out.plan(self.output.fmt, idents, self.options.overwrite,
                             self.options.say, self.source.classes,
                             dry_run=self.options.dry_run)

    @property
    def total(self) -> int | None:
        if isinstance(self.source.records, Sequence) and self.source.total is None:
            return len(self.source.records)
        return self.source.total

    def packed_task(self) -> Task:
        """WebDataset workers pack the tar members themselves: the writer appends bytes."""
        return TarPackingTask(self.task) if self.output.fmt == "webdataset" else self.task

    def estimate(self, plans: dict[str, SplitPlan]) -> tuple[Estimate, Precomputed]:
        """The plan line: the size of what is left to write, from a few records processed
        now (their results are kept for the run)."""

        def pending(index: int, record: Record) -> bool:
            plan = plans.get(record.split or "train", SplitPlan("new"))
            return plan.state != "complete" and index >= (plan.point or {}).get(
                "next_record", 0)

        def todo() -> Iterator[tuple[int, Record]]:  # not a list: a million pairs weigh ~90 MB
            return ((i, r) for i, r in enumerate(self.listed) if pending(i, r))

        n_todo = sum(1 for _ in todo())
        est, precomputed = (estimate(todo(), n_todo, self.packed_task(), self.output.fmt,
                                     self.out.path, jobs=resolve_jobs(self.options.jobs))
                            if n_todo else (Estimate(0, 0, 0, _free_bytes(self.out.path)), {}))
        total = self.total
        if self.listed is not self.source.records and total:  # a stream: scale the head's
            est = Estimate(total, est.samples * total // max(est.records, 1),
                           est.bytes * total // max(est.records, 1), est.free)
        if n_todo or any(p.state != "complete" for p in plans.values()):
            self.options.say(est.line(self.out.path))
        return est, precomputed

    def dry_report(self, plans: dict[str, SplitPlan], est: Estimate) -> Report:
        report = Report(command=self.command, out_dir=str(self.out.path), dry_run=True,
                        estimated_bytes=est.bytes)
        report.complete = [s for s, p in plans.items() if p.state == "complete"]
        return report

    def write(self, plans: dict[str, SplitPlan], idents: dict[str, dict[str, Any]],
              est: Estimate, precomputed: Precomputed) -> Report:
        """Run the task over the records into the planned splits (under the lock)."""
        complete = [s for s, p in plans.items() if p.state == "complete"]
        resume = Resume(after={s: int(p.point["next_record"]) for s, p in plans.items()
                               if p.point},
                        skip_splits=frozenset(complete), precomputed=precomputed)
        report = execute(self.command, self.source.records, self.packed_task(),
                         _SplitOpener(self, plans, idents), self.out.path, self.options,
                         total=self.total, resume=resume)
        report.complete = [s for s in complete if not plans[s].finished_now]
        report.finished = [s for s in complete if plans[s].finished_now]
        report.estimated_bytes = est.bytes
        return report


class _SplitOpener:
    """``open_split`` for the runner: the :class:`SplitOutput` of a split, with its writer
    (resumed where the plan says) and, for the first split begun anew, what the scan could not
    read (a resumed run journaled it already)."""

    def __init__(self, job: _Job, plans: dict[str, SplitPlan],
                 idents: dict[str, dict[str, Any]]) -> None:
        self.job, self.plans, self.idents = job, plans, idents
        splits = job.source.splits
        self.entry = {"command": job.command, "command_line": command_line(),
                      "params": idents[splits[0]]["params"] if splits else {},
                      "classes": job.source.classes}
        self.errors_left = ([] if any(p.point for p in plans.values())
                            else list(job.source.errors))

    def __call__(self, split: str) -> SplitOutput:
        job, plan = self.job, self.plans.get(split) or SplitPlan("new")
        header = {"identity": self.idents[split], "format": job.output.fmt,
                  "entry": self.entry}
        spec = job.output
        writer = make_writer(spec.fmt, job.out.path, split, max_count=spec.max_count,
                             max_bytes=spec.max_bytes, classes=job.source.classes,
                             resume=(plan.point or {}).get("writer") if plan.point else None,
                             stage_dir=job.out.make_stage(split), lmdb_layout=spec.lmdb_layout)
        sink = SplitOutput(job.out, split, header, plan, writer)
        if plan.state == "new":
            while self.errors_left:
                sink.note(dict(self.errors_left.pop(0), split=split))
        return sink
