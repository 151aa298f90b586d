"""A source: the class list and records one input (folder, list, manifest, shards) yields.

Image sources hold their records (listed eagerly, metadata only); shard sources stream them.
:func:`dedupe_keys` is the rule every image source applies to its keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from dataprep.errors import SourceError
from dataprep.records import Record, RecordList


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


def dedupe_keys(records: list[Record] | RecordList) -> list[Record] | RecordList:
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
