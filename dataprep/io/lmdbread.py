"""Read LMDB environments back: dataprep's layout and Caffe's, listing and samples.

Each reader tells the two layouts apart by the ``__len__`` entry (dataprep's), else by the
Caffe sidecar (:data:`caffe.SIDECAR`) or the keys' shape; a damaged layout or entry is a
:class:`ShardError` naming the environment and the sample. ``lmdb`` is imported only inside
the functions that open an environment, so listing stays light.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep.errors import ShardError, SourceError
from dataprep.io import caffe
from dataprep.io.fields import IMAGE_FIELDS, member_json, parse_json, stored_meta
from dataprep.io.files import read_json_file
from dataprep.io.labels import (
    ASCII_COUNT,
    MAX_CLASSES,
    UNLABELLED,
    check_label,
    json_label,
    parse_cls,
)
from dataprep.records import Sample, make_key

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
    m = ASCII_COUNT.fullmatch(raw)
    if m is None:
        raise ShardError(f"{path}: __len__ {raw!r:.80} is not a sample count; the LMDB is "
                         "damaged or not dataprep's")
    return int(m.group(1))


def _lmdb_classes(raw: bytes | None, path: str | Path) -> list[str]:
    if raw is None:
        return []
    classes = parse_json(raw, f"{path}: __classes__")
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
        label = json_label(m["label"], where)
    elif labels_required:
        return Skip(key, f"{where} ({key!r:.120}) has no label (no {lmdb_key(i, 'cls').decode()} "
                         "entry and no 'label' in its json); it is left out")
    else:
        label = UNLABELLED
    return Sample(key=key, image=image, ext="jpg" if ext == "jpeg" else ext, cls=label,
                  meta=stored_meta(m, key))
