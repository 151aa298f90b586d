"""Record (one input image) and Sample (one output unit), and the key rule."""

from __future__ import annotations

import gc
import re
import unicodedata
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, overload

_UNSAFE = re.compile(r"[^\w\-]+")  # \w: letters and digits of any script, and _
_UNSAFE_PATH = re.compile(r"[^\w\-/]+")
_EMPTY_OR_DOT_PART = re.compile(r"(?:^|/)\.?(?:/|$)")  # "", "." parts: "a//b", "./a", "a/"
# the common case, "class/img_001.jpg": ASCII word characters and "-", one extension
_PLAIN = re.compile(r"(?:[A-Za-z0-9_\-]+/)*[A-Za-z0-9_\-]+\.[A-Za-z0-9_]+")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Records hold no reference cycles; with a million of them alive, the collector's full passes
    took ~40% of a million-record split. Usable as a decorator.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def make_key(relpath: str) -> str:
    """Stable, dot-free, slash-free key from a relative path.

    WebDataset groups tar members by the text before the first dot of the basename, so keys
    carry no dots; they carry no slashes so they are flat. ``animals/cat.01.jpg`` ->
    ``animals__cat_01``. Letters and digits of any script, ``_`` and ``-`` are kept (in NFC form,
    so a name macOS stored decomposed gives the same key); runs of other characters become ``_``.
    """
    if _PLAIN.fullmatch(relpath):  # nothing to replace: drop the extension, flatten
        return relpath[: relpath.rindex(".")].replace("/", "__")
    return _general_key(relpath)


def _general_key(relpath: str) -> str:
    """:func:`make_key` for any path."""
    text = relpath if relpath.isascii() else unicodedata.normalize("NFC", relpath)
    text = text.replace("\\", "/")
    if _EMPTY_OR_DOT_PART.search(text) is None:
        # fast path (no empty or "." parts): one substitution over the whole path; "/" is not
        # in the class, so runs never cross parts and the result equals the part-wise rule
        head, _, last = text.rpartition("/")
        if "." in last.lstrip("."):
            last = last.rsplit(".", 1)[0]
        return _UNSAFE_PATH.sub("_", f"{head}/{last}" if head else last).replace("/", "__")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError("empty path has no key")
    last = parts[-1]
    if "." in last.lstrip("."):
        parts[-1] = last.rsplit(".", 1)[0]
    return "__".join(_UNSAFE.sub("_", part) for part in parts)


def safe_key(key: str) -> str:
    """A key read from shards made safe: ``/`` -> ``__``, dots and other characters -> ``_``.

    Keys dataprep wrote are unchanged; keys of foreign or hostile shards (``../x``) can then
    never name a path outside an output folder nor split differently in WebDataset.
    """
    return "__".join(_UNSAFE.sub("_", part) for part in key.split("/") if part) or "_"


# The json member of every sample, whatever the verb: these keys, always, ``None`` (JSON
# null) where one does not apply; other metadata a source carried follows them. One schema lets
# readers that take one type per column for a whole dataset (Hugging Face ``datasets``) load
# the splits of several verbs together. The README's table says what each key means.
SAMPLE_SCHEMA: dict[str, str] = {
    "key": "str",  # the sample's key: its tar member names are "{key}.{field}"
    "key_full": "str",  # the key before it was shortened (equal to key when it was not)
    "label": "int",
    "class_name": "str",
    "path": "str|null",
    "split": "str|null",
    "size": "[int, int]|null",
    "source": "str|null",
    "view": "int|null",
    "view_name": "str|null",
    "views": "object|null",
    "copy": "int|null",
    "augment": "object|null",
}
MAX_MEMBER_NAME = 100  # bytes of a tar member name that fit a ustar header (no LongLink)
KEY_HASH_HEX = 10  # hex digits of sha1(full key) after a shortened key's "~"


def short_key(key: str, limit: int) -> str:
    """``key`` when its UTF-8 form has at most ``limit`` bytes; else its longest prefix that
    fits with ``"~"`` and the first :data:`KEY_HASH_HEX` hex digits of its sha1, cut at a
    character boundary (``"~"`` is never in a key :func:`make_key` makes, so a shortened key
    cannot equal an unshortened one)."""
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return key
    import hashlib

    digest = hashlib.sha1(raw).hexdigest()[:KEY_HASH_HEX]
    keep = limit - 1 - KEY_HASH_HEX
    if keep < 1:
        raise ValueError(f"a key limit of {limit} bytes leaves no room for the key")
    prefix = raw[:keep].decode("utf-8", "ignore")  # a character cut in half is dropped
    return f"{prefix}~{digest}"


def schema_meta(meta: Mapping[str, Any], key: str, key_full: str | None = None,
                ) -> dict[str, Any]:
    """``meta`` with every :data:`SAMPLE_SCHEMA` key (``None`` where absent), ``key`` set and
    ``key_full`` the key before shortening (``key`` itself when not given)."""
    out: dict[str, Any] = dict.fromkeys(SAMPLE_SCHEMA)
    out.update(meta)
    out["key"] = key
    out["key_full"] = key if key_full is None else key_full
    if out["split"] == "":
        out["split"] = None
    if out["path"] == "":
        out["path"] = None
    return out


# Record.meta key of a shard sample that has no image: the reason it is skipped (its data is
# b""; dataprep.io.decode.record_bytes raises it as an ImageError)
NO_IMAGE = "no_image"


@dataclass(slots=True)
class Record:
    """One input image before processing (treat as immutable: use ``dataclasses.replace``;
    not frozen only because a frozen dataclass is ~3x slower to build, which a million-record
    split feels).

    ``path`` is a filesystem path; ``data`` carries already-encoded bytes when the record comes
    from shards (then ``ext`` names their format). ``meta`` is free metadata carried to samples.
    """

    key: str
    path: str
    label: int
    class_name: str
    split: str = ""
    group: str | None = None
    data: bytes | None = field(default=None, repr=False, compare=False)
    ext: str | None = None
    meta: dict[str, Any] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "key": self.key,
            "path": self.path,
            "label": self.label,
            "class_name": self.class_name,
            "split": self.split,
        }
        if self.group is not None:
            d["group"] = self.group
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Record:
        return cls(
            key=str(d["key"]),
            path=str(d["path"]),
            label=int(d["label"]),
            class_name=str(d.get("class_name", d["label"])),
            split=str(d.get("split", "")),
            group=None if d.get("group") is None else str(d["group"]),
        )


@dataclass
class Sample:
    """One output unit: encoded image bytes (``ext`` is jpg/png/webp), class index, metadata."""

    key: str
    image: bytes
    ext: str
    cls: int
    meta: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return len(self.image)


_UTF8, _RAW = "utf-8", "surrogatepass"  # file names that are not UTF-8 come as surrogates


class RecordList(Sequence[Record]):
    """Records of an image source packed into a few flat buffers, read back as :class:`Record`.

    A :class:`Record` object with its key and path strings weighs about 350 bytes; a million of
    them is 350 MB held by the writing process for the whole run. Here a record costs its key's
    and path's last parts as UTF-8 plus ~40 bytes of arrays: folders and key prefixes (the part
    before the last ``/`` or ``__``), class names and splits are stored once each. Records are
    appended while a source is listed, then read by index, slice or iteration (each read builds
    a fresh :class:`Record`). Only records without ``data``, ``ext`` or ``meta`` (files, not
    shard samples) can be packed.
    """

    __slots__ = ("_blob", "_ends", "_key_len", "_path_len", "_key_head", "_path_head",
                 "_label", "_cls", "_split", "_group_len", "_heads", "_head_index",
                 "_names", "_name_index")

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._blob = bytearray()  # per record: key tail, path tail, group
        self._ends = array("Q")  # end of each record's bytes in _blob
        self._key_len = array("I")  # bytes of the key tail
        self._path_len = array("I")  # bytes of the path tail
        self._group_len = array("l")  # bytes of the group, -1 for None
        self._key_head = array("I")  # index into _heads
        self._path_head = array("I")
        self._label = array("q")
        self._cls = array("I")  # index into _names
        self._split = array("I")  # index into _names
        self._heads: list[str] = []
        self._head_index: dict[str, int] = {}
        self._names: list[str] = []
        self._name_index: dict[str, int] = {}
        for r in records:
            self.append(r)

    def _intern(self, text: str, table: list[str], index: dict[str, int]) -> int:
        i = index.get(text)
        if i is None:
            i = index[text] = len(table)
            table.append(text)
        return i

    def append(self, r: Record) -> None:
        if r.data is not None or r.ext is not None or r.meta is not None:
            raise ValueError(f"record {r.key!r} carries data, ext or meta; only file records "
                             "are packed")
        key_head, sep, key_tail = r.key.rpartition("__")
        path_head, psep, path_tail = r.path.rpartition("/")
        kt, pt = key_tail.encode(_UTF8, _RAW), path_tail.encode(_UTF8, _RAW)
        self._blob += kt
        self._blob += pt
        if r.group is None:
            self._group_len.append(-1)
        else:
            g = r.group.encode(_UTF8, _RAW)
            self._blob += g
            self._group_len.append(len(g))
        self._ends.append(len(self._blob))
        self._key_len.append(len(kt))
        self._path_len.append(len(pt))
        heads, head_index = self._heads, self._head_index
        self._key_head.append(self._intern(key_head + sep, heads, head_index))
        self._path_head.append(self._intern(path_head + psep, heads, head_index))
        self._label.append(r.label)
        self._cls.append(self._intern(r.class_name, self._names, self._name_index))
        self._split.append(self._intern(r.split, self._names, self._name_index))

    def __len__(self) -> int:
        return len(self._ends)

    def _get(self, i: int) -> Record:
        start = self._ends[i - 1] if i else 0
        k = start + self._key_len[i]
        p = k + self._path_len[i]
        blob, heads, names = self._blob, self._heads, self._names
        glen = self._group_len[i]
        return Record(
            heads[self._key_head[i]] + blob[start:k].decode(_UTF8, _RAW),
            heads[self._path_head[i]] + blob[k:p].decode(_UTF8, _RAW),
            self._label[i],
            names[self._cls[i]],
            names[self._split[i]],
            None if glen < 0 else blob[p:p + glen].decode(_UTF8, _RAW),
        )

    @overload
    def __getitem__(self, i: int) -> Record: ...
    @overload
    def __getitem__(self, i: slice) -> list[Record]: ...

    def __getitem__(self, i: int | slice) -> Record | list[Record]:
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(len(self)))]
        n = len(self._ends)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("record index out of range")
        return self._get(i)

    def __iter__(self) -> Iterator[Record]:
        return map(self._get, range(len(self._ends)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable (append), like list

    def __repr__(self) -> str:
        return f"RecordList({len(self)} records)"

    def relabel(self, mapping: Mapping[str, tuple[int, str]]) -> None:
        """Give every record whose class name is ``name`` the label and class name
        ``mapping[name]`` (for sources whose class numbering is known only once every record
        is listed)."""
        new: dict[int, tuple[int, int]] = {}
        for c in set(self._cls):
            label, name = mapping[self._names[c]]
            new[c] = (label, self._intern(name, self._names, self._name_index))
        self._label = array("q", (new[c][0] for c in self._cls))
        self._cls = array("I", (new[c][1] for c in self._cls))
