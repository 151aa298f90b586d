"""Reading the samples of one part: a local tar, a remote tar through the shard cache, or a
range of an LMDB (dataprep's layout or Caffe's), optionally keeping every ``stride``-th sample.

Images are not decoded here: a :class:`~dataprep.records.Sample` carries the stored bytes, so
the loader decides how to decode them (:mod:`dataprep.train.jpeg` or Pillow), and the trainer
can measure a shard's class order (:func:`part_labels`) without decoding anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from dataprep.errors import ShardError
from dataprep.io.fields import IMAGE_FIELDS, stored_meta
from dataprep.io.lmdbread import caffe_range, lmdb_key, read_caffe_sidecar
from dataprep.io.readers import iter_tar, to_sample
from dataprep.records import Sample
from dataprep.train.cache import ShardCache, is_remote
from dataprep.train.sources import Part


def _iter_lmdb_range(part: Part) -> Iterator[Sample]:
    import lmdb

    env = lmdb.open(part.url, readonly=True, lock=False, readahead=False, subdir=True)
    try:
        with env.begin(buffers=False) as txn:
            if txn.get(b"__len__") is None:  # Caffe's layout (dataprep's always has __len__)
                stop = part.stop if part.stop is not None else part.start
                yield from caffe_range(  # type: ignore[misc]
                    txn, part.url, part.start, stop,
                    gaps=read_caffe_sidecar(part.url) is None)
                return
            for i in range(part.start, part.stop if part.stop is not None else part.start):
                image, cls, raw = (txn.get(lmdb_key(i, f)) for f in ("image", "cls", "json"))
                if image is None:
                    raise ShardError(f"{part.url}: sample {i} is missing (layout damaged)")
                meta = json.loads(raw) if raw else {}
                ext = str(meta.get("ext", "jpg"))
                if ext not in IMAGE_FIELDS:
                    raise ShardError(f"{part.url}: sample {i} has image format {ext!r}; "
                                     f"expected one of {IMAGE_FIELDS}")
                key = str(meta.get("key", f"{i:08d}"))
                label = meta.get("label")
                yield Sample(key, image, ext, int(cls) if cls is not None else
                             int(-1 if label is None else label), stored_meta(meta, key))
    finally:
        env.close()


def iter_part(part: Part, cache: ShardCache | None, stride: int = 1,
              offset: int = 0) -> Iterator[Sample]:
    """Samples of one part (remote tars through the cache), keeping ``i % stride == offset``."""
    if part.kind == "lmdb":
        samples: Iterable[Sample] = _iter_lmdb_range(part)
    elif is_remote(part.url):
        if cache is None:
            raise ShardError(f"{part.url} is remote but no shard cache is configured")
        samples = _iter_cached_tar(part.url, cache)
    else:
        samples = (_to_sample(d) for d in iter_tar(part.url))
    for i, sample in enumerate(samples):
        if i % stride == offset:
            yield sample


def _iter_cached_tar(url: str, cache: ShardCache) -> Iterator[Sample]:
    with cache.open(url) as path:
        for d in iter_tar(path):
            d["__url__"] = url
            yield _to_sample(d)


def _to_sample(d: dict) -> Sample:
    """:func:`to_sample`, with malformed ``cls`` / ``json`` fields reported as a bad shard."""
    try:
        return to_sample(d)
    except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise ShardError(f"{d.get('__url__')}: sample {d.get('__key__')!r} has a malformed "
                         f"cls or json field ({exc})") from exc


def peek(part: Part, cache: ShardCache | None, count: int = 64) -> list[Sample]:
    """The first ``count`` samples of ``part`` (are views lazy? are shards sorted by class?)."""
    out = []
    for sample in iter_part(part, cache):
        out.append(sample)
        if len(out) == count:
            break
    return out


def part_labels(part: Part, cache: ShardCache | None) -> list[int]:
    """The label of every sample of ``part``, in stored order (images read, not decoded):
    how the shard is ordered, measured over all of it."""
    return [sample.cls for sample in iter_part(part, cache)]
