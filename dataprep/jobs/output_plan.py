"""Deciding what a run does with each split of an output folder, before anything changes:
new, resume, complete, or a refusal naming why (other output, files dataprep did not write,
a ledger or journal that was edited). Only then is the plan carried out: interrupted runs
recovered (:mod:`dataprep.jobs.output_recovery`), replaced splits removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from dataprep.errors import OutputError
from dataprep.io import durable
from dataprep.io.caffe import SIDECAR as CAFFE_SIDECAR
from dataprep.io.foldersink import safe_name
from dataprep.io.manifest import INFO_NAME, LEDGER_NAME, wids_name
from dataprep.io.staging import STAGE_NAME, sha256_file
from dataprep.jobs.output_files import FolderFiles, Log
from dataprep.jobs.output_names import ERRORS_NAME, owns
from dataprep.jobs.output_recovery import SplitPlan, lmdb_checkpoints, recover
from dataprep.journal import Journal, JournalState


def plan_splits(folder: FolderFiles, fmt: str, identities: dict[str, dict[str, Any]],
                overwrite: bool, log: Log, classes: Sequence[str] = (), dry_run: bool = False,
                ) -> dict[str, SplitPlan]:
    """Per split: new, resume or complete (:mod:`dataprep.jobs.output`). Everything is
    decided and checked before anything is changed: other commands' output is refused
    unless ``overwrite``, and so are files in the way that no ledger or journal names.
    ``dry_run``: decide only (what a run would do); nothing is changed."""
    _check_ledger_names(folder)
    decisions = {split: _decide(folder, split, fmt, ident, overwrite)
                 for split, ident in identities.items()}
    _refuse_strangers(folder, fmt, {s: state for s, (what, state) in decisions.items()
                                    if what != "complete"}, classes)
    if dry_run:
        return {split: _foresee(folder, split, fmt, what, state)
                for split, (what, state) in decisions.items()}
    for name in (LEDGER_NAME, INFO_NAME, ERRORS_NAME):  # write_atomic's own temp names
        durable.unlink(folder.path / f".{name}.tmp")
    for split in decisions:
        durable.unlink(folder.path / f".{wids_name(split)}.tmp")
    plans = {}
    for split, (what, state) in decisions.items():
        if what == "recover":
            assert state is not None
            plans[split] = recover(folder, split, fmt, state, log)
            continue
        if what == "redo":
            log(f"{split}: a finished shard changed or is missing; writing the split again")
        if what in ("redo", "replace"):
            folder.remove_split(split)
        else:  # new or complete: without a journal (or with a torn one) nothing resumes
            Journal(folder.path, split).remove()
            folder.drop_stage(split)
        if what == "complete":  # derived: written again when missing (older output)
            folder.restore_derived(split, log)
        plans[split] = SplitPlan("complete" if what == "complete" else "new")
    return plans


def _check_ledger_names(folder: FolderFiles) -> None:
    """Every shard the ledger names is a name of its split's own, claimed once."""
    claimed: dict[str, str] = {}
    for split, entry in folder.ledger()["splits"].items():
        fmt = str(entry.get("format", "webdataset"))
        for shard in entry.get("shards", []):
            name = shard["name"]
            other = claimed.setdefault(name, split)
            if other != split or not owns(split, fmt, name):
                raise OutputError(
                    f"{folder.path / LEDGER_NAME} names {name[:80]!r} for split {split!r}"
                    + (f" (and for {other!r})" if other != split else
                       ", which is not a name dataprep gives that split's shards")
                    + "; the ledger was edited: restore it, or move the folder's content "
                    "away")
            folder.named(name)


def _check_journal(folder: FolderFiles, split: str, fmt: str, state: JournalState) -> None:
    """Every shard a journal names is the split's own, staged in its stage folder."""
    stage = f"{STAGE_NAME}/{split}/"
    for f in state.files():
        name, tmp = str(f.get("name", "")), str(f.get("tmp", ""))
        final = str(f.get("final", name))
        if (not owns(split, fmt, name) or not tmp.startswith(stage) or ".." in tmp
                or final not in (name, f"{split}.lmdb")):
            raise Journal(folder.path, split).damaged(f"it names {name[:80]!r}, not a shard "
                                                      f"of split {split!r}")


def _foresee(folder: FolderFiles, split: str, fmt: str, what: str, state: JournalState | None,
             ) -> SplitPlan:
    """The plan a run would make, read only (for --dry-run)."""
    if what == "complete":
        return SplitPlan("complete")
    if what != "recover" or state is None:
        return SplitPlan("new")
    if state.finish is not None:
        return SplitPlan("complete")
    checkpoints = (lmdb_checkpoints(folder, split, state.checkpoints) if fmt == "lmdb"
                   else state.checkpoints)
    return SplitPlan("resume", checkpoints[-1]) if checkpoints else SplitPlan("new")


def _decide(folder: FolderFiles, split: str, fmt: str, identity: dict[str, Any], overwrite: bool,
            ) -> tuple[str, JournalState | None]:
    """What to do with one split, without changing anything: ``new``, ``replace`` (remove
    what the ledger and journal name first), ``redo`` (the same, a shard being damaged),
    ``recover`` (an interrupted run of this identity) or ``complete``; refusals raise."""
    try:
        state = Journal(folder.path, split).load()
        if state is not None:
            _check_journal(folder, split, fmt, state)
    except OutputError:
        if not overwrite:
            raise
        state = None
    if overwrite:
        return "replace", None
    if state is not None:
        old = state.header.get("identity", {})
        if old != identity or state.header.get("format") != fmt:
            raise _refusal(folder, split, old, identity, state.header.get("format"), fmt,
                           "an interrupted run")
        return "recover", state
    entry = folder.ledger()["splits"].get(split)
    if entry is None:
        return "new", None
    if entry.get("records_in") and not entry.get("samples_out") and not entry.get("shards"):
        # a finished run that wrote nothing (every input skipped): nothing to keep, so the
        # split is done again (a rerun reports the failure again, a fixed input gets in)
        return "replace", None
    if entry.get("identity") != identity or entry.get("format") != fmt:
        raise _refusal(folder, split, entry.get("identity"), identity, entry.get("format"),
                       fmt, "output")
    shards = entry.get("shards", [])
    whole = sum(sh["num_samples"] for sh in shards) == entry.get("samples_out") and (
        bool(shards) or not entry.get("samples_out"))
    return ("complete" if whole and _intact(folder, shards) else "redo"), None


def _refusal(folder: FolderFiles, split: str, old: Any, new: dict[str, Any], old_fmt: Any,
             fmt: str, what: str) -> OutputError:
    return OutputError(
        f"{folder.path} already holds {what} for split {split!r} "
        f"{describe_difference(old, new, old_fmt, fmt)}; pass --overwrite to replace it, "
        "or choose another -o")


def _intact(folder: FolderFiles, shards: list[dict[str, Any]]) -> bool:
    """Every shard exists with its recorded size and sha256."""
    for s in shards:
        path = folder.named(s["name"])
        if not path.is_file() or path.stat().st_size != s["bytes"]:
            return False
        if sha256_file(path) != s["sha256"]:
            return False
    return True


def _refuse_strangers(folder: FolderFiles, fmt: str, splits: dict[str, JournalState | None],
                      classes: Sequence[str]) -> None:
    """Files where these splits' shards go that no ledger entry or journal names."""
    known = {s["name"] for e in folder.ledger()["splits"].values() for s in e.get("shards", [])}
    known |= {wids_name(s) for s in folder.ledger()["splits"]}
    for split, state in splits.items():
        if state is not None:
            known |= {str(f.get("name")) for f in state.files()}
            known.add(wids_name(split))  # a commit cut short may have written it
    strangers: list[str] = []
    for split in splits:
        strangers += [n for n in _namespace(folder, fmt, split, classes) if n not in known]
    if _foreign_errors_file(folder):
        strangers.append(ERRORS_NAME)
    if strangers:
        shown = ", ".join(sorted(strangers)[:5])
        more = f" and {len(strangers) - 5} more" if len(strangers) > 5 else ""
        raise OutputError(
            f"{folder.path} holds files where this run would write that dataprep did not "
            f"write there (no dataprep.json entry or journal names them): {shown}{more}; "
            "move them away, or choose another -o")


def _foreign_errors_file(folder: FolderFiles) -> bool:
    """Whether ``errors.jsonl`` holds a line dataprep does not write (a JSON object naming
    its split, or the command, as ``stats`` does): the run rewrites that file, so a file of
    someone else's is refused."""
    path = folder.path / ERRORS_NAME
    if not path.is_file() or path.is_symlink():
        return False
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            if not any(isinstance(entry.get(k), str) for k in ("split", "command")):
                return True
        except (ValueError, AttributeError):
            return True
    return False


def _namespace(folder: FolderFiles, fmt: str, split: str, classes: Sequence[str]) -> list[str]:
    """Names in the folder that look like output of ``split`` in ``fmt``."""
    if not folder.path.is_dir():
        return []
    if fmt == "webdataset":
        pattern = re.compile(rf"{re.escape(split)}-\d+\.tar(\.tmp)?|"
                             rf"{re.escape(wids_name(split))}")
        return [p.name for p in folder.path.iterdir() if pattern.fullmatch(p.name)]
    if fmt == "lmdb":
        env = folder.path / f"{split}.lmdb"
        found = [f"{split}.lmdb.tmp"] if (folder.path / f"{split}.lmdb.tmp").exists() else []
        if env.is_dir():
            found += [f"{split}.lmdb/{p.name}" for p in env.iterdir()
                      if p.name not in ("lock.mdb", CAFFE_SIDECAR)]
        elif env.exists():
            found.append(env.name)
        return found
    found = []
    for name in dict.fromkeys(safe_name(str(c)) for c in classes):
        class_dir = folder.path / name
        if class_dir.is_dir():
            found += [f"{name}/{p.name}" for p in class_dir.iterdir()]
        elif class_dir.exists():
            found.append(name)
    return found


def describe_difference(old: Any, new: dict[str, Any], old_fmt: Any, fmt: str) -> str:
    """Words for how an existing split's identity differs from this run's."""
    if not isinstance(old, dict) or "command" not in old:
        return "written by an earlier version of dataprep"
    if old.get("command") != new.get("command"):
        return f"written by `dataprep {old.get('command')}`, not `dataprep {new.get('command')}`"
    if old_fmt != fmt:
        return f"in --format {old_fmt}, not {fmt}"
    a, b = old.get("params", {}), new.get("params", {})
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if changed:
        shown = ", ".join(f"{k.replace('_', '-')} {a.get(k)!r} -> {b.get(k)!r}"
                          for k in changed[:4])
        return f"with other parameters ({shown})"
    if old.get("classes") != new.get("classes"):
        return "with other class names (classes.json or the source's classes changed)"
    if old.get("records") != new.get("records"):
        return (f"from other inputs ({old.get('records')} records then, "
                f"{new.get('records')} now)")
    return "from other inputs (the same number of records, but files changed since)"
