"""Manifest sources: a ``.jsonl`` of records as ``dataprep split`` writes, with the
``classes.json`` beside it.

Every line is checked (key, path, label, split, class name) and every class name must agree
with its label across the file and with ``classes.json``; anything else is a
:class:`SourceError` naming the file and line.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from dataprep.errors import SourceError
from dataprep.io.files import numbered_lines, open_text, read_json_file
from dataprep.io.labels import check_label
from dataprep.io.source import Source, dedupe_keys
from dataprep.records import Record, RecordList, gc_paused, safe_key

SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")  # splits name output files: nothing else


@gc_paused()
def scan_manifest(path: str | Path, packed: bool = True) -> Source:
    """A ``.jsonl`` manifest as written by ``dataprep split`` (with ``classes.json`` beside it);
    records without a split get the file's name (``val.jsonl`` -> val). ``packed``: see
    :func:`dataprep.io.scan.scan_folder`.

    Keys are made safe by the shard-key rule (:func:`safe_key`: no dots, no slashes) and
    de-duplicated like folder keys; labels must be ints in ``0..MAX_CLASSES-1`` and splits
    plain names; anything else is a :class:`SourceError` naming the file and line.
    """
    path = Path(path)
    split = path.stem
    records: RecordList | list[Record] = RecordList() if packed else []
    labels: dict[int, int] = {}  # each label: the line it first appears on
    names = _ClassNames(path)  # the class_name each record gives its label, checked
    with open_text(path) as f:
        for lineno, line in numbered_lines(f, path):
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
    return Source("manifest", str(path), classes, dedupe_keys(records))


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


def read_classes(path: Path) -> list[str]:
    """``classes.json`` (class name -> label) as the list of names by label; labels must be
    distinct ints in ``0..MAX_CLASSES-1`` (gaps are named by their number)."""
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

