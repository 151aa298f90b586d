"""Read samples back from shards: WebDataset tars and LMDB environments; expand lazy views.

Security: only the fields in :data:`ALLOWED_FIELDS` are kept,
nothing is unpickled, tar member names are never used as filesystem paths, and members larger
than :data:`MAX_MEMBER_BYTES` are refused.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep.errors import ShardError, SourceError
from dataprep.io import caffe, tarformat
from dataprep.io.files import open_regular, read_json_file
from dataprep.io.scan import MAX_CLASSES, check_label
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
# Caffe's layout (``--lmdb-layout caffe``, :mod:`dataprep.io.caffe`) is read too: each reader
# tells the two apart by the ``__len__`` entry (dataprep's), else the sidecar or the keys' shape.
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
    pending: list[tuple[str, str]] = []  # (key, name) of the dotted members passed over

    def want(name: str, size: int) -> bool:
        parts = _split_name(name)
        if parts is None:
            return False
        if parts[1] not in ALLOWED_FIELDS:
            if note_ignored and parts[1].rsplit(".", 1)[-1] in ALLOWED_FIELDS:
                pending.append((parts[0], name))
            return False
        if size > MAX_MEMBER_BYTES:
            raise ShardError(
                f"{path}: member {name!r} is {size:,} bytes, over the "
                f"{MAX_MEMBER_BYTES:,}-byte limit; the shard is corrupt or hostile"
            )
        return True

    current: dict[str, Any] | None = None

    def place(key: str) -> dict[str, Any] | None:
        """Make ``current`` the sample of ``key``; returns the sample it ends, if any."""
        nonlocal current
        done = None
        if current is not None and current["__key__"] != key:
            done, current = current, None
        if current is None:
            current = {"__key__": key, "__url__": str(path)}
        return done

    def drain() -> Iterator[dict[str, Any]]:
        for key, name in pending:
            if (done := place(key)) is not None:
                yield done
            current.setdefault(IGNORED, []).append(name)  # type: ignore[union-attr]
        pending.clear()

    try:
        with open_regular(path, error=ShardError, buffering=1 << 20) as f:
            head = f.peek(tarformat.BLOCK)[:tarformat.BLOCK]
            # a plain tar starts with a header block (or is empty); anything else (gzip, xz,
            # lzma, ... or not a tar at all) goes through tarfile, which knows the rest
            plain = head.strip(b"\0") == b"" or (not head.startswith(_COMPRESSED)
                                                 and tarformat.is_header(head))
            members = tarformat.iter_members(f, want) if plain else _tarfile_members(f, want)
            for name, data in members:
                yield from drain()
                key, field = _split_name(name)  # type: ignore[misc]  (want() kept it)
                if (done := place(key)) is not None:
                    yield done
                assert current is not None
                if field in current:
                    raise ShardError(
                        f"{path}: sample {key!r:.120} has field {field!r} twice (member "
                        f"{name!r:.120} repeats it); the shard is damaged or not made for "
                        "webdataset: each sample holds one member per field")
                current[field] = data
            yield from drain()
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


def image_field(d: dict[str, Any]) -> str | None:
    """The field of a raw sample's image (the first of :data:`IMAGE_FIELDS`), or None."""
    return next((f for f in IMAGE_FIELDS if f in d), None)


def stored_meta(meta: dict[str, Any], key: str) -> dict[str, Any]:
    """A stored json member as sample metadata: the schema's nulls mean "does not apply", so
    they are dropped (metadata reads as older files do), and ``key_full`` is kept only for a
    key that was shortened."""
    meta = {k: v for k, v in meta.items() if v is not None}
    if meta.get("key_full") == key:
        del meta["key_full"]
    return meta


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
        cls = _json_label(meta["label"], where) if "label" in meta else UNLABELLED
    return Sample(key=d["__key__"], image=d[ext], ext="jpg" if ext == "jpeg" else ext,
                  cls=cls, meta=meta)


_CLS = re.compile(rb"\s*([0-9]{1,18})\s*")
UNLABELLED = -1  # the label of a sample that has none (dataprep writes it as "-1")


def parse_cls(raw: bytes | None, where: str) -> int:
    """A ``.cls`` member or LMDB entry (ASCII digits) as a label in ``0..MAX_CLASSES-1``, or
    ``-1``, the mark of an unlabelled sample."""
    if raw is not None and raw.strip() == b"-1":
        return UNLABELLED
    m = _CLS.fullmatch(raw or b"")
    if m is None:
        raise ShardError(f"{where}: label {raw!r:.80} is not a class index; expected ASCII "
                         f"digits of an integer from 0 to {MAX_CLASSES - 1:,} (or -1: none)")
    return check_label(int(m.group(1)), where, ShardError)


def _json_label(value: Any, where: str) -> int:
    return UNLABELLED if value == UNLABELLED and type(value) is int else check_label(
        value, where, ShardError)


def _json(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise ShardError(f"{where} is not JSON ({type(exc).__name__}); the shard is damaged "
                         "or not dataprep's") from None


def member_json(raw: bytes, where: str) -> dict[str, Any]:
    """A ``.json`` member or LMDB entry: a JSON object, else a :class:`ShardError`."""
    meta = _json(raw, f"{where}: metadata")
    if not isinstance(meta, dict):
        raise ShardError(f"{where}: metadata is a JSON {type(meta).__name__}, not an object; "
                         "the shard is damaged or not dataprep's")
    return meta


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


def open_lmdb(path: str | Path) -> Any:
    """A read-only LMDB environment; a file that is not one is a :class:`ShardError`."""
    import lmdb

    try:
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as exc:
        raise ShardError(f"{path}: not a readable LMDB environment ({exc}); the data.mdb is "
                         "damaged or not an LMDB") from None


def lmdb_header(path: str | Path) -> tuple[int, list[str]]:
    """(number of samples, class names) of a dataprep or Caffe-layout LMDB; damage is a
    :class:`ShardError`."""
    import lmdb

    env = open_lmdb(path)
    try:
        with env.begin() as txn:
            raw_len, raw_classes = txn.get(b"__len__"), txn.get(b"__classes__")
            if raw_len is None:
                if (layout := caffe_layout(txn, path)) is not None:
                    return layout
                raise ShardError(f"{path}: not a dataprep LMDB (no __len__ entry) nor one in "
                                 "Caffe's layout (keys %08d_<name>)")
            n = _lmdb_len(raw_len, path)
            _check_nothing_beyond(txn, n, path)
    except lmdb.Error as exc:
        raise ShardError(f"{path}: cannot read the LMDB ({exc}); it is damaged") from None
    finally:
        env.close()
    return n, _lmdb_classes(raw_classes, path)


def caffe_layout(txn: Any, path: str | Path) -> tuple[int, list[str]] | None:
    """(number of samples, class names) of an environment in Caffe's layout, None when it
    is not one (it has ``__len__``, or no sidecar and a first key of another shape). Its
    sidecar (:data:`caffe.SIDECAR`), when there, must count the entries the environment
    holds; without one (an LMDB Caffe wrote) the class names are unknown (``[]``)."""
    side = read_caffe_sidecar(path)
    entries = caffe_entries(txn, side is not None)
    if entries is None:
        return None
    if side is None:
        return entries, []
    n = side["num_samples"]
    if n != entries:
        raise ShardError(f"{path}: {caffe.SIDECAR} says {n:,} samples but the LMDB holds "
                         f"{entries:,} entries; the environment is damaged or unfinished")
    return n, side["classes"]


def caffe_entries(txn: Any, has_sidecar: bool) -> int | None:
    """The entry count of an environment in Caffe's layout (it has a sidecar, or its first key
    is ``%08d_<name>``), None for any other (one with ``__len__``, or empty without a sidecar)."""
    if txn.get(b"__len__") is not None:
        return None
    if not has_sidecar:
        with txn.cursor() as cur:
            first = cur.key() if cur.first() else None
        if first is None or caffe.split_key(bytes(first)) is None:
            return None
    return int(txn.stat()["entries"])


def read_caffe_sidecar(path: str | Path) -> dict[str, Any] | None:
    """The checked sidecar of a Caffe-layout environment, None when there is none."""
    from dataprep.io.files import read_json_file

    side_path = Path(path) / caffe.SIDECAR
    if not os.path.lexists(side_path):
        return None
    side = read_json_file(side_path, ShardError)
    n = side.get("num_samples") if isinstance(side, dict) else None
    if not isinstance(side, dict) or side.get("layout") != caffe.LAYOUT or type(n) is not int \
            or n < 0:
        raise ShardError(f"{side_path}: not a Caffe-layout sidecar (expected layout 'caffe' "
                         "and a num_samples count); it is damaged, or remove it")
    side["classes"] = _lmdb_classes(json.dumps(side.get("classes", [])).encode(), side_path)
    return side


def _check_nothing_beyond(txn: Any, n: int, path: str | Path) -> None:
    """An LMDB holding a sample past its ``__len__`` is a :class:`ShardError` (reading
    ``__len__`` samples would leave the rest out unseen)."""
    if txn.get(lmdb_key(n, "image")) is not None:
        raise ShardError(f"{path}: __len__ says {n:,} samples but sample {n} "
                         f"({lmdb_key(n, 'image').decode()}) exists too; the LMDB is damaged "
                         "or its __len__ is wrong: fix __len__ to the number of samples")


def _lmdb_len(raw: bytes, path: str | Path) -> int:
    m = _CLS.fullmatch(raw)
    if m is None:
        raise ShardError(f"{path}: __len__ {raw!r:.80} is not a sample count; the LMDB is "
                         "damaged or not dataprep's")
    return int(m.group(1))


def _lmdb_classes(raw: bytes | None, path: str | Path) -> list[str]:
    if raw is None:
        return []
    classes = _json(raw, f"{path}: __classes__")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) \
            or len(classes) > MAX_CLASSES:
        raise ShardError(f"{path}: __classes__ is not a list of class names; the LMDB is "
                         "damaged or not dataprep's")
    return classes


@dataclass(frozen=True, slots=True)
class Skip:
    """A shard sample that cannot be used (no label): its key and the reason, for the
    source to list as a counted skip."""

    key: str
    reason: str


def iter_lmdb(src: str | Path, split: str | None = None) -> Iterator[Sample]:
    """Samples of an LMDB (or of each ``{split}.lmdb`` below ``src``); a damaged layout or
    entry is a :class:`ShardError` naming the environment and the sample. A sample with
    neither a ``.cls`` entry nor a ``label`` in its json is unlabelled (-1)."""
    for path in list_lmdbs(src, split):
        yield from _iter_env(path, False)  # type: ignore[misc]  (no Skip without labels)


def iter_lmdb_source(path: str | Path) -> Iterator[Sample | Skip]:
    """The samples of one LMDB environment read as a source: as :func:`iter_lmdb`, but a
    sample with no label at all (no ``.cls`` entry, no json ``label``) comes as a
    :class:`Skip`, and a sample past ``__len__`` is a :class:`ShardError`."""
    return _iter_env(path, True)


def _iter_env(path: str | Path, labels_required: bool) -> Iterator[Sample | Skip]:
    import lmdb

    env = open_lmdb(path)
    try:
        with env.begin(buffers=False) as txn:
            if (layout := caffe_layout(txn, path)) is not None:
                yield from caffe_range(txn, str(path), 0, layout[0], labels_required,
                                       gaps=read_caffe_sidecar(path) is None)
                return
            n = _lmdb_len(txn.get(b"__len__") or b"0", path)
            if labels_required:
                _check_nothing_beyond(txn, n, path)
            for i in range(n):
                yield _lmdb_sample(txn, i, str(path), labels_required)
    except lmdb.Error as exc:
        raise ShardError(f"{path}: cannot read the LMDB ({exc}); it is damaged") from None
    finally:
        env.close()


def caffe_range(txn: Any, path: str, start: int, stop: int,
                labels_required: bool = False, gaps: bool = False) -> Iterator[Sample | Skip]:
    """Samples ``start..stop-1`` (their places in key order) of a Caffe-layout environment,
    by cursor (the trainer reads its LMDB parts so); each value must be a Datum. dataprep
    writes contiguous line ids, so there place ``i`` holds key ``%08d_`` of ``i``; ``gaps``
    (an LMDB Caffe wrote: ``convert_imageset`` skips an unreadable image but not its line id)
    asks only that the ids increase."""
    if start >= stop:
        return
    with txn.cursor() as cur:
        if gaps:
            found, last = cur.first(), -1
            for _ in range(start):
                if not found:
                    break
                last = _caffe_id(cur.key(), path, last, None)
                found = cur.next()
        else:
            found, last = cur.set_range(f"{start:08d}_".encode()), start - 1
        for i in range(start, stop):
            if not found:
                raise ShardError(f"{path}: sample {i} is missing (the LMDB ends early)")
            raw_key, value = bytes(cur.key()), bytes(cur.value())
            last = _caffe_id(raw_key, path, last, None if gaps else i)
            yield caffe_sample(caffe.split_key(raw_key)[1], value,  # type: ignore[index]
                               f"{path}: sample {i} ({raw_key!r:.100})", i, labels_required)
            found = cur.next()


def _caffe_id(raw_key: bytes, path: str, last: int, want: int | None) -> int:
    """The line id of a Caffe-layout key: ``want`` when given, else above ``last``."""
    parts = caffe.split_key(bytes(raw_key))
    if parts is None or (parts[0] != want if want is not None else parts[0] <= last):
        where = f"sample {want} ({want:08d}_<name>) belongs" if want is not None else \
            f"a line id above {last} belongs"
        raise ShardError(f"{path}: entry {bytes(raw_key)!r:.80} where {where}; the keys are "
                         "not Caffe's line ids in order")
    return parts[0]


def caffe_sample(name: bytes, value: bytes, where: str, index: int,
                 labels_required: bool = False) -> Sample | Skip:
    """One Caffe-layout entry as a :class:`Sample`: the Datum's image and label, dataprep's
    json from the Datum's meta field (an LMDB Caffe wrote has none: the key's name becomes
    the sample key, the image bytes tell the format, raw pixels become a PNG)."""
    try:
        d = caffe.decode_datum(value)
        image = d.data if d.encoded else caffe.raw_to_png(d)
    except caffe.DatumError as exc:
        raise ShardError(f"{where}: not a Caffe Datum ({exc}); the LMDB is damaged or not in "
                         "Caffe's layout") from None
    meta = member_json(d.meta, where) if d.meta is not None else {}
    key = meta["key"] if isinstance(meta.get("key"), str) else _caffe_name_key(name, index)
    meta = stored_meta(meta, key)
    ext = meta.get("ext") if "ext" in meta else caffe.sniff_ext(image)
    if not isinstance(key, str) or ext not in IMAGE_FIELDS:
        raise ShardError(f"{where}: key {key!r:.80} / image format {ext!r:.20} is not a key "
                         f"and one of {', '.join(IMAGE_FIELDS)}; the LMDB is damaged")
    if d.label == UNLABELLED and labels_required:
        return Skip(key, f"{where} ({key!r:.120}) has label -1 (none); it is left out")
    label = d.label if d.label == UNLABELLED else check_label(d.label, where, ShardError)
    return Sample(key=key, image=image, ext="jpg" if ext == "jpeg" else ext, cls=label,
                  meta=meta)


def _caffe_name_key(name: bytes, index: int) -> str:
    """A dataprep key for the name of a key Caffe wrote (``cat/img1.jpg`` -> ``cat__img1``)."""
    from dataprep.records import make_key

    try:
        return make_key(name.decode("utf-8", "surrogateescape"))
    except ValueError:
        return f"{index:08d}"


def _lmdb_sample(txn: Any, i: int, path: str, labels_required: bool = False) -> Sample | Skip:
    image, cls, meta = (txn.get(lmdb_key(i, f)) for f in ("image", "cls", "json"))
    where = f"{path}: sample {i}"
    if image is None:
        raise ShardError(f"{where} is missing (layout damaged)")
    m = member_json(meta, where) if meta else {}
    key, ext = m.get("key", f"{i:08d}"), m.get("ext", "jpg")
    if not isinstance(key, str) or ext not in IMAGE_FIELDS:
        raise ShardError(f"{where}: metadata key {key!r:.80} / ext {ext!r:.20} is not a key "
                         f"and one of {', '.join(IMAGE_FIELDS)}; the LMDB is damaged")
    if cls is not None:
        label = parse_cls(cls, where)
    elif "label" in m:
        label = _json_label(m["label"], where)
    elif labels_required:
        return Skip(key, f"{where} ({key!r:.120}) has no label (no {lmdb_key(i, 'cls').decode()} "
                         "entry and no 'label' in its json); it is left out")
    else:
        label = UNLABELLED
    return Sample(key=key, image=image, ext="jpg" if ext == "jpeg" else ext, cls=label,
                  meta=stored_meta(m, key))


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
