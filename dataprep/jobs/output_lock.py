"""The lock of an output folder: ``flock`` on ``.dataprep.lock``, exclusive for a run (which
writes its process id into the file, so another run can name it), shared for verify."""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataprep.errors import OutputError
from dataprep.jobs.output_names import LOCK_NAME


@contextmanager
def hold_lock(folder: Path, create: bool = True, shared: bool = False) -> Iterator[bool]:
    """Hold ``folder``'s lock for the block; yields whether a lock is held. Another holder is
    an :class:`OutputError` naming its process id. Without ``create``, a folder or lock file
    that is not there is not created (nothing to protect: yields False)."""
    lock = folder / LOCK_NAME
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    elif not lock.exists():
        yield False
        return
    fd = _open_lock(lock, create)
    held = False
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("ascii", "replace").split()
            pid = holder[0] if holder else "unknown"
            raise OutputError(
                f"another dataprep run (pid {pid}) is writing to {folder}; wait for it "
                "to finish, or choose another -o") from None
        if not shared and create:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        held = True
        yield True
    finally:
        if held and not shared and create:
            os.ftruncate(fd, 0)  # no holder now
        os.close(fd)  # releases the lock


def _open_lock(lock: Path, create: bool) -> int:
    """The lock file's descriptor: a plain file, never followed through a link."""
    flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    try:
        fd = os.open(lock, flags | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        raise OutputError(f"{lock}: cannot open the folder's lock file ({exc.strerror}); "
                          "it must be a plain file dataprep can write") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputError(f"{lock}: the folder's lock file is not a plain file; remove it")
    return fd
