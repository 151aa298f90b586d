"""Sources -> records: image folder, list file, manifest (.jsonl), WebDataset, LMDB.

``scan(src)`` returns a :class:`Source`: the class list and an iterator of records. Image
sources are listed eagerly (metadata only); shard sources stream their encoded bytes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from dataprep.errors import SourceError
from dataprep.records import Record, RecordList, gc_paused, make_key, safe_key

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
LIST_SUFFIXES = (".txt", ".lst", ".csv", ".tsv", ".list")
MAX_CLASSES = 10_000_000  # integer labels of a list file number the classes 0..label
_DIGITS = re.compile(r"(\d+)")


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
    classes = sorted(
        (d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=natural_key,
    )
    records: RecordList | list[Record] = RecordList() if packed else []
    for label, class_name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(root / class_name, followlinks=False):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in filenames:
                if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                    found.append(os.path.join(dirpath, f))
        for path in sorted(found, key=lambda p: natural_key(os.path.relpath(p, root))):
            rel = os.path.relpath(path, root)
            records.append(Record(key=make_key(rel), path=os.path.abspath(path), label=label,
                                  class_name=class_name))
    if not records:
        raise SourceError(
            f"Found 0 images in subfolders of {root}. Expected root/<class>/<image>; supported "
            f"image extensions are {', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)} "
            "(case-insensitive)"
        )
    return Source("folder", str(root), classes, _dedupe_keys(records))


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
    with open(list_file, encoding="utf-8") as f:
        # str.splitlines' line breaks (\v, \f, \x1c-\x1e, \x85, \u2028, \u2029 too), read lazily
        lines = (part for chunk in f for part in chunk.splitlines())
        for lineno, line in enumerate(lines, 1):
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
            append(Record(make_key(rel.lstrip("/")), full_path(rel), 0, lab))
    if not records:
        raise SourceError(f"{list_file} lists no images; expected lines of 'path label'")
    if all(lab.lstrip("-").isdigit() for lab in first_line):
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
    elif any(lab.lstrip("-").isdigit() for lab in first_line):
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


@gc_paused()
def scan_manifest(path: str | Path, packed: bool = True) -> Source:
    """A ``.jsonl`` manifest as written by ``dataprep split`` (with ``classes.json`` beside it);
    records without a split get the file's name (``val.jsonl`` -> val). ``packed``: see
    :func:`scan_folder`."""
    path = Path(path)
    split = path.stem
    records: RecordList | list[Record] = RecordList() if packed else []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = Record.from_json(json.loads(line))
                if not r.split:
                    r.split = split
                records.append(r)
            except (ValueError, KeyError, TypeError, OverflowError) as exc:
                raise SourceError(f"{path}:{lineno}: not a manifest record ({exc})") from exc
    if not records:
        raise SourceError(f"{path} holds no records")
    classes_file = path.parent / "classes.json"
    if classes_file.exists():
        mapping = json.loads(classes_file.read_text())
        classes = [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
    else:
        by_label = {r.label: r.class_name for r in records}
        classes = [by_label.get(i, str(i)) for i in range(max(by_label) + 1)]
    return Source("manifest", str(path), classes, records)


def _shard_source(kind: str, location: str, split: str | None) -> Source:
    from dataprep.io import readers
    from dataprep.io.manifest import read_json, read_ledger

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
        info = read_json(folder / "_info.json", None)
        if info is not None:
            splits = info["splits"]
            names = [split] if split else list(splits)
            if all(n in splits for n in names):
                num = sum(splits[n]["num_samples"] for n in names)
        ledger = read_ledger(folder)
        for entry in ledger.get("splits", {}).values():
            classes = classes or entry.get("classes", [])

    def stream() -> Iterator[Record]:
        for part_split, part in parts:
            samples = (readers.iter_lmdb(part) if kind == "lmdb" else
                       (readers.to_sample(d) for d in readers.iter_tar(part)))
            for s in samples:
                meta = dict(s.meta)
                if "split" in meta and part_split:  # the shard's own split name is the truth
                    meta["split"] = part_split
                yield Record(key=safe_key(s.key), path=str(meta.get("path", "")), label=s.cls,
                             class_name=str(meta.get("class_name", s.cls)), split=part_split,
                             data=s.image, ext=s.ext, meta=meta)

    source = Source(kind, location, classes, None, stream, num)
    source.splits = sorted({name for name, _ in parts})
    return source


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
        raise SourceError(f"{s} does not exist; expected an image folder, a list file, a "
                          ".jsonl manifest, a WebDataset directory or an LMDB")
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
