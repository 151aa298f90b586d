"""Sources -> records: image folder, list file, manifest (.jsonl), WebDataset, LMDB.

``scan(src)`` returns a :class:`Source`: the class list and an iterator of records. Image
sources are listed eagerly (metadata only); shard sources stream their encoded bytes.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from dataprep.errors import DataprepError, MissingSourceError, ShardError, SourceError
from dataprep.records import (
    NO_IMAGE,
    Record,
    RecordList,
    Sample,
    gc_paused,
    make_key,
    safe_key,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
LIST_SUFFIXES = (".txt", ".lst", ".csv", ".tsv", ".list")
MAX_CLASSES = 1_000_000  # labels of every source are ints in 0..MAX_CLASSES-1
SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")  # splits name output files: nothing else
_DIGITS = re.compile(r"(\d+)")
_INT_LABEL = re.compile(r"-?[0-9]+")  # ASCII digits only ("²".isdigit() is True)


def natural_key(text: str) -> list:
    """Sort key where ``img2`` < ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in _DIGITS.split(text)] + [text]


@dataclass
class Source:
    kind: str  # folder | list | manifest | webdataset | lmdb
    location: str
    classes: list[str]
    records: RecordList | list[Record] | None = None  # eager sources
    _stream: object = field(default=None, repr=False)  # shard sources: callable -> Iterator
    num_records: int | None = None
    splits: list[str] | None = None  # shard sources: the splits their files hold
    # inputs found but not listed as records (a FIFO named x.jpg, a broken link, a folder that
    # cannot be listed): {"path": ..., "reason": "<path>: ..."}, for errors.jsonl and the report
    errors: list[dict[str, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Record]:
        if self.records is not None:
            return iter(self.records)
        return self._stream()  # type: ignore[operator, no-any-return]

    def __len__(self) -> int:
        if self.records is not None:
            return len(self.records)
        if self.num_records is None:
            raise TypeError("length unknown")
        return self.num_records


def _dedupe_keys(records: list[Record] | RecordList) -> list[Record] | RecordList:
    """Keys must be unique: colliding keys (``a.jpg`` and ``a.png``) get their extension
    appended.

    Found by sorting one 64-bit hash per key (8 bytes a record, not a set of key strings);
    only keys whose hash repeats are compared as text.
    """
    collide = _repeated(records)
    if not collide:
        return records
    out = RecordList() if isinstance(records, RecordList) else []
    for r in records:
        if r.key in collide:
            ext = Path(r.path).suffix.lstrip(".").lower() or "noext"
            r = replace(r, key=f"{r.key}_{ext}")
        out.append(r)
    dupes = _repeated(out)
    if dupes:
        raise SourceError(f"duplicate keys after disambiguation: {sorted(dupes)[:5]}; rename "
                          "the files")
    return out


def _repeated(records: Sequence[Record]) -> set[str]:
    """The keys that occur more than once among ``records``."""
    import numpy as np

    hashes = np.fromiter((hash(r.key) for r in records), dtype=np.int64, count=len(records))
    ordered = np.sort(hashes)
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return set()
    suspects = set(ordered[1:][same].tolist())
    seen: set[str] = set()
    repeated: set[str] = set()
    for r, h in zip(records, hashes.tolist(), strict=True):
        if h in suspects:
            (repeated if r.key in seen else seen).add(r.key)
    return repeated


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
    source = Source("folder", str(root), classes, _dedupe_keys(records))
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
    from dataprep.io.files import not_regular_reason

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

    def full_path(rel: str) -> str:
        path = rel if rel[0] == "/" else f"{base_abs}/{rel}"
        # normpath is costly and most paths need none
        return os.path.normpath(path) if "/." in path or "//" in path else path

    # each record's class_name holds its label text until every label is known
    records: RecordList | list[Record] = RecordList() if packed else []
    append = records.append
    first_line: dict[str, int] = {}  # each distinct label text: the line it first appears on
    with _open_text(list_file) as f:
        # str.splitlines' line breaks (\v, \f, \x1c-\x1e, \x85, \u2028, \u2029 too), read lazily
        lines = (part for chunk in f for part in chunk.splitlines())
        for lineno, line in _numbered(lines, list_file):
            line = line.strip()
            if not line or line[0] == "#":
                continue
            if "\t" in line:
                parts = line.split("\t")
            else:
                parts = line.rsplit(None, 1)
                if len(parts) == 1 and "," in line:
                    parts = line.rsplit(",", 1)
            if len(parts) != 2 or not parts[1].strip():
                raise SourceError(f"{list_file}:{lineno}: expected 'path label' (space or tab "
                                  f"separated), got {line!r}")
            rel, lab = parts[0].strip(), parts[1].strip()
            first_line.setdefault(lab, lineno)
            append(Record(_list_key(rel, list_file, lineno), full_path(rel), 0, lab))
    if not records:
        raise SourceError(f"{list_file} lists no images; expected lines of 'path label'")
    if all(_INT_LABEL.fullmatch(lab) for lab in first_line):
        low, high = min(first_line, key=int), max(first_line, key=int)
        if int(low) < 0:
            raise SourceError(f"{list_file}:{first_line[low]}: label {low} is negative; labels "
                              "are class indexes from 0 (or class names)")
        if int(high) >= MAX_CLASSES:
            raise SourceError(f"{list_file}:{first_line[high]}: label {high} is beyond the "
                              f"{MAX_CLASSES:,} classes a list file may number; labels are class "
                              "indexes from 0")
        classes = [str(i) for i in range(int(high) + 1)]
        to_label = {lab: int(lab) for lab in first_line}
    elif any(_INT_LABEL.fullmatch(lab) for lab in first_line):
        raise SourceError(f"{list_file}: labels mix integers and class names; use one kind")
    else:
        classes = sorted(first_line, key=natural_key)
        to_label = {name: i for i, name in enumerate(classes)}
    mapping = {lab: (to_label[lab], classes[to_label[lab]]) for lab in first_line}
    if isinstance(records, RecordList):
        records.relabel(mapping)
    else:
        for r in records:
            r.label, r.class_name = mapping[r.class_name]
    return Source("list", str(list_file), classes, _dedupe_keys(records))


def _open_text(path: Path) -> io.TextIOWrapper:
    """A source's text file, opened as UTF-8 only if it is a regular file."""
    from dataprep.io.files import open_regular

    return io.TextIOWrapper(open_regular(path, error=SourceError), encoding="utf-8")


def _numbered(lines: Iterable[str], path: Path) -> Iterator[tuple[int, str]]:
    """``enumerate(lines, 1)``, with text that is not UTF-8 a :class:`SourceError` naming the
    line where it starts (about: the text is decoded in blocks)."""
    lineno = 0
    try:
        for lineno, line in enumerate(lines, 1):  # noqa: B007  (read in the handler)
            yield lineno, line
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text, after line {lineno} ({exc.reason}); "
                          "expected a text file (is it an image or an archive?)") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _list_key(rel: str, list_file: Path, lineno: int) -> str:
    try:
        return make_key(rel.lstrip("/"))
    except ValueError:  # "/" or ".": no name left to make a key of
        raise SourceError(f"{list_file}:{lineno}: path {rel!r} names no file; expected "
                          "'path label' with the path of an image") from None


@gc_paused()
def scan_manifest(path: str | Path, packed: bool = True) -> Source:
    """A ``.jsonl`` manifest as written by ``dataprep split`` (with ``classes.json`` beside it);
    records without a split get the file's name (``val.jsonl`` -> val). ``packed``: see
    :func:`scan_folder`.

    Keys are made safe by the shard-key rule (:func:`safe_key`: no dots, no slashes) and
    de-duplicated like folder keys; labels must be ints in ``0..MAX_CLASSES-1`` and splits
    plain names; anything else is a :class:`SourceError` naming the file and line.
    """
    path = Path(path)
    split = path.stem
    records: RecordList | list[Record] = RecordList() if packed else []
    labels: dict[int, int] = {}  # each label: the line it first appears on
    names = _ClassNames(path)  # the class_name each record gives its label, checked
    with _open_text(path) as f:
        for lineno, line in _numbered(f, path):
            if not line.strip():
                continue
            r, named = _manifest_record(line, f"{path}:{lineno}")
            r.split = r.split or split
            labels.setdefault(r.label, lineno)
            if named:
                names.add(r.label, r.class_name, lineno)
            records.append(r)
    if not records:
        raise SourceError(f"{path} holds no records")
    classes_file = path.parent / "classes.json"
    if os.path.lexists(classes_file):
        classes = read_classes(classes_file)
        for label, lineno in labels.items():
            if label >= len(classes):
                raise SourceError(f"{path}:{lineno}: label {label} is not in {classes_file}, "
                                  f"which numbers {len(classes)} classes; rerun `dataprep "
                                  "split` or fix the label")
        names.check(classes, classes_file)
    else:
        classes = [names.of_label[i][0] if i in names.of_label else str(i)
                   for i in range(max(labels) + 1)]
    return Source("manifest", str(path), classes, _dedupe_keys(records))


class _ClassNames:
    """The class names a manifest's records give their labels: one name per label and one
    label per name, else a :class:`SourceError` naming the file and line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.of_label: dict[int, tuple[str, int]] = {}  # label -> (name, first line)
        self.of_name: dict[str, tuple[int, int]] = {}  # name -> (label, first line)

    def add(self, label: int, name: str, lineno: int) -> None:
        known = self.of_label.get(label)
        if known is None:
            other = self.of_name.get(name)
            if other is not None:
                raise SourceError(f"{self.path}:{lineno}: class {name!r:.80} has label {label} "
                                  f"here but label {other[0]} on line {other[1]}; each class "
                                  "needs one label: fix the manifest or rerun `dataprep split`")
            self.of_label[label] = (name, lineno)
            self.of_name[name] = (label, lineno)
        elif known[0] != name:
            raise SourceError(f"{self.path}:{lineno}: label {label} is class {name!r:.80} here "
                              f"but {known[0]!r:.80} on line {known[1]}; each label needs one "
                              "class name: fix the manifest or rerun `dataprep split`")

    def check(self, classes: list[str], classes_file: Path) -> None:
        """Every record's class name agrees with ``classes.json`` (``classes``)."""
        for label, (name, lineno) in sorted(self.of_label.items()):
            if classes[label] != name:
                raise SourceError(f"{self.path}:{lineno}: class_name {name!r:.80} of label "
                                  f"{label} disagrees with {classes_file}, which names label "
                                  f"{label} {classes[label]!r:.80}; rerun `dataprep split` or "
                                  "fix one of them")


def _manifest_record(line: str, where: str) -> tuple[Record, bool]:
    """One manifest line as a record, and whether it names its class (``class_name``); a
    :class:`SourceError` naming ``where`` (file:line) when it is not ``{"key": str, "path":
    str, "label": int, ...}`` (``class_name``, if given, a string)."""
    try:
        d = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"{where}: not a JSON line ({type(exc).__name__}); expected one "
                          "record per line as `dataprep split` writes") from None
    if not isinstance(d, dict):
        raise SourceError(f"{where}: a JSON {type(d).__name__}, not an object; expected "
                          '{"key": ..., "path": ..., "label": ...}')
    for name in ("key", "path"):
        if not isinstance(d.get(name), str) or not d[name]:
            raise SourceError(f"{where}: {name!r} must be a non-empty string, got "
                              f"{d.get(name)!r:.80}")
    label = check_label(d.get("label"), where)
    split = d.get("split", "") or ""
    if not isinstance(split, str) or (split and not SPLIT_NAME.fullmatch(split)):
        raise SourceError(f"{where}: split {split!r:.80} is not a plain name; expected letters, "
                          "digits, '_' or '-' (train, val, test)")
    named = "class_name" in d
    if named and not isinstance(d["class_name"], str):
        raise SourceError(f"{where}: 'class_name' must be a string, got a "
                          f"{type(d['class_name']).__name__} ({d['class_name']!r:.80})")
    group = d.get("group")
    return Record(key=safe_key(d["key"]), path=d["path"], label=label,
                  class_name=d["class_name"] if named else str(label), split=split,
                  group=None if group is None else str(group)), named


def check_label(value: object, where: str, error: type[DataprepError] = SourceError) -> int:
    """``value`` as a label: an int (not a bool) in ``0..MAX_CLASSES-1``; else ``error``
    naming ``where``."""
    if type(value) is not int or not 0 <= value < MAX_CLASSES:
        raise error(f"{where}: label {value!r:.80} is not a class index; expected an integer "
                    f"from 0 to {MAX_CLASSES - 1:,}")
    return value


def read_classes(path: Path) -> list[str]:
    """``classes.json`` (class name -> label) as the list of names by label; labels must be
    distinct ints in ``0..MAX_CLASSES-1`` (gaps are named by their number)."""
    from dataprep.io.files import read_json_file

    mapping = read_json_file(path, SourceError)
    if not isinstance(mapping, dict):
        raise SourceError(f"{path}: expected a JSON object of class name -> label, got a "
                          f"{type(mapping).__name__}; rerun `dataprep split`")
    by_label: dict[int, str] = {}
    for name, value in mapping.items():
        label = check_label(value, f"{path}: class {name!r:.80}")
        if label in by_label:
            raise SourceError(f"{path}: classes {by_label[label]!r:.80} and {name!r:.80} share "
                              f"label {label}; each class needs its own")
        by_label[label] = name
    return [by_label.get(i, str(i)) for i in range(max(by_label, default=-1) + 1)]


def _shard_source(kind: str, location: str, split: str | None) -> Source:
    from dataprep.io import readers

    classes: list[str] = []
    num: int | None = None
    parts: list[tuple[str, str]]  # (split, shard or environment), in reading order
    if kind == "lmdb":
        envs = readers.list_lmdbs(location, split)
        parts = [(split or _split_of(env, ".lmdb"), env) for env in envs]
        num = 0
        for env in envs:
            n, classes = readers.lmdb_header(env)
            num += n
    else:
        shards = readers.list_tar_shards(location, split)
        parts = [(split or _split_of(shard, ".tar"), shard) for shard in shards]
        folder = Path(shards[0]).parent
        info = readers.read_info(folder) if not location.startswith(_REMOTE) else None
        if info is not None:
            splits = info["splits"]
            names = [split] if split else list(splits)
            if all("num_samples" in splits.get(n, {}) for n in names):
                num = sum(splits[n]["num_samples"] for n in names)
        classes = _ledger_classes(folder) if not location.startswith(_REMOTE) else []

    def stream() -> Iterator[Record]:
        # every key yielded (made safe), so that two samples never share one output key;
        # the original of a key that safe_key changed, to name it when another collides
        seen: set[str] = set()
        renamed: dict[str, str] = {}
        read = usable = 0
        first_skip = ""
        for part_split, part in parts:
            if kind == "lmdb":
                samples: Iterator[Sample | dict | readers.Skip] = readers.iter_lmdb_source(part)
            else:
                samples = readers.iter_tar(part, note_ignored=True)
            for s in samples:
                r = _shard_record(s, part_split)
                original = (s.key if not isinstance(s, dict)
                            else str(s.get("__key__", "")))
                if r.key in seen:
                    raise SourceError(_duplicate_key(part, original, renamed.get(r.key, r.key),
                                                     r.key))
                seen.add(r.key)
                if original != r.key:
                    renamed[r.key] = original
                read += 1
                if NO_IMAGE in (r.meta or {}):
                    first_skip = first_skip or str(r.meta[NO_IMAGE])
                else:
                    usable += 1
                yield r
        if not usable:
            if read:
                raise SourceError(f"{location}: none of its {read:,} samples can be used, "
                                  f"e.g. {first_skip}")
            raise SourceError(f"{location}: holds no samples (its "
                              f"{'environments' if kind == 'lmdb' else 'tar shards'} are "
                              "empty); expected samples of an image and a label")

    source = Source(kind, location, classes, None, stream, num)
    source.splits = sorted({name for name, _ in parts})
    return source


_REMOTE = ("http://", "https://", "pipe:")


def _duplicate_key(part: str, key: str, earlier: str, safe: str) -> str:
    """The error of a shard sample whose key (made safe) was read before."""
    if key == earlier:
        how = f"sample key {key!r:.120} was read before in this source"
    else:
        how = (f"sample keys {earlier!r:.120} (read before) and {key!r:.120} both become "
               f"{safe!r:.120} once made safe ('/' -> '__', other characters -> '_')")
    return (f"{part}: {how}; two samples would share one output key: keys must be unique, "
            "rename one")


def _shard_record(s: Sample | dict | object, part_split: str) -> Record:
    """A shard sample (an LMDB :class:`Sample` or :class:`~readers.Skip`, or a raw tar
    sample) as a record.

    A sample that cannot be used (a tar sample without an image member, one without a label)
    becomes a record with ``data=b""`` and the reason in ``meta[NO_IMAGE]``: the task skips
    and lists it (``record_bytes``), the run goes on. A tar sample with more than one image
    member is a :class:`ShardError`."""
    from dataprep.io import readers

    if isinstance(s, readers.Skip):
        return _skipped(s.key, s.reason, part_split)
    if isinstance(s, dict):
        where = f"{s.get('__url__')}: sample {s.get('__key__')!r:.120}"
        key = str(s.get("__key__", ""))
        images = [f for f in readers.IMAGE_FIELDS if f in s]
        if len(images) > 1:
            raise ShardError(f"{where} has {len(images)} image members ({', '.join(images)}); "
                             "expected one image per sample: the shard is damaged or not "
                             "made for dataprep")
        if not images:
            return _skipped(key, f"{where} has no image member "
                            f"({', '.join(readers.IMAGE_FIELDS)}); it is left out"
                            f"{_ignored_note(s)}", part_split)
        sample = readers.to_sample(s)
        if "cls" not in s and "label" not in sample.meta:
            return _skipped(key, f"{where} has no label (no .cls member and no 'label' in "
                            f"its .json); it is left out{_ignored_note(s)}", part_split)
        s = sample
    assert isinstance(s, Sample)
    meta = dict(s.meta)
    if "split" in meta and part_split:  # the shard's own split name is the truth
        meta["split"] = part_split
    return Record(key=_full_key(s, meta), path=str(meta.get("path", "")), label=s.cls,
                  class_name=str(meta.get("class_name", s.cls)), split=part_split,
                  data=s.image, ext=s.ext, meta=meta)


def _full_key(s: Sample, meta: dict) -> str:
    """The record key of a shard sample: its full key when the sample was stored under a
    shortened one (``json.key_full``, which must shorten to the stored key), so a re-shard
    shortens it alike and keeps ``key_full``; else the stored key made safe."""
    from dataprep.io.writers import member_key

    full = meta.get("key_full")
    if (isinstance(full, str) and full != s.key and safe_key(full) == full
            and member_key(full, s.ext) == s.key):
        del meta["key_full"]
        return full
    return safe_key(s.key)


def _skipped(key: str, reason: str, part_split: str) -> Record:
    return Record(key=safe_key(key), path="", label=-1, class_name="", split=part_split,
                  data=b"", ext="", meta={NO_IMAGE: reason})


def _ignored_note(s: dict) -> str:
    """Why a tar sample's dotted members (``a.b.c.png``) were not read, or ""."""
    from dataprep.io import readers

    names = s.get(readers.IGNORED)
    if not names:
        return ""
    name = names[0]
    base = name.rsplit("/", 1)[-1]
    stem, ext = base.rsplit(".", 1)
    fixed = name[: len(name) - len(base)] + stem.replace(".", "_") + "." + ext
    more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
    return (f"; member {name!r:.120}{more} was not read: a webdataset key ends at the first "
            f"dot of the file name, so its field is {base.split('.', 1)[1]!r:.40}, not one "
            f"of {', '.join(sorted(readers.ALLOWED_FIELDS))}: rename it {fixed!r:.120}")


def _ledger_classes(folder: Path) -> list[str]:
    """The class names a shard folder's ``dataprep.json`` records ([] without one); a damaged
    ledger is a :class:`SourceError` naming it."""
    from dataprep.io.files import read_json_file

    path = folder / "dataprep.json"
    if not os.path.lexists(path):
        return []
    ledger = read_json_file(path, SourceError)
    splits = ledger.get("splits") if isinstance(ledger, dict) else None
    if not isinstance(splits, dict):
        raise SourceError(f"{path}: damaged, no 'splits' object; remove it to read the shards "
                          "without it (class names then come from the samples)")
    for entry in splits.values():
        names = entry.get("classes") if isinstance(entry, dict) else None
        if names:
            if not isinstance(names, list) or not all(isinstance(c, str) for c in names) \
                    or len(names) > MAX_CLASSES:
                raise SourceError(f"{path}: 'classes' is not a list of class names; the "
                                  "ledger is damaged")
            return names
    return []


def _split_of(path: str, suffix: str) -> str:
    """Split name of a shard file or LMDB: ``val-000003.tar`` -> val, ``train.lmdb`` -> train;
    "" when the name follows neither pattern (the job's default split is used)."""
    name = Path(path).name
    if suffix == ".tar":
        m = re.fullmatch(r"(.+)-\d+\.tar", name)
        return m.group(1) if m else ""
    return name[: -len(suffix)] if name.endswith(suffix) else ""


def scan(src: str | Path, root: str | Path | None = None, split: str | None = None,
         packed: bool = True) -> Source:
    """Open any supported source (folder, list, manifest, WebDataset, LMDB).

    Image sources (folder, list, manifest) are listed whole: in a compact :class:`RecordList`,
    or with ``packed=False`` in a plain list of records."""
    from dataprep.io import readers

    s = str(src)
    if "{" in s or s.endswith(".tar") or s.startswith(("http://", "https://", "pipe:")):
        return _shard_source("webdataset", s, split)
    p = Path(s)
    if not p.exists():
        raise MissingSourceError(f"{s} does not exist; expected an image folder, a list file, a "
                          ".jsonl manifest, a WebDataset directory or an LMDB")
    if not p.is_file() and not p.is_dir():  # a FIFO, device or socket: never opened
        from dataprep.io.files import not_regular_reason

        raise SourceError(not_regular_reason(s, p.stat().st_mode))
    if p.is_file():
        if p.suffix == ".jsonl":
            return scan_manifest(p, packed)
        if p.suffix.lower() in LIST_SUFFIXES:
            return scan_list(p, root, packed)
        raise SourceError(f"{s}: unknown source file type {p.suffix!r}; expected .jsonl "
                          f"(manifest) or a list file ({', '.join(LIST_SUFFIXES)})")
    if readers.is_lmdb(p) or any(readers.is_lmdb(c) for c in p.glob("*.lmdb")):
        return _shard_source("lmdb", s, split)
    if any(p.glob("*.tar")):
        return _shard_source("webdataset", s, split)
    return scan_folder(p, packed)
