"""Sizes in flags and recipes: ``1GB``, ``500MB``, ``2GiB``, ``1.5G``, ``2e9`` or plain bytes."""

from __future__ import annotations

import re

from dataprep.errors import UsageError

_SIZE = re.compile(r"^\s*((?:\d+\.?\d*|\.\d+)(?:e\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_size(text: str | int) -> int:
    """Bytes: decimal units (``1GB`` = 10**9), binary with ``i`` (``512MiB`` = 512 * 2**20).

    Raises :class:`UsageError` naming the accepted forms.
    """
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m or (m.group(2) or "").lower() not in _UNITS:
        raise UsageError(f"{text!r} is not a size; write e.g. 1GB, 500MB or 2GiB")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
