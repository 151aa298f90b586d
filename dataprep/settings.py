"""Run-wide settings a CLI flag sets for the jobs run inside it (``--fingerprint``,
``--lmdb-layout``), without threading them through every verb's signature."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dataprep.errors import UsageError


class RunSetting:
    """One named setting with a fixed set of choices: :meth:`use` sets it for a ``with``
    block (restored after, also on error), :meth:`current` reads it."""

    def __init__(self, flag: str, choices: tuple[str, ...], default: str) -> None:
        self.flag, self.choices, self._value = flag, choices, default

    def check(self, value: str) -> str:
        if value not in self.choices:
            raise UsageError(f"{self.flag} {value!r}: expected one of {', '.join(self.choices)}")
        return value

    @contextmanager
    def use(self, value: str) -> Iterator[None]:
        before, self._value = self._value, self.check(value)
        try:
            yield
        finally:
            self._value = before

    def current(self) -> str:
        return self._value
