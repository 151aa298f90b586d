"""Open input files safely: regular files only, non-blocking, size-capped.

Every file dataprep reads as input (images, list files, manifests, recipes, JSON side files,
tar shards) is opened here. A FIFO, device, socket or folder given where a file is expected is
refused before it is opened (a FIFO would block, ``/dev/zero`` never ends), and checked again
from the open descriptor. Stdlib only, so light modules can use it.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from dataprep.errors import DataprepError, SourceError

MAX_TEXT_BYTES = 64 << 20  # JSON / TOML side files (classes.json, recipes, stats.json, ...)
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


def file_kind(mode: int) -> str:
    """``regular file``, ``folder``, ``fifo``, ``character device``, ... of a ``st_mode``."""
    if stat.S_ISREG(mode):
        return "regular file"
    return next((name for test, name in _KINDS if test(mode)), "special file")


def not_regular_reason(name: str, mode: int) -> str:
    """Why a file of ``st_mode`` ``mode`` is not read (the same words everywhere)."""
    return (f"{name}: not a regular file ({file_kind(mode)}); only regular files are read: "
            "replace it with the file itself or remove it")


def _refuse_special(name: str, mode: int, error: type[DataprepError]) -> None:
    if not stat.S_ISREG(mode):
        raise error(not_regular_reason(name, mode))


def open_regular(path: str | Path, *, error: type[DataprepError], name: str | None = None,
                 buffering: int = -1) -> BinaryIO:
    """Open ``path`` for binary reading only if it is a regular file (after symlinks).

    FIFOs, devices, sockets and folders are refused with ``error`` naming ``name`` (default:
    the path) before they are opened, and again from the open descriptor (so a file swapped
    meanwhile is caught); opening is non-blocking, so even a FIFO never waits for a writer.
    """
    name = name or str(path)
    try:
        _refuse_special(name, os.stat(path).st_mode, error)
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise error(f"cannot open {name}: {reason}") from exc
    try:
        _refuse_special(name, os.fstat(fd).st_mode, error)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, *, limit: int, error: type[DataprepError],
                 name: str | None = None) -> bytes:
    """The bytes of a regular file (see :func:`open_regular`) of at most ``limit`` bytes;
    a larger file is refused from its size, unread (and a file that grows while read, at the
    limit)."""
    name = name or str(path)
    with open_regular(path, error=error, name=name) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise error(f"{name}: {size:,} bytes, over the {limit:,}-byte limit for this input; "
                        "it is not a file dataprep reads (check the path)")
        try:
            data = _read_upto(f, size, limit)
        except OSError as exc:
            raise error(f"cannot read {name}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise error(f"{name}: grew past the {limit:,}-byte limit while being read")
    return data


def _read_upto(f: BinaryIO, size: int, limit: int) -> bytes:
    """The file's bytes, or more than ``limit`` of them when it holds more; ``size`` (its size
    from ``fstat``) sizes the one read a file that does not grow needs."""
    data = f.read(size + 1)
    if len(data) <= size:
        return data
    parts, total = [data], len(data)
    while total <= limit and (chunk := f.read(1 << 20)):
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


def read_json_file(path: str | Path, error: type[DataprepError], limit: int = MAX_TEXT_BYTES,
                   name: str | None = None) -> object:
    """A small JSON side file (regular, at most ``limit`` bytes, UTF-8 JSON); ``error`` names
    it (``name``, default the path) when it is anything else."""
    name = name or str(path)
    data = read_regular(path, limit=limit, error=error, name=name)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        detail = f"{type(exc).__name__}: {exc}"[:200]
        raise error(f"{name}: damaged, not JSON ({detail}); rewrite it, or remove it and "
                    "rerun the command that wrote it") from None


def open_text(path: Path) -> io.TextIOWrapper:
    """A source's text file (list file, manifest), opened as UTF-8 only if it is a regular
    file."""
    return io.TextIOWrapper(open_regular(path, error=SourceError), encoding="utf-8")


def numbered_lines(lines: Iterable[str], path: Path) -> Iterator[tuple[int, str]]:
    """``enumerate(lines, 1)``, with text that is not UTF-8 a :class:`SourceError` naming the
    line where it starts (about: the text is decoded in blocks)."""
    lineno = 0
    try:
        for lineno, line in enumerate(lines, 1):  # noqa: B007  (read in the handler)
            yield lineno, line
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text, after line {lineno} ({exc.reason}); "
                          "expected a text file (is it an image or an archive?)") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
