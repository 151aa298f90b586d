"""Sources -> records: image folder, list file, manifest (.jsonl), WebDataset, LMDB.

``scan(src)`` returns a :class:`~dataprep.io.source.Source`: the class list and an iterator of
records. Image sources are listed eagerly (metadata only); shard sources stream their encoded
bytes. Folders and list files are scanned here, manifests by
:mod:`dataprep.io.manifest_source`, shards by :mod:`dataprep.io.shard_source`.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

from dataprep.errors import MissingSourceError, SourceError
from dataprep.io.files import not_regular_reason, numbered_lines, open_text
from dataprep.io.labels import MAX_CLASSES
from dataprep.io.lmdbread import is_lmdb
from dataprep.io.manifest_source import scan_manifest
from dataprep.io.shard_source import REMOTE, shard_source
from dataprep.io.source import Source, dedupe_keys
from dataprep.records import Record, RecordList, gc_paused, make_key

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
LIST_SUFFIXES = (".txt", ".lst", ".csv", ".tsv", ".list")
_DIGITS = re.compile(r"(\d+)")
_INT_LABEL = re.compile(r"-?[0-9]+")  # ASCII digits only ("²".isdigit() is True)


def natural_key(text: str) -> list:
    """Sort key where ``img2`` < ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in _DIGITS.split(text)] + [text]


@gc_paused()
def scan_folder(root: str | Path, packed: bool = True) -> Source:
    """``root/<class>/<file>`` (recursive below each class folder), natural sort, sorted classes.

    ``packed``: records in a :class:`RecordList` (compact); else a plain list (faster to walk
    whole, for jobs that hold every record anyway)."""
    root = Path(root)
    errors: list[dict[str, str]] = []
    classes = sorted(_class_folders(root, errors), key=natural_key)
    records: RecordList | list[Record] = RecordList() if packed else []
    for label, class_name in enumerate(classes):
        found = _image_files(os.path.abspath(root / class_name), errors)  # paths as records
        for path in sorted(found, key=lambda p: natural_key(os.path.relpath(p, root))):
            rel = os.path.relpath(path, root)
            records.append(Record(key=make_key(rel), path=os.path.abspath(path), label=label,
                                  class_name=class_name))
    if not records:
        unread = (f"; {len(errors):,} entries could not be read, e.g. {errors[0]['reason']}"
                  if errors else "")
        raise SourceError(
            f"Found 0 images in subfolders of {root}. Expected root/<class>/<image>; supported "
            f"image extensions are {', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)} "
            f"(case-insensitive){unread}"
        )
    source = Source("folder", str(root), classes, dedupe_keys(records))
    source.errors = sorted(errors, key=lambda e: natural_key(e["path"]))
    return source


def _class_folders(root: Path, errors: list[dict[str, str]]) -> list[str]:
    """The names of the (not hidden) folders in ``root``, links to folders included; an entry
    that cannot be examined goes to ``errors``, a root that cannot be listed is a
    :class:`SourceError`."""
    names: list[str] = []
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        names.append(entry.name)
                except OSError as exc:
                    errors.append({"path": entry.path, "reason": (
                        f"{entry.path}: cannot be examined ({exc.strerror or exc}); if it is "
                        "a class folder, its images are left out")})
    except OSError as exc:
        raise SourceError(f"{root}: cannot list this folder ({exc.strerror or exc}); make it "
                          "readable (chmod +rx) and run again") from None
    return names


def _image_files(top: str, errors: list[dict[str, str]]) -> list[str]:
    """Paths of the regular files (or links to them) with an image extension below ``top``,
    skipping hidden entries and not following links to folders (as ``os.walk``).

    Entries with an image extension that are no regular file (FIFO, device, socket, broken
    link) and folders that cannot be listed go to ``errors`` with the reason.
    """
    found: list[str] = []
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                            if entry.is_file():
                                found.append(entry.path)
                            elif not entry.is_dir():  # a link to a folder is ignored
                                errors.append(_unusable(entry.path))
                    except OSError:  # this entry only (a link that loops, ...): listed
                        errors.append(_unusable(entry.path))
        except OSError as exc:
            errors.append({"path": folder, "reason": (
                f"{folder}: cannot list this folder ({exc.strerror or exc}); its images are "
                "left out: make it readable (chmod +rx) and run again")})
    return found


def _unusable(path: str) -> dict[str, str]:
    """The error entry of an image-named entry that is not a readable regular file."""
    try:
        reason = not_regular_reason(path, os.stat(path).st_mode)
    except OSError as exc:
        link = os.path.islink(path)
        if link and exc.errno == errno.ENOENT:
            what = "a broken symbolic link"
        elif link and exc.errno == errno.ELOOP:
            what = f"a symbolic link that loops ({exc.strerror})"
        else:
            what = f"cannot be read ({exc.strerror or exc})"
        reason = (f"{path}: {what}; remove it or restore what it points to" if link
                  else f"{path}: {what}; it is left out")
    return {"path": path, "reason": reason}


@gc_paused()
def scan_list(list_file: str | Path, root: str | Path | None = None,
              packed: bool = True) -> Source:
    """``path label`` per line (space or tab separated); label an int or a class name.

    Relative paths resolve against ``root`` (default: the list file's folder). Blank lines and
    lines starting with ``#`` are ignored. Integer labels keep their value; class names are
    numbered in sorted order. The file is read line by line into the records (``packed``: see
    :func:`scan_folder`).
    """
    list_file = Path(list_file)
    base_abs = os.path.abspath(Path(root) if root is not None else list_file.parent)
    # each record's class_name holds its label text until every label is known
    records: RecordList | list[Record] = RecordList() if packed else []
    first_line = _read_list(list_file, base_abs, records.append)
    if not records:
        raise SourceError(f"{list_file} lists no images; expected lines of 'path label'")
    classes, to_label = _list_classes(list_file, first_line)
    mapping = {lab: (to_label[lab], classes[to_label[lab]]) for lab in first_line}
    if isinstance(records, RecordList):
        records.relabel(mapping)
    else:
        for r in records:
            r.label, r.class_name = mapping[r.class_name]
    return Source("list", str(list_file), classes, dedupe_keys(records))


def _read_list(list_file: Path, base_abs: str, append: Callable[[Record], None]
               ) -> dict[str, int]:
    """Append a record per line of ``list_file`` (its label text as its class name); returns
    each distinct label text with the line it first appears on."""

    def full_path(rel: str) -> str:
        path = rel if rel[0] == "/" else f"{base_abs}/{rel}"
        # normpath is costly and most paths need none
        return os.path.normpath(path) if "/." in path or "//" in path else path

    first_line: dict[str, int] = {}
    with open_text(list_file) as f:
        # str.splitlines' line breaks (\v, \f, \x1c-\x1e, \x85, \u2028, \u2029 too), read lazily
        lines = (part for chunk in f for part in chunk.splitlines())
        for lineno, line in numbered_lines(lines, list_file):
            line = line.strip()
            if not line or line[0] == "#":
                continue
            rel, lab = _list_line(line, list_file, lineno)
            first_line.setdefault(lab, lineno)
            append(Record(_list_key(rel, list_file, lineno), full_path(rel), 0, lab))
    return first_line


def _list_line(line: str, list_file: Path, lineno: int) -> tuple[str, str]:
    """The (path, label text) of a list line: split at a tab, else at the last space, else at
    the last comma."""
    if "\t" in line:
        parts = line.split("\t")
    else:
        parts = line.rsplit(None, 1)
        if len(parts) == 1 and "," in line:
            parts = line.rsplit(",", 1)
    if len(parts) != 2 or not parts[1].strip():
        raise SourceError(f"{list_file}:{lineno}: expected 'path label' (space or tab "
                          f"separated), got {line!r}")
    return parts[0].strip(), parts[1].strip()


def _list_classes(list_file: Path, first_line: dict[str, int]
                  ) -> tuple[list[str], dict[str, int]]:
    """The class names of a list file's labels, and the label of each label text: integers
    keep their value (the classes numbered up to the largest), names are numbered in order."""
    if all(_INT_LABEL.fullmatch(lab) for lab in first_line):
        low, high = min(first_line, key=int), max(first_line, key=int)
        if int(low) < 0:
            raise SourceError(f"{list_file}:{first_line[low]}: label {low} is negative; labels "
                              "are class indexes from 0 (or class names)")
        if int(high) >= MAX_CLASSES:
            raise SourceError(f"{list_file}:{first_line[high]}: label {high} is beyond the "
                              f"{MAX_CLASSES:,} classes a list file may number; labels are class "
                              "indexes from 0")
        return [str(i) for i in range(int(high) + 1)], {lab: int(lab) for lab in first_line}
    if any(_INT_LABEL.fullmatch(lab) for lab in first_line):
        raise SourceError(f"{list_file}: labels mix integers and class names; use one kind")
    classes = sorted(first_line, key=natural_key)
    return classes, {name: i for i, name in enumerate(classes)}


def _list_key(rel: str, list_file: Path, lineno: int) -> str:
    try:
        return make_key(rel.lstrip("/"))
    except ValueError:  # "/" or ".": no name left to make a key of
        raise SourceError(f"{list_file}:{lineno}: path {rel!r} names no file; expected "
                          "'path label' with the path of an image") from None


def scan(src: str | Path, root: str | Path | None = None, split: str | None = None,
         packed: bool = True) -> Source:
    """Open any supported source (folder, list, manifest, WebDataset, LMDB).

    Image sources (folder, list, manifest) are listed whole: in a compact :class:`RecordList`,
    or with ``packed=False`` in a plain list of records."""
    s = str(src)
    if "{" in s or s.endswith(".tar") or s.startswith(REMOTE):
        return shard_source("webdataset", s, split)
    p = Path(s)
    if not p.exists():
        raise MissingSourceError(f"{s} does not exist; expected an image folder, a list file, a "
                          ".jsonl manifest, a WebDataset directory or an LMDB")
    if not p.is_file() and not p.is_dir():  # a FIFO, device or socket: never opened
        raise SourceError(not_regular_reason(s, p.stat().st_mode))
    if p.is_file():
        if p.suffix == ".jsonl":
            return scan_manifest(p, packed)
        if p.suffix.lower() in LIST_SUFFIXES:
            return scan_list(p, root, packed)
        raise SourceError(f"{s}: unknown source file type {p.suffix!r}; expected .jsonl "
                          f"(manifest) or a list file ({', '.join(LIST_SUFFIXES)})")
    if is_lmdb(p) or any(is_lmdb(c) for c in p.glob("*.lmdb")):
        return shard_source("lmdb", s, split)
    if any(p.glob("*.tar")):
        return shard_source("webdataset", s, split)
    return scan_folder(p, packed)
