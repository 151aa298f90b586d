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
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import DataprepError, OutputError, UsageError
from dataprep.io import durable
from dataprep.io.caffe import SIDECAR as CAFFE_SIDECAR
from dataprep.io.foldersink import safe_name
from dataprep.io.lmdbread import caffe_entries, read_caffe_sidecar
from dataprep.io.manifest import INFO_NAME, LEDGER_NAME, info_json, read_ledger, wids_name
from dataprep.io.staging import STAGE_NAME, ShardInfo, Staged, Writer, sha256_file
from dataprep.journal import Journal, JournalState
from dataprep.records import Record, Sample

LOCK_NAME = ".dataprep.lock"
ERRORS_NAME = "errors.jsonl"
SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")
Log = Callable[[str], None]


MAX_SPLIT_NAME = 64
MAX_NAME_BYTES = 240  # a file name's bytes (most file systems allow 255)
RESERVED = {LEDGER_NAME, INFO_NAME, ERRORS_NAME, LOCK_NAME, STAGE_NAME}


def check_split_names(splits: Iterable[str]) -> None:
    for split in splits:
        if not SPLIT_NAME.fullmatch(split or "") or len(split) > MAX_SPLIT_NAME:
            raise UsageError(f"split name {split!r:.80} is not allowed: use letters, digits, _ "
                             f"and - only, at most {MAX_SPLIT_NAME} (e.g. --split train)")


def check_folder_sink(classes: Sequence[str], keys: Iterable[str]) -> None:
    """What the folder sink would name folders and files is possible, none of dataprep's own
    names, and one folder a class (also when names differ only in case: some file systems do
    not tell those apart); refused before any work otherwise."""
    seen: dict[str, str] = {}
    for name in classes:
        folder = safe_name(str(name))
        if (folder in RESERVED or folder.startswith(".") or folder.endswith((".tar", ".lmdb"))
                or len(folder.encode()) > MAX_NAME_BYTES):
            raise UsageError(f"class {str(name)[:80]!r} would be the folder {folder[:80]!r}, "
                             "which --format folder cannot use (a name dataprep keeps for its "
                             "own files, or too long); rename the class")
        other = seen.setdefault(folder.casefold(), name)
        if other != name:
            raise UsageError(f"classes {other!r} and {name!r} would both be written to the "
                             f"folder {folder!r} by --format folder (their labels would "
                             "merge); rename one of them or use webdataset or lmdb")
    for key in keys:
        if len(safe_name(key).encode()) > MAX_NAME_BYTES - 16:
            raise UsageError(f"key {key[:60]!r}... is too long for a file name of --format "
                             "folder; use shorter file names, or webdataset or lmdb")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


@dataclass
class SplitPlan:
    """What a run does with one split: ``new``, ``resume`` (after ``point``, with the shards
    ``files`` already in place), or ``complete`` (left as it is)."""

    state: str
    point: dict[str, Any] | None = None
    files: list[ShardInfo] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    finished_now: bool = False  # an interrupted run's last step was done by this plan


def _write_derived(path: Path, want: Any) -> bool:
    """Write ``want`` (a file derived from the ledger) to ``path`` unless it already holds
    it; a missing or damaged file is written again. Whether it was written."""
    from dataprep.io.manifest import read_json, write_json_atomic

    try:
        if read_json(path) == want:
            return False
    except OutputError:
        pass  # damaged: derived, so written again
    write_json_atomic(path, want)
    return True


class OutputFolder:
    """An output folder ``-o``; see the module docstring for the protocol it keeps."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ledger: dict[str, Any] | None = None

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
            if _inside(out, real) or _inside(real, out):
                where = ("is" if real == out else "is inside" if _inside(out, real)
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
            if _inside(real, out) or _inside(head, out_abs):
                raise UsageError(f"-o {self.path} holds the input {r.path}; the run would write "
                                 "where it reads: choose an -o outside the inputs")

    # -- the lock ------------------------------------------------------------------------

    @contextmanager
    def locked(self, create: bool = True, shared: bool = False) -> Iterator[None]:
        """Hold the folder's lock (``flock`` on ``.dataprep.lock``) for the block: exclusive
        for a run, shared for verify. Another holder is an :class:`OutputError` naming its
        process id. Without ``create``, a folder or lock file that is not there is not
        created (nothing to protect)."""
        lock = self.path / LOCK_NAME
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not lock.exists():
            yield
            return
        flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
        try:
            fd = os.open(lock, flags | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            raise OutputError(f"{lock}: cannot open the folder's lock file ({exc.strerror}); "
                              "it must be a plain file dataprep can write") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(f"{lock}: the folder's lock file is not a plain file; remove it")
        held = False
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("ascii", "replace").split()
                pid = holder[0] if holder else "unknown"
                raise OutputError(
                    f"another dataprep run (pid {pid}) is writing to {self.path}; wait for it "
                    "to finish, or choose another -o") from None
            if not shared and create:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            held = True
            self._ledger = None
            yield
        finally:
            if held and not shared and create:
                os.ftruncate(fd, 0)  # no holder now
            os.close(fd)  # releases the lock

    # -- the ledger ----------------------------------------------------------------------

    def ledger(self) -> dict[str, Any]:
        if self._ledger is None:
            self._ledger = read_ledger(self.path)
        return self._ledger

    def _named(self, name: str) -> Path:
        """A shard name from a ledger or journal as a path inside this folder (a name that
        would leave it is damage, never followed)."""
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts or "\0" in name:
            raise OutputError(f"{self.path / LEDGER_NAME} names {name!r}, which is not a path "
                              "inside the folder; the ledger is damaged or was edited")
        path = self.path / name
        self.check_inside(path)
        return path

    def check_inside(self, path: Path) -> None:
        """``path``'s folder is this folder or below it once links are resolved: dataprep
        never writes or deletes through a link that leads out of -o."""
        root = os.path.realpath(self.path)
        if not _inside(os.path.realpath(path.parent), root):
            raise OutputError(f"{path} lies behind a symbolic link that leaves {self.path}; "
                              "dataprep does not write or delete through it: remove the link")

    def commit(self, split: str, entry: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        """Make ``entry`` the split's ledger entry: ``errors.jsonl`` and ``_info.json`` first
        (both derived), then ``dataprep.json``, re-read and merged under the lock."""
        self._write_ledger(split, entry, errors)

    def _write_ledger(self, split: str, entry: dict[str, Any] | None,
                      errors: list[dict[str, Any]]) -> None:
        """Set (or with ``entry`` None, remove) a split's entry: errors.jsonl and _info.json
        first, then dataprep.json, re-read and merged under the lock."""
        from dataprep._version import __version__
        from dataprep.io.manifest import write_json_atomic

        self._ledger = None
        ledger = self.ledger()
        ledger["dataprep_version"] = __version__
        if entry is None:
            ledger["splits"].pop(split, None)
        else:
            ledger["splits"][split] = entry
        ledger["splits"] = dict(sorted(ledger["splits"].items()))
        self._write_errors(split, errors)
        info = info_json(ledger, self.path.name)
        if info["splits"] or (self.path / INFO_NAME).exists():
            write_json_atomic(self.path / INFO_NAME, info)
        self._write_wids(split, ledger["splits"].get(split))
        write_json_atomic(self.path / LEDGER_NAME, ledger)
        self._ledger = ledger

    def _write_wids(self, split: str, entry: dict[str, Any] | None,
                    only_missing: bool = False) -> None:
        """``{split}.wids.json`` of a WebDataset split, derived from its entry; removed with
        the entry (or when the split is another format now)."""
        from dataprep.io.manifest import wids_index, write_json_atomic

        path = self.path / wids_name(split)
        if entry is not None and entry.get("format", "webdataset") == "webdataset":
            if only_missing:
                _write_derived(path, wids_index(entry))
            else:
                write_json_atomic(path, wids_index(entry))
        elif os.path.lexists(path):
            durable.unlink(path)

    def _restore_caffe_sidecar(self, split: str, entry: dict[str, Any] | None,
                               log: Callable[[str], None]) -> None:
        """The sidecar of a complete Caffe-layout split, written again from the ledger (its
        sample count and class names) when it is missing or says otherwise."""
        from dataprep.io import caffe

        if (entry is None or entry.get("format") != "lmdb"
                or (entry.get("params") or {}).get("lmdb_layout") != "caffe"):
            return
        folder = self.path / f"{split}.lmdb"
        want = caffe.sidecar(int(entry.get("samples_out", 0)), list(entry.get("classes") or []))
        if (folder.is_dir() and not folder.is_symlink()
                and _write_derived(folder / CAFFE_SIDECAR, want)):
            log(f"{split}: {CAFFE_SIDECAR} was missing or damaged; written again from "
                f"{LEDGER_NAME}")

    def _write_errors(self, split: str, errors: list[dict[str, Any]]) -> None:
        """Replace the ``errors.jsonl`` lines of ``split``; keep the other splits' lines."""
        path = self.path / ERRORS_NAME
        kept = []
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                try:
                    if json.loads(line).get("split") != split:
                        kept.append(line)
                except (ValueError, AttributeError):
                    continue  # not dataprep's: planning refuses such a file before any work
        text = "".join(line + "\n" for line in kept)
        text += "".join(json.dumps(e, sort_keys=True) + "\n" for e in errors)
        if text or path.exists():
            durable.write_atomic(path, text.encode())

    # -- deciding what a run does --------------------------------------------------------

    def stage(self, split: str) -> Path:
        return self.path / STAGE_NAME / split

    def make_stage(self, split: str) -> Path:
        """The split's stage folder, made if needed, inside this folder (no link out)."""
        stage = self.stage(split)
        stage.mkdir(parents=True, exist_ok=True)
        self.check_inside(stage / "shard")
        return stage

    def drop_stage(self, split: str) -> None:
        """Remove a split's stage folder (and the stage root once no split uses it)."""
        root = self.path / STAGE_NAME
        if root.is_symlink() or (root.exists() and not root.is_dir()):
            durable.unlink(root)  # not dataprep's stage folder: only the link itself goes
            return
        durable.rmtree(self.stage(split))
        try:
            (self.path / STAGE_NAME).rmdir()
        except OSError:
            pass

    def plan(self, fmt: str, identities: dict[str, dict[str, Any]], overwrite: bool,
             log: Log, classes: Sequence[str] = (), dry_run: bool = False,
             ) -> dict[str, SplitPlan]:
        """Per split: new, resume or complete (see the module docstring). Everything is
        decided and checked before anything is changed: other commands' output is refused
        unless ``overwrite``, and so are files in the way that no ledger or journal names.
        ``dry_run``: decide only (what a run would do); nothing is changed."""
        self._check_ledger_names()
        decisions = {split: self._decide(split, fmt, ident, overwrite)
                     for split, ident in identities.items()}
        self._refuse_strangers(fmt, {s: state for s, (what, state) in decisions.items()
                                     if what != "complete"}, classes)
        if dry_run:
            return {split: self._foresee(split, fmt, what, state)
                    for split, (what, state) in decisions.items()}
        for name in (LEDGER_NAME, INFO_NAME, ERRORS_NAME):  # write_atomic's own temp names
            durable.unlink(self.path / f".{name}.tmp")
        for split in decisions:
            durable.unlink(self.path / f".{wids_name(split)}.tmp")
        plans = {}
        for split, (what, state) in decisions.items():
            if what == "recover":
                assert state is not None
                plans[split] = self._recover(split, fmt, state, log)
                continue
            if what == "redo":
                log(f"{split}: a finished shard changed or is missing; writing the split again")
            if what in ("redo", "replace"):
                self.remove_split(split)
            else:  # new or complete: without a journal (or with a torn one) nothing resumes
                Journal(self.path, split).remove()
                self.drop_stage(split)
            if what == "complete":  # derived: written again when missing (older output)
                self._write_wids(split, self.ledger()["splits"].get(split), only_missing=True)
                self._restore_caffe_sidecar(split, self.ledger()["splits"].get(split), log)
            plans[split] = SplitPlan("complete" if what == "complete" else "new")
        return plans

    @staticmethod
    def owns(split: str, fmt: str, name: str) -> bool:
        """Whether ``name`` is one dataprep gives a shard of ``split`` in ``fmt``: only such
        names are ever deleted."""
        if fmt == "webdataset":
            return re.fullmatch(rf"{re.escape(split)}-\d+\.tar", name) is not None
        if fmt == "lmdb":
            return name == f"{split}.lmdb/data.mdb"
        parts = name.split("/")
        return (len(parts) == 2 and all(parts) and not parts[0].startswith(".")
                and not parts[1].startswith(".") and parts[0] not in RESERVED)

    def _check_ledger_names(self) -> None:
        """Every shard the ledger names is a name of its split's own, claimed once."""
        claimed: dict[str, str] = {}
        for split, entry in self.ledger()["splits"].items():
            fmt = str(entry.get("format", "webdataset"))
            for shard in entry.get("shards", []):
                name = shard["name"]
                other = claimed.setdefault(name, split)
                if other != split or not self.owns(split, fmt, name):
                    raise OutputError(
                        f"{self.path / LEDGER_NAME} names {name[:80]!r} for split {split!r}"
                        + (f" (and for {other!r})" if other != split else
                           ", which is not a name dataprep gives that split's shards")
                        + "; the ledger was edited: restore it, or move the folder's content "
                        "away")
                self._named(name)

    def _check_journal(self, split: str, fmt: str, state: JournalState) -> None:
        """Every shard a journal names is the split's own, staged in its stage folder."""
        stage = f"{STAGE_NAME}/{split}/"
        for f in state.files():
            name, tmp = str(f.get("name", "")), str(f.get("tmp", ""))
            final = str(f.get("final", name))
            if (not self.owns(split, fmt, name) or not tmp.startswith(stage) or ".." in tmp
                    or final not in (name, f"{split}.lmdb")):
                raise Journal(self.path, split).damaged(f"it names {name[:80]!r}, not a shard "
                                                        f"of split {split!r}")

    def _foresee(self, split: str, fmt: str, what: str, state: JournalState | None,
                 ) -> SplitPlan:
        """The plan a run would make, read only (for --dry-run)."""
        if what == "complete":
            return SplitPlan("complete")
        if what != "recover" or state is None:
            return SplitPlan("new")
        if state.finish is not None:
            return SplitPlan("complete")
        checkpoints = (self._lmdb_checkpoints(split, state.checkpoints) if fmt == "lmdb"
                       else state.checkpoints)
        return SplitPlan("resume", checkpoints[-1]) if checkpoints else SplitPlan("new")

    def _decide(self, split: str, fmt: str, identity: dict[str, Any], overwrite: bool,
                ) -> tuple[str, JournalState | None]:
        """What to do with one split, without changing anything: ``new``, ``replace`` (remove
        what the ledger and journal name first), ``redo`` (the same, a shard being damaged),
        ``recover`` (an interrupted run of this identity) or ``complete``; refusals raise."""
        try:
            state = Journal(self.path, split).load()
            if state is not None:
                self._check_journal(split, fmt, state)
        except OutputError:
            if not overwrite:
                raise
            state = None
        if overwrite:
            return "replace", None
        if state is not None:
            old = state.header.get("identity", {})
            if old != identity or state.header.get("format") != fmt:
                raise self._refusal(split, old, identity, state.header.get("format"), fmt,
                                    "an interrupted run")
            return "recover", state
        entry = self.ledger()["splits"].get(split)
        if entry is None:
            return "new", None
        if entry.get("records_in") and not entry.get("samples_out") and not entry.get("shards"):
            # a finished run that wrote nothing (every input skipped): nothing to keep, so the
            # split is done again (a rerun reports the failure again, a fixed input gets in)
            return "replace", None
        if entry.get("identity") != identity or entry.get("format") != fmt:
            raise self._refusal(split, entry.get("identity"), identity, entry.get("format"),
                                fmt, "output")
        shards = entry.get("shards", [])
        whole = sum(sh["num_samples"] for sh in shards) == entry.get("samples_out") and (
            bool(shards) or not entry.get("samples_out"))
        return ("complete" if whole and self._intact(shards) else "redo"), None

    def _refusal(self, split: str, old: Any, new: dict[str, Any], old_fmt: Any, fmt: str,
                 what: str) -> OutputError:
        return OutputError(
            f"{self.path} already holds {what} for split {split!r} "
            f"{describe_difference(old, new, old_fmt, fmt)}; pass --overwrite to replace it, "
            "or choose another -o")

    def _intact(self, shards: list[dict[str, Any]]) -> bool:
        """Every shard exists with its recorded size and sha256."""
        for s in shards:
            path = self._named(s["name"])
            if not path.is_file() or path.stat().st_size != s["bytes"]:
                return False
            if sha256_file(path) != s["sha256"]:
                return False
        return True

    def remove_split(self, split: str) -> None:
        """Remove exactly what the split's ledger entry and journal name, its stage folder,
        its journal and its entry (with its lines of errors.jsonl and _info.json)."""
        journal = Journal(self.path, split)
        try:
            state = journal.load()
        except OutputError:
            state = None  # damaged: what it named cannot be known; strangers are refused later
        names = [s["name"] for s in self.ledger()["splits"].get(split, {}).get("shards", [])]
        if state is not None:
            fmt = str(state.header.get("format", ""))
            names += [str(f.get("name", "")) for f in state.files()
                      if self.owns(split, fmt, str(f.get("name", "")))]
        for name in dict.fromkeys(names):
            self._remove_named(name)
        self.drop_stage(split)
        if split in self.ledger()["splits"]:
            self._write_ledger(split, None, [])
        journal.remove()

    def _remove_named(self, name: str) -> None:
        path = self._named(name)
        durable.unlink(path)
        if path.name == "data.mdb":  # an LMDB: its folder, lock file and sidecar go with it
            for beside in ("lock.mdb", CAFFE_SIDECAR, f".{CAFFE_SIDECAR}.tmp"):
                durable.unlink(path.parent / beside)
        for folder in (path.parent, path.parent.parent):
            if folder != self.path and _inside(str(folder), str(self.path)):
                try:
                    folder.rmdir()  # only when empty: nothing else is lost
                except OSError:
                    break

    def _refuse_strangers(self, fmt: str, splits: dict[str, JournalState | None],
                          classes: Sequence[str]) -> None:
        """Files where these splits' shards go that no ledger entry or journal names."""
        known = {s["name"] for e in self.ledger()["splits"].values() for s in e.get("shards", [])}
        known |= {wids_name(s) for s in self.ledger()["splits"]}
        for split, state in splits.items():
            if state is not None:
                known |= {str(f.get("name")) for f in state.files()}
                known.add(wids_name(split))  # a commit cut short may have written it
        strangers: list[str] = []
        for split in splits:
            strangers += [n for n in self._namespace(fmt, split, classes) if n not in known]
        if self._foreign_errors_file():
            strangers.append(ERRORS_NAME)
        if strangers:
            shown = ", ".join(sorted(strangers)[:5])
            more = f" and {len(strangers) - 5} more" if len(strangers) > 5 else ""
            raise OutputError(
                f"{self.path} holds files where this run would write that dataprep did not "
                f"write there (no dataprep.json entry or journal names them): {shown}{more}; "
                "move them away, or choose another -o")

    def _foreign_errors_file(self) -> bool:
        """Whether ``errors.jsonl`` holds a line dataprep does not write (a JSON object naming
        its split, or the command, as ``stats`` does): the run rewrites that file, so a file of
        someone else's is refused."""
        path = self.path / ERRORS_NAME
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

    def _namespace(self, fmt: str, split: str, classes: Sequence[str]) -> list[str]:
        """Names in the folder that look like output of ``split`` in ``fmt``."""
        if not self.path.is_dir():
            return []
        if fmt == "webdataset":
            pattern = re.compile(rf"{re.escape(split)}-\d+\.tar(\.tmp)?|"
                                 rf"{re.escape(wids_name(split))}")
            return [p.name for p in self.path.iterdir() if pattern.fullmatch(p.name)]
        if fmt == "lmdb":
            env = self.path / f"{split}.lmdb"
            found = [f"{split}.lmdb.tmp"] if (self.path / f"{split}.lmdb.tmp").exists() else []
            if env.is_dir():
                found += [f"{split}.lmdb/{p.name}" for p in env.iterdir()
                          if p.name not in ("lock.mdb", CAFFE_SIDECAR)]
            elif env.exists():
                found.append(env.name)
            return found
        found = []
        for name in dict.fromkeys(safe_name(str(c)) for c in classes):
            folder = self.path / name
            if folder.is_dir():
                found += [f"{name}/{p.name}" for p in folder.iterdir()]
            elif folder.exists():
                found.append(name)
        return found

    # -- recovery ------------------------------------------------------------------------

    def _recover(self, split: str, fmt: str, state: JournalState, log: Log) -> SplitPlan:
        Journal(self.path, split).rewrite(state.header, state.checkpoints, state.finish)
        for f in state.files():
            if not self._settle(f):
                log(f"{split}: {f.get('name')} of the interrupted run is missing or changed; "
                    "writing the split again")
                self.remove_split(split)
                return SplitPlan("new")
        checkpoints = state.checkpoints
        if fmt == "lmdb" and state.finish is None:
            checkpoints = self._lmdb_checkpoints(split, checkpoints)
        files = [_info(f) for c in checkpoints for f in c.get("files", [])]
        errors = [e for c in checkpoints for e in c.get("errors", [])]
        last = checkpoints[-1] if checkpoints else None
        if state.finish is not None or (last is not None and last.get("final")):
            if state.finish is not None:
                entry = {k: v for k, v in state.finish.items() if k != "staged"}
            else:
                staged = self._staged_lmdb(split) if fmt == "lmdb" else []
                # the final commit is done (an LMDB environment is whole): as finish() would,
                # journal the entry and what is still staged before renaming anything
                entry = finish_entry(state.header, last or {},
                                     files + [s.info for s in staged], errors)
                Journal(self.path, split).append({"finish": dict(
                    entry, staged=[staged_json(self.path, s) for s in staged])})
                self.publish(staged)
            self.commit(split, entry, errors)
            Journal(self.path, split).remove()
            self.drop_stage(split)
            log(f"{split}: the interrupted run had written everything; finished its last step")
            return SplitPlan("complete", finished_now=True)
        if last is None:
            self.drop_stage(split)
            Journal(self.path, split).remove()
            return SplitPlan("new")
        if fmt != "lmdb":
            self.drop_stage(split)  # only the unfinished shard was there
        # the journal goes on from exactly what is resumed: no torn last line, no checkpoint
        # an LMDB never committed (a later recovery would count it)
        Journal(self.path, split).rewrite(state.header, checkpoints)
        return SplitPlan("resume", last, files, errors)

    def _settle(self, f: dict[str, Any]) -> bool:
        """A journaled shard is in place and intact (renamed there now if it was still
        staged); False when it is neither in place nor staged intact."""
        info = _info(f)
        final = self._named(str(f.get("final", info.name)))
        tmp = self._named(str(f.get("tmp", "")))
        data_in = Path(info.name).relative_to(Path(str(f.get("final", info.name))))

        def intact(base: Path) -> bool:
            path = base / data_in if str(data_in) != "." else base
            return (path.is_file() and path.stat().st_size == info.bytes
                    and sha256_file(path) == info.sha256)

        if final.exists():
            return intact(final)
        if tmp.exists() and intact(tmp):
            durable.publish(tmp, final)
            durable.fsync_dir(final.parent)
            return True
        return False

    def _staged_lmdb(self, split: str) -> list[Staged]:
        """The staged environment of a split whose final commit is done, ready to rename."""
        env = self.stage(split) / f"{split}.lmdb"
        durable.unlink(env / "lock.mdb")
        data = env / "data.mdb"
        info = ShardInfo(f"{split}.lmdb/data.mdb", int(lmdb_committed(env) or 0),
                         data.stat().st_size, sha256_file(data))
        return [Staged(env, self.path / f"{split}.lmdb", info)]

    def _lmdb_checkpoints(self, split: str, checkpoints: list[dict[str, Any]],
                          ) -> list[dict[str, Any]]:
        """The checkpoints up to the one the staged environment's last commit holds (the
        journal is written before each commit, so it may be one ahead)."""
        committed = lmdb_committed(self.stage(split) / f"{split}.lmdb")
        if committed is None:
            return []
        for i in range(len(checkpoints) - 1, -1, -1):
            if checkpoints[i].get("writer", {}).get("count") == committed:
                done = checkpoints[: i + 1]
                if done[-1].get("final") and not lmdb_closed(
                        self.stage(split) / f"{split}.lmdb"):
                    done = done[:-1]
                return done
        return []

    # -- writing ---------------------------------------------------------------------------

    def publish(self, staged: list[Staged]) -> None:
        """Rename finished shards into place (never over an existing file) and sync the
        folders they went to."""
        checked: set[Path] = set()
        for s in staged:
            if s.final.parent not in checked:
                self.check_inside(s.final)
                checked.add(s.final.parent)
            durable.publish(s.tmp, s.final)
        for folder in dict.fromkeys(s.final.parent for s in staged):
            durable.fsync_dir(folder)


def _info(f: dict[str, Any]) -> ShardInfo:
    try:
        return ShardInfo(str(f["name"]), int(f["num_samples"]), int(f["bytes"]),
                         str(f["sha256"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise OutputError(f"a journal names a shard without its size or sha256 ({f!r:.80})"
                          ) from exc


def staged_json(out: Path, s: Staged) -> dict[str, Any]:
    return dict(s.info.to_json(), tmp=str(s.tmp.relative_to(out)),
                final=str(s.final.relative_to(out)))


def lmdb_committed(path: Path) -> int | None:
    """``__len__`` of the last commit of a staged LMDB environment (Caffe's layout: its entry
    count; None: no usable one)."""
    import lmdb

    if not (path / "data.mdb").is_file():
        return None
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, subdir=True, map_size=0)
        try:
            with env.begin() as txn:
                raw = txn.get(b"__len__")
                if raw is None:  # the sidecar may be ahead: the entries are what is committed
                    return caffe_entries(txn, (path / CAFFE_SIDECAR).is_file())
        finally:
            env.close()
        return int(raw)
    except (lmdb.Error, ValueError, DataprepError):
        return None


def lmdb_closed(path: Path) -> bool:
    """Whether a staged environment holds its final commit (``__format__`` is written last;
    Caffe's layout: its sidecar, written before the final commit, counts the entries)."""
    import lmdb

    try:
        env = lmdb.open(str(path), readonly=True, lock=False, subdir=True, map_size=0)
        try:
            with env.begin() as txn:
                if txn.get(b"__format__") is not None:
                    return True
                side = read_caffe_sidecar(path)
                return side is not None and caffe_entries(txn, True) == side["num_samples"]
        finally:
            env.close()
    except (lmdb.Error, DataprepError):
        return False


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


def finish_entry(header: dict[str, Any], last: dict[str, Any], files: list[ShardInfo],
                 errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A split's ledger entry from its journal header and final counters."""
    entry = dict(header["entry"])
    entry.update(identity=header["identity"], format=header["format"],
                 fingerprint=identity_digest(header["identity"]),
                 records_in=int(last.get("records_in", 0)),
                 samples_out=int(last.get("samples_out", 0)), skipped=len(errors),
                 shards=[f.to_json() for f in files])
    return entry


def identity_digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Counters:
    records_in: int = 0
    samples_out: int = 0
    bytes: int = 0  # encoded image bytes


class SplitOutput:
    """One split being written: its writer, journal, counters and errors. Only the output
    folder's protocol renames or commits anything (module docstring)."""

    def __init__(self, folder: OutputFolder, split: str, header: dict[str, Any],
                 plan: SplitPlan, writer: Writer) -> None:
        self.folder, self.split, self.header, self.writer = folder, split, header, writer
        self.journal = Journal(folder.path, split)
        point = plan.point or {}
        self.counters = Counters(int(point.get("records_in", 0)),
                                 int(point.get("samples_out", 0)), int(point.get("bytes", 0)))
        self.files: list[ShardInfo] = list(plan.files)
        self.errors: list[dict[str, Any]] = list(plan.errors)
        self._new_errors: list[dict[str, Any]] = []
        self.resumed_after = int(point.get("next_record", 0)) if plan.point else None
        if plan.point is None:
            self.journal.start(header)

    def add(self, index: int, samples: list[Sample] | Any, nbytes: int) -> None:
        """Write record ``index``'s samples (a checkpoint first, when one is due)."""
        if self.writer.due(samples):
            self._checkpoint(index, self.writer.checkpoint(), final=False)
        self.writer.write_group(samples)
        self.counters.records_in += 1
        self.counters.samples_out += len(samples)
        self.counters.bytes += nbytes

    def skip(self, entry: dict[str, Any]) -> None:
        """Record ``entry`` (a skipped input) as one record in."""
        self.counters.records_in += 1
        self.note(entry)

    def note(self, entry: dict[str, Any]) -> None:
        """List ``entry`` in errors.jsonl (e.g. a folder the scan could not read)."""
        self.errors.append(entry)
        self._new_errors.append(entry)

    def _checkpoint(self, next_record: int, staged: list[Staged], final: bool) -> None:
        out = self.folder.path
        self.journal.append({"checkpoint": {
            "next_record": next_record, "writer": self.writer.state(), "final": final,
            "records_in": self.counters.records_in, "samples_out": self.counters.samples_out,
            "bytes": self.counters.bytes, "errors": self._new_errors,
            "files": [staged_json(out, s) for s in staged]}})
        self._new_errors = []
        self.writer.commit()
        self.folder.publish(staged)
        self.files += [s.info for s in staged]

    def finish(self, next_record: int) -> dict[str, Any]:
        """Finish the split: final checkpoint, finish line, renames, ledger commit."""
        self._checkpoint(next_record, self.writer.finish(), final=True)
        more = self.writer.finished()
        entry = finish_entry(self.header, {"records_in": self.counters.records_in,
                                           "samples_out": self.counters.samples_out},
                             self.files + [s.info for s in more], self.errors)
        out = self.folder.path
        self.journal.append({"finish": dict(entry, staged=[staged_json(out, s) for s in more])})
        self.folder.publish(more)
        self.files += [s.info for s in more]
        self.folder.commit(self.split, entry, self.errors)
        self.journal.remove()
        self.folder.drop_stage(self.split)
        return entry

    def abort(self) -> None:
        self.writer.abort()
