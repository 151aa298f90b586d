"""Read samples back from shards: WebDataset tars and LMDB environments; expand lazy views.

Security: only the fields in :data:`ALLOWED_FIELDS` are kept,
nothing is unpickled, tar member names are never used as filesystem paths, and members larger
than :data:`MAX_MEMBER_BYTES` are refused.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dataprep.errors import ShardError, SourceError
from dataprep.io import tarformat
from dataprep.records import Sample

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp")
ALLOWED_FIELDS = frozenset(IMAGE_FIELDS + ("cls", "json", "txt"))
MAX_MEMBER_BYTES = 256 * 1024 * 1024

# LMDB layout (one environment per split, ``DST/{split}.lmdb``):
#   b"__len__"      -> ASCII int, number of samples
#   b"__classes__"  -> JSON list of class names (index = label)
#   b"__format__"   -> JSON {"layout": "dataprep-lmdb", "version": 1}
#   b"%08d.image"   -> encoded image bytes (format in the json's "ext")
#   b"%08d.cls"     -> ASCII int label
#   b"%08d.json"    -> JSON metadata, with at least "key" and "ext"
LMDB_FORMAT = {"layout": "dataprep-lmdb", "version": 1}


def lmdb_key(index: int, field: str) -> bytes:
    return f"{index:08d}.{field}".encode()


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


def list_tar_shards(src: str | Path, split: str | None = None) -> list[str]:
    """Tar shard paths of a WebDataset directory (sorted; one split if given) or brace pattern."""
    s = str(src)
    if "{" in s:
        return expand_braces(s)
    if os.path.isdir(s):
        info = Path(s) / "_info.json"
        if info.exists():
            splits = json.loads(info.read_text())["splits"]
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
            raise SourceError(f"no .tar shards in {s}")
        return files
    if s.endswith(".tar"):
        return [s]
    raise SourceError(f"{s} is not a WebDataset directory, .tar file or brace pattern")


_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")  # gz bz2 xz zstd


def _split_name(name: str) -> tuple[str, str] | None:
    """(key, lower-case field) of a member name, as webdataset groups them; None to skip."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        return None
    prefix, field = base.split(".", 1)
    return (name[: len(name) - len(base)] + prefix).lstrip("./"), field.lower()


def iter_tar(path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream one tar: yields ``{"__key__": key, field: bytes, ...}`` per sample, in order.

    Members are grouped by key (the member name up to the first dot of its basename), as
    webdataset does; only regular files with allowed fields are read (the others are skipped
    without reading their data). Uncompressed tars are parsed by :mod:`dataprep.io.tarformat`;
    compressed ones go through ``tarfile``.
    """

    def want(name: str, size: int) -> bool:
        parts = _split_name(name)
        if parts is None or parts[1] not in ALLOWED_FIELDS:
            return False
        if size > MAX_MEMBER_BYTES:
            raise ShardError(
                f"{path}: member {name!r} is {size:,} bytes, over the "
                f"{MAX_MEMBER_BYTES:,}-byte limit; the shard is corrupt or hostile"
            )
        return True

    current: dict[str, Any] | None = None
    try:
        with open(path, "rb", buffering=1 << 20) as f:
            head = f.peek(tarformat.BLOCK)[:tarformat.BLOCK]
            # a plain tar starts with a header block (or is empty); anything else (gzip, xz,
            # lzma, ... or not a tar at all) goes through tarfile, which knows the rest
            plain = head.strip(b"\0") == b"" or (not head.startswith(_COMPRESSED)
                                                 and tarformat.is_header(head))
            members = tarformat.iter_members(f, want) if plain else _tarfile_members(f, want)
            for name, data in members:
                key, field = _split_name(name)  # type: ignore[misc]  (want() kept it)
                if current is not None and current["__key__"] != key:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key, "__url__": str(path)}
                current[field] = data
    except (tarformat.TarFormatError, tarfile.TarError, EOFError, ValueError,
            OverflowError) as exc:
        raise ShardError(f"{path}: not a readable tar shard ({exc})") from exc
    except OSError as exc:
        raise ShardError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if current is not None:
        yield current


def _tarfile_members(f: Any, want: Any) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=f, mode="r|*") as tar:
        for member in tar:
            if member.isfile() and want(member.name, member.size):
                fobj = tar.extractfile(member)
                yield member.name, fobj.read() if fobj is not None else b""


def to_sample(d: dict[str, Any]) -> Sample:
    """A raw WebDataset sample dict as a :class:`Sample` (first image field wins)."""
    ext = next((f for f in IMAGE_FIELDS if f in d), None)
    if ext is None:
        raise ShardError(f"sample {d.get('__key__')!r} in {d.get('__url__')} has no image field")
    meta = json.loads(d["json"]) if "json" in d else {}
    cls = int(d["cls"]) if "cls" in d else int(meta.get("label", -1))
    return Sample(key=d["__key__"], image=d[ext], ext="jpg" if ext == "jpeg" else ext,
                  cls=cls, meta=meta)


def iter_webdataset(src: str | Path, split: str | None = None) -> Iterator[Sample]:
    for shard in list_tar_shards(src, split):
        for d in iter_tar(shard):
            yield to_sample(d)


def is_lmdb(path: str | Path) -> bool:
    return os.path.isfile(os.path.join(path, "data.mdb"))


def list_lmdbs(src: str | Path, split: str | None = None) -> list[str]:
    """LMDB environments of ``src``: itself, or its ``{split}.lmdb`` children."""
    s = str(src)
    if is_lmdb(s):
        return [s]
    pat = f"{split}.lmdb" if split else "*.lmdb"
    found = sorted(p for p in glob.glob(os.path.join(s, pat)) if is_lmdb(p))
    if not found:
        raise SourceError(f"no LMDB environment (data.mdb) in {s}")
    return found


def lmdb_header(path: str | Path) -> tuple[int, list[str]]:
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
    try:
        with env.begin() as txn:
            raw_len, raw_classes = txn.get(b"__len__"), txn.get(b"__classes__")
    finally:
        env.close()
    if raw_len is None:
        raise ShardError(f"{path}: not a dataprep LMDB (no __len__ entry)")
    return int(raw_len), json.loads(raw_classes or b"[]")


def iter_lmdb(src: str | Path, split: str | None = None) -> Iterator[Sample]:
    import lmdb

    for path in list_lmdbs(src, split):
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True)
        try:
            with env.begin(buffers=False) as txn:
                n = int(txn.get(b"__len__") or b"0")
                for i in range(n):
                    image, cls, meta = (txn.get(lmdb_key(i, f)) for f in ("image", "cls", "json"))
                    if image is None:
                        raise ShardError(f"{path}: sample {i} is missing (layout damaged)")
                    m = json.loads(meta) if meta else {}
                    yield Sample(key=m.get("key", f"{i:08d}"), image=image,
                                 ext=m.get("ext", "jpg"), cls=int(cls or -1), meta=m)
        finally:
            env.close()


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
