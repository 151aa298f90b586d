"""Labels: the class index every source and shard gives a sample, and how each spells one.

A label is an int in ``0..MAX_CLASSES-1``; a shard may also hold :data:`UNLABELLED` (-1) for a
sample without one. Sources report a bad label as a :class:`SourceError`, shard readers as a
:class:`ShardError`, each naming where it was read; the bounds are the same for both.
"""

from __future__ import annotations

import re
from typing import Any

from dataprep.errors import DataprepError, ShardError, SourceError

MAX_CLASSES = 1_000_000  # labels of every source are ints in 0..MAX_CLASSES-1
UNLABELLED = -1  # the label of a sample that has none (dataprep writes it as "-1")
ASCII_COUNT = re.compile(rb"\s*([0-9]{1,18})\s*")  # a .cls member, an LMDB's __len__


def check_label(value: object, where: str, error: type[DataprepError] = SourceError) -> int:
    """``value`` as a label: an int (not a bool) in ``0..MAX_CLASSES-1``; else ``error``
    naming ``where``."""
    if type(value) is not int or not 0 <= value < MAX_CLASSES:
        raise error(f"{where}: label {value!r:.80} is not a class index; expected an integer "
                    f"from 0 to {MAX_CLASSES - 1:,}")
    return value


def parse_cls(raw: bytes | None, where: str) -> int:
    """A ``.cls`` member or LMDB entry (ASCII digits) as a label in ``0..MAX_CLASSES-1``, or
    ``-1``, the mark of an unlabelled sample."""
    if raw is not None and raw.strip() == b"-1":
        return UNLABELLED
    m = ASCII_COUNT.fullmatch(raw or b"")
    if m is None:
        raise ShardError(f"{where}: label {raw!r:.80} is not a class index; expected ASCII "
                         f"digits of an integer from 0 to {MAX_CLASSES - 1:,} (or -1: none)")
    return check_label(int(m.group(1)), where, ShardError)


def json_label(value: Any, where: str) -> int:
    """The ``label`` of a stored json: a class index, or -1 (unlabelled)."""
    return UNLABELLED if value == UNLABELLED and type(value) is int else check_label(
        value, where, ShardError)
