"""The names dataprep gives the files of an output folder, and the checks on split and class
names made before any work: what a run may create, and which names it owns (only those are
ever deleted)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from dataprep.errors import UsageError
from dataprep.io.foldersink import safe_name
from dataprep.io.manifest import INFO_NAME, LEDGER_NAME
from dataprep.io.staging import STAGE_NAME

LOCK_NAME = ".dataprep.lock"
ERRORS_NAME = "errors.jsonl"
SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")
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


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (both as given: resolve links first)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


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

