"""The file-system steps every output goes through: fsync, rename, unlink, remove a tree.

Each step is one function here, and the rest of dataprep calls them through this module
(``durable.replace(...)``), so the protocol of :mod:`dataprep.jobs.output` can be tested by
stopping a process at any one of them (``tests/faults``). Nothing here decides *what* to
delete or rename: that is the output folder's job.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from dataprep.errors import OutputError


def fsync(f: BinaryIO | int) -> None:
    """Flush a file's data to the disk (after flushing Python's buffer)."""
    if not isinstance(f, int):
        f.flush()
        f = f.fileno()
    os.fsync(f)


def sync_lmdb(env: Any) -> None:
    """Flush an LMDB environment's committed transactions to the disk."""
    env.sync(True)


def fsync_dir(path: str | Path) -> None:
    """Make the names created or removed in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(src: str | Path, dst: str | Path) -> None:
    """Rename ``src`` to ``dst`` atomically (``dst`` may exist: it is replaced)."""
    os.replace(src, dst)


def publish(src: str | Path, dst: str | Path) -> None:
    """Rename ``src`` to ``dst``, never replacing anything: a file or folder already at
    ``dst`` is an :class:`OutputError` (dataprep never overwrites what it did not write)."""
    dst = Path(dst)
    if dst.exists() or dst.is_symlink():
        raise OutputError(f"{dst} already exists and dataprep did not write it here; move it "
                          "away or choose another -o")
    dst.parent.mkdir(parents=True, exist_ok=True)
    replace(src, dst)


def unlink(path: str | Path) -> None:
    """Remove a file; a missing one is not an error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def rmtree(path: str | Path) -> None:
    """Remove a folder and everything in it; a missing one is not an error."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        unlink(path)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary name beside it, fsync, rename, fsync
    of the folder. A crash leaves the old file (or none) and at most ``.{name}.tmp``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    unlink(tmp)  # a leftover (or a planted link): never written through
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with open(fd, "wb") as f:
        f.write(data)
        fsync(f)
    replace(tmp, path)
    fsync_dir(path.parent)


def open_new(path: str | Path, append: bool = False) -> BinaryIO:
    """Open a file of dataprep's own for writing without following a link planted there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_APPEND if append else os.O_TRUNC
    return open(os.open(path, flags, 0o644), "ab" if append else "wb")
