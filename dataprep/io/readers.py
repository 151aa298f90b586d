"""Read samples back from shards: WebDataset tars (listing, members, samples), and any sink.

Security: only the fields in :data:`ALLOWED_FIELDS` are kept,
nothing is unpickled, tar member names are never used as filesystem paths, and members larger
than :data:`MAX_MEMBER_BYTES` are refused. LMDB environments are read by
:mod:`dataprep.io.lmdbread`; :func:`iter_samples` reads either.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from dataprep.errors import ShardError, SourceError
from dataprep.io import tarformat
from dataprep.io.fields import IMAGE_FIELDS, member_json, stored_meta
from dataprep.io.files import open_regular, read_json_file
from dataprep.io.labels import UNLABELLED, json_label, parse_cls
from dataprep.io.lmdbread import is_lmdb, iter_lmdb
from dataprep.records import Sample

ALLOWED_FIELDS = frozenset(IMAGE_FIELDS + ("cls", "json", "txt"))
MAX_MEMBER_BYTES = 256 * 1024 * 1024


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{000000..000009}`` ranges and ``{a,b}`` lists (as webdataset / braceexpand)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end():]
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        width = len(lo) if lo.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        items = body.split(",")
    out: list[str] = []
    for item in items:
        out.extend(expand_braces(head + item + tail))
    return out


def _images_hint(folder: str) -> str:
    """For a folder of images where shards were expected: how to make shards of them."""
    exts = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
    for _, _, names in itertools.islice(os.walk(folder), 200):  # a cheap look, not a scan
        if any(os.path.splitext(n)[1].lower() in exts for n in names):
            return (f"; it holds images: make shards of them first, e.g. `dataprep resize "
                    f"{folder} -o shards --short-side 256` (or `dataprep split` it, then "
                    "resize each split into one folder), and pass that folder")
    return ""


def list_tar_shards(src: str | Path, split: str | None = None) -> list[str]:
    """Tar shard paths of a WebDataset directory (sorted; one split if given) or brace pattern."""
    s = str(src)
    if "{" in s:
        return expand_braces(s)
    if os.path.isdir(s):
        info = read_info(s)
        if info is not None:
            splits = info["splits"]
            names = [split] if split else sorted(splits)
            files = []
            for name in names:
                if name not in splits:
                    raise SourceError(f"{s} has no split {name!r}; it has {sorted(splits)}")
                files += [os.path.join(s, f) for f in splits[name]["filenames"]]
            return files
        pat = f"{split}-*.tar" if split else "*.tar"
        files = sorted(glob.glob(os.path.join(s, pat)))
        if not files:
            raise SourceError(f"no .tar shards in {s}{_images_hint(s)}")
        return files
    if s.endswith(".tar"):
        return [s]
    raise SourceError(f"{s} is not a WebDataset directory, .tar file or brace pattern")


def read_info(folder: str | Path) -> dict[str, Any] | None:
    """A shard folder's ``_info.json``, checked (None when there is none): ``splits`` maps each
    split to ``filenames`` (plain file names in the folder) and ``num_samples`` (an int >= 0).
    A damaged file is a :class:`SourceError` naming it."""
    path = Path(folder) / "_info.json"
    if not os.path.lexists(path):
        return None
    info = read_json_file(path, SourceError)
    splits = info.get("splits") if isinstance(info, dict) else None
    if not isinstance(splits, dict):
        raise SourceError(f"{path}: damaged, no 'splits' object; expected timm's _info.json "
                          "(remove it to read the folder's *.tar shards instead)")
    for name, entry in splits.items():
        _check_info_split(path, name, entry)
    return info


def _check_info_split(path: Path, name: str, entry: Any) -> None:
    where = f"{path}: split {name!r:.80}"
    files = entry.get("filenames") if isinstance(entry, dict) else None
    if not isinstance(files, list) or not all(_plain_name(f) for f in files):
        raise SourceError(f"{where}: 'filenames' must be a list of shard file names in that "
                          "folder (no paths); the file is damaged or hostile, remove it to read "
                          "the folder's *.tar shards instead")
    n = entry.get("num_samples", 0)
    if type(n) is not int or n < 0:
        raise SourceError(f"{where}: 'num_samples' {n!r:.80} is not a count; expected an "
                          "integer >= 0")


def _plain_name(name: object) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name)


_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")  # gz bz2 xz zstd


def _split_name(name: str) -> tuple[str, str] | None:
    """(key, lower-case field) of a member name, as webdataset groups them; None to skip."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        return None
    prefix, field = base.split(".", 1)
    return (name[: len(name) - len(base)] + prefix).lstrip("./"), field.lower()


# the raw sample field listing the members ``iter_tar(..., note_ignored=True)`` left out because
# their field has extra dots (``a.b.c.png``: key ``a``, field ``b.c.png``)
IGNORED = "__ignored__"


def iter_tar(path: str | Path, note_ignored: bool = False) -> Iterator[dict[str, Any]]:
    """Stream one tar: yields ``{"__key__": key, field: bytes, ...}`` per sample, in order.

    Members are grouped by key (the member name up to the first dot of its basename), as
    webdataset does; only regular files with allowed fields are read (the others are skipped
    without reading their data). Uncompressed tars are parsed by :mod:`dataprep.io.tarformat`;
    compressed ones go through ``tarfile``. A field twice in one sample (``k.cls`` twice) is
    a :class:`ShardError` naming the shard and the key. ``note_ignored``: members whose field
    ends in an allowed one after extra dots (``a.b.c.png``) are listed, unread, in their
    sample's :data:`IGNORED` field (a sample may then hold nothing else).
    """
    samples = _Samples(path, note_ignored)
    try:
        with open_regular(path, error=ShardError, buffering=1 << 20) as f:
            for name, data in _members(f, samples.want):
                yield from samples.add(name, data)
            yield from samples.drain()
    except (tarformat.TarFormatError, tarfile.TarError, EOFError, ValueError,
            OverflowError) as exc:
        raise ShardError(f"{path}: not a readable tar shard ({exc})") from exc
    except OSError as exc:
        raise ShardError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if samples.current is not None:
        yield samples.current


class _Samples:
    """The samples of one tar as its members arrive: members of one key make one sample, a
    sample ends when a member of another key comes (see :func:`iter_tar`)."""

    def __init__(self, path: str | Path, note_ignored: bool) -> None:
        self.path = path
        self.note_ignored = note_ignored
        self.pending: list[tuple[str, str]] = []  # (key, name) of the dotted members passed over
        self.current: dict[str, Any] | None = None

    def want(self, name: str, size: int) -> bool:
        """Whether to read member ``name`` (an allowed field, not too large)."""
        parts = _split_name(name)
        if parts is None:
            return False
        if parts[1] not in ALLOWED_FIELDS:
            if self.note_ignored and parts[1].rsplit(".", 1)[-1] in ALLOWED_FIELDS:
                self.pending.append((parts[0], name))
            return False
        if size > MAX_MEMBER_BYTES:
            raise ShardError(
                f"{self.path}: member {name!r} is {size:,} bytes, over the "
                f"{MAX_MEMBER_BYTES:,}-byte limit; the shard is corrupt or hostile"
            )
        return True

    def place(self, key: str) -> dict[str, Any] | None:
        """Make ``current`` the sample of ``key``; returns the sample it ends, if any."""
        done = None
        if self.current is not None and self.current["__key__"] != key:
            done, self.current = self.current, None
        if self.current is None:
            self.current = {"__key__": key, "__url__": str(self.path)}
        return done

    def drain(self) -> Iterator[dict[str, Any]]:
        """Note the dotted members passed over in their samples; yields the samples ended."""
        for key, name in self.pending:
            if (done := self.place(key)) is not None:
                yield done
            self.current.setdefault(IGNORED, []).append(name)  # type: ignore[union-attr]
        self.pending.clear()

    def add(self, name: str, data: bytes) -> Iterator[dict[str, Any]]:
        """Put a member read into its sample; yields the samples this ends."""
        yield from self.drain()
        key, field = _split_name(name)  # type: ignore[misc]  (want() kept it)
        if (done := self.place(key)) is not None:
            yield done
        assert self.current is not None
        if field in self.current:
            raise ShardError(
                f"{self.path}: sample {key!r:.120} has field {field!r} twice (member "
                f"{name!r:.120} repeats it); the shard is damaged or not made for "
                "webdataset: each sample holds one member per field")
        self.current[field] = data


def _members(f: BinaryIO, want: Callable[[str, int], bool]) -> Iterator[tuple[str, bytes]]:
    """(name, data) of the members of an open tar that ``want`` keeps."""
    head = f.peek(tarformat.BLOCK)[:tarformat.BLOCK]  # type: ignore[attr-defined]
    # a plain tar starts with a header block (or is empty); anything else (gzip, xz,
    # lzma, ... or not a tar at all) goes through tarfile, which knows the rest
    plain = head.strip(b"\0") == b"" or (not head.startswith(_COMPRESSED)
                                         and tarformat.is_header(head))
    return tarformat.iter_members(f, want) if plain else _tarfile_members(f, want)

def _tarfile_members(f: Any, want: Any) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=f, mode="r|*") as tar:
        for member in tar:
            if member.isfile() and want(member.name, member.size):
                fobj = tar.extractfile(member)
                yield member.name, fobj.read() if fobj is not None else b""


def image_field(d: dict[str, Any]) -> str | None:
    """The field of a raw sample's image (the first of :data:`IMAGE_FIELDS`), or None."""
    return next((f for f in IMAGE_FIELDS if f in d), None)


def to_sample(d: dict[str, Any]) -> Sample:
    """A raw WebDataset sample dict as a :class:`Sample` (first image field wins).

    Its ``.json`` must be a JSON object and its label (``.cls``, else the json's ``label``)
    an int in ``0..MAX_CLASSES-1`` (-1: unlabelled, also when it has neither); anything else,
    and a sample without an image, is a :class:`ShardError` naming the shard and the key."""
    where = f"{d.get('__url__')}: sample {d.get('__key__')!r:.120}"
    ext = image_field(d)
    if ext is None:
        raise ShardError(f"{where} has no image member ({', '.join(IMAGE_FIELDS)})")
    meta = stored_meta(member_json(d["json"], where) if "json" in d else {}, d["__key__"])
    if "cls" in d:
        cls = parse_cls(d["cls"], where)
    else:
        cls = json_label(meta["label"], where) if "label" in meta else UNLABELLED
    return Sample(key=d["__key__"], image=d[ext], ext="jpg" if ext == "jpeg" else ext,
                  cls=cls, meta=meta)


def iter_webdataset(src: str | Path, split: str | None = None) -> Iterator[Sample]:
    for shard in list_tar_shards(src, split):
        for d in iter_tar(shard):
            yield to_sample(d)


def iter_samples(src: str | Path, split: str | None = None) -> Iterator[Sample]:
    """Samples of any sink (WebDataset or LMDB), as stored (lazy views not expanded).

    A folder may hold splits of both formats (``dataprep run`` with a format per split): the
    split's own files decide which reader to use.
    """
    s = str(src)
    lmdb_pattern = f"{split}.lmdb" if split else "*.lmdb"
    if is_lmdb(s) or (os.path.isdir(s) and glob.glob(os.path.join(s, lmdb_pattern))):
        return iter_lmdb(s, split)
    return iter_webdataset(s, split)
