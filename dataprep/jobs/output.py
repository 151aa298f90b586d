"""The output folder: the one object that creates, locks, journals, renames and deletes in -o.

Per split, the files of an output are:

* finished shards in place (``train-000003.tar``, ``train.lmdb/``, ``cat/img_v0.jpg``);
* ``.dataprep-tmp/{split}/``: unfinished shards (the stage folder, dataprep's own);
* ``.journal-{split}.jsonl``: the journal of a run in progress (:mod:`dataprep.journal`);
* its entry in ``dataprep.json``: **the commit point**. A split is complete when its entry is
  there and its journal is gone; ``_info.json``, ``{split}.wids.json`` (WebDataset) and
  ``errors.jsonl`` are derived from it.

The protocol, for every sink: a shard is written and synced in the stage folder; the journal
then names it (checkpoint line, synced); then it is renamed into place. The last checkpoint is
marked final, then the finish line holds the ledger entry; then the entry is merged into
``dataprep.json`` (under the lock: read, merge, write to a temporary name, sync, rename) and the
journal removed. A rerun reads the state: a journal with the same identity is recovered
(:meth:`OutputFolder.plan`): every shard it names is checked (size, sha256) and renamed into
place if still staged; a finished journal is committed; otherwise the run resumes after the
last checkpoint (LMDB: the checkpoint the environment's last commit holds). Nothing is deleted
unless the ledger or a journal names it (or it lies in the stage folder); a file in a split's
way that neither names is refused, by name.

Here: :class:`OutputFolder` (the checks before any work, the lock, the plan). Its parts: the
names and their checks (:mod:`~dataprep.jobs.output_names`), the lock
(:mod:`~dataprep.jobs.output_lock`), the ledger, derived files, stage folder and shards
(:mod:`~dataprep.jobs.output_files`), planning (:mod:`~dataprep.jobs.output_plan`), recovery
(:mod:`~dataprep.jobs.output_recovery`) and one split being written
(:mod:`~dataprep.jobs.split_output`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dataprep.errors import UsageError
from dataprep.jobs.output_files import FolderFiles, Log
from dataprep.jobs.output_lock import hold_lock
from dataprep.jobs.output_names import check_folder_sink, check_split_names, inside
from dataprep.jobs.output_plan import plan_splits
from dataprep.jobs.output_recovery import SplitPlan
from dataprep.jobs.split_output import SplitOutput
from dataprep.records import Record

__all__ = ["OutputFolder", "SplitOutput", "SplitPlan", "check_folder_sink", "check_split_names"]


class OutputFolder(FolderFiles):
    """An output folder ``-o``; see the module docstring for the protocol it keeps. Its
    ledger, derived files, stage folder and shards are handled by the base class
    (:class:`~dataprep.jobs.output_files.FolderFiles`); what a run does with each split is
    decided by :func:`~dataprep.jobs.output_plan.plan_splits`."""

    # -- before any work -----------------------------------------------------------------

    def check_target(self) -> None:
        """-o must be a folder or creatable as one: the nearest existing part decides."""
        for folder in (self.path, *self.path.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise UsageError(f"-o {self.path}: {folder} is a file, not a folder"
                                     if folder != self.path
                                     else f"-o {self.path} exists and is not a directory")
                return

    def check_inputs(self, inputs: Iterable[str], records: Iterable[Record] = ()) -> None:
        """Refuse an -o equal to, inside or holding any input path (the source given, and
        every record's file): the run would write where it reads."""
        out = os.path.realpath(self.path)
        out_abs = os.path.abspath(self.path)
        for src in inputs:
            if not src or "://" in src or src.startswith("pipe:"):
                continue
            real = os.path.realpath(src)
            if inside(out, real) or inside(real, out):
                where = ("is" if real == out else "is inside" if inside(out, real)
                         else "holds")
                raise UsageError(f"-o {self.path} {where} the input {src}; the run would write "
                                 "where it reads: choose an -o outside the inputs")
        dirs: dict[str, str] = {}
        for r in records:
            if not r.path or r.data is not None:
                continue
            head = os.path.dirname(r.path)
            real = dirs.get(head)
            if real is None:
                real = dirs[head] = os.path.realpath(head)
            if os.path.islink(r.path):  # a link into -o: where it leads counts
                real = os.path.realpath(r.path)
            if inside(real, out) or inside(head, out_abs):
                raise UsageError(f"-o {self.path} holds the input {r.path}; the run would write "
                                 "where it reads: choose an -o outside the inputs")

    # -- the lock ------------------------------------------------------------------------

    @contextmanager
    def locked(self, create: bool = True, shared: bool = False) -> Iterator[None]:
        """Hold the folder's lock (``flock`` on ``.dataprep.lock``) for the block: exclusive
        for a run, shared for verify. Another holder is an :class:`OutputError` naming its
        process id. Without ``create``, a folder or lock file that is not there is not
        created (nothing to protect)."""
        with hold_lock(self.path, create, shared) as held:
            if held:
                self._ledger = None  # another run may have committed since it was read
            yield

    # -- deciding what a run does --------------------------------------------------------

    def plan(self, fmt: str, identities: dict[str, dict[str, Any]], overwrite: bool,
             log: Log, classes: Sequence[str] = (), dry_run: bool = False,
             ) -> dict[str, SplitPlan]:
        """Per split: new, resume or complete (see the module docstring); everything is
        decided and checked before anything changes (:func:`~dataprep.jobs.output_plan.
        plan_splits`). ``dry_run``: decide only; nothing is changed."""
        return plan_splits(self, fmt, identities, overwrite, log, classes, dry_run)
