"""The files of an output folder that its ledger and journals name: the ledger
(``dataprep.json``) and the files derived from it (``_info.json``, ``errors.jsonl``,
``{split}.wids.json``, a Caffe split's sidecar), the stage folder, and the renames and
deletions of shards. :class:`FolderFiles` is the base of
:class:`~dataprep.jobs.output.OutputFolder`; planning and recovery
(:mod:`dataprep.jobs.output_plan`, :mod:`dataprep.jobs.output_recovery`) change the folder
only through it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataprep.errors import OutputError
from dataprep.io import durable
from dataprep.io.caffe import SIDECAR as CAFFE_SIDECAR
from dataprep.io.manifest import INFO_NAME, LEDGER_NAME, info_json, read_ledger, wids_name
from dataprep.io.staging import STAGE_NAME, ShardInfo, Staged
from dataprep.jobs.output_names import ERRORS_NAME, inside, owns
from dataprep.journal import Journal

Log = Callable[[str], None]


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


class FolderFiles:
    """The ledger, derived files, stage folder and shards of the output folder ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ledger: dict[str, Any] | None = None

    # -- the ledger and the files derived from it ----------------------------------------

    def ledger(self) -> dict[str, Any]:
        """``dataprep.json`` as read (once per lock, and again after each write)."""
        if self._ledger is None:
            self._ledger = read_ledger(self.path)
        return self._ledger

    def named(self, name: str) -> Path:
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
        if not inside(os.path.realpath(path.parent), root):
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

    def restore_derived(self, split: str, log: Log) -> None:
        """The derived files of a complete split, written again when missing (output of an
        older version) or damaged: its wids index, a Caffe split's sidecar."""
        entry = self.ledger()["splits"].get(split)
        self._write_wids(split, entry, only_missing=True)
        self._restore_caffe_sidecar(split, entry, log)

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

    # -- the stage folder and the shards -------------------------------------------------

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
                      if owns(split, fmt, str(f.get("name", "")))]
        for name in dict.fromkeys(names):
            self._remove_named(name)
        self.drop_stage(split)
        if split in self.ledger()["splits"]:
            self._write_ledger(split, None, [])
        journal.remove()

    def _remove_named(self, name: str) -> None:
        path = self.named(name)
        durable.unlink(path)
        if path.name == "data.mdb":  # an LMDB: its folder, lock file and sidecar go with it
            for beside in ("lock.mdb", CAFFE_SIDECAR, f".{CAFFE_SIDECAR}.tmp"):
                durable.unlink(path.parent / beside)
        for folder in (path.parent, path.parent.parent):
            if folder != self.path and inside(str(folder), str(self.path)):
                try:
                    folder.rmdir()  # only when empty: nothing else is lost
                except OSError:
                    break

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


def shard_info(f: dict[str, Any]) -> ShardInfo:
    """A shard as a journal line names it (see :func:`staged_json`)."""
    try:
        return ShardInfo(str(f["name"]), int(f["num_samples"]), int(f["bytes"]),
                         str(f["sha256"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise OutputError(f"a journal names a shard without its size or sha256 ({f!r:.80})"
                          ) from exc


def staged_json(out: Path, s: Staged) -> dict[str, Any]:
    """A staged shard as a journal line names it: its info and both names, relative to
    ``out``."""
    return dict(s.info.to_json(), tmp=str(s.tmp.relative_to(out)),
                final=str(s.final.relative_to(out)))


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
    """The ledger entry's ``fingerprint``: sha256 of the identity as sorted JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
