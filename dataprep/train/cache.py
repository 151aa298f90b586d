"""A bounded on-disk cache of remote shards, shared by every worker and rank of a machine.

Remote shards (``http://``, ``https://``, ``pipe:``) are fetched whole into ``cache_dir`` and read
from there. The bound ``max_bytes`` is global and hard: the size of every file in the directory,
finished shards and downloads in flight, never exceeds it. It is enforced *before* each download,
under an exclusive ``flock`` on ``cache_dir/.lock`` that all processes share:

1. a download first reserves its size (``Content-Length``, or an estimate that grows in steps,
   each step reserved under the lock) by creating ``NAME.PID.part`` with that apparent size;
2. to make room, whole finished shards are evicted, least recently used first;
3. a shard being read holds a shared ``flock`` on its file and is never evicted; when nothing can
   be evicted the download waits for readers to finish, and fails after ``wait_s`` seconds.

A shard another process is already downloading is waited for, not fetched twice. Files left by a
dead process (``*.part`` whose PID is gone) are removed. Only stdlib: importable without torch.
Keep the directory on a local disk: ``flock`` across NFS clients is not reliable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dataprep.errors import ShardError, UsageError

LOCK_NAME = ".lock"
CHUNK = 1 << 20
_PART = re.compile(r"^(?P<name>.+)\.(?P<pid>\d+)\.part$")


def is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://", "pipe:"))


def cache_name(url: str) -> str:
    """File name of ``url`` in the cache: a digest of the whole URL, then its readable tail."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    tail = re.sub(r"[^A-Za-z0-9_.\-]+", "_", url.rstrip("/").rsplit("/", 1)[-1])[-80:]
    return f"{digest}-{tail}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _open_stream(url: str, timeout_s: float) -> Iterator[tuple[BinaryIO, int | None]]:
    """Yield (byte stream, expected length or None) for an http(s) or ``pipe:`` URL."""
    if url.startswith("pipe:"):
        proc = subprocess.Popen(url[5:], shell=True, stdout=subprocess.PIPE)  # noqa: S602
        assert proc.stdout is not None
        try:
            yield proc.stdout, None
        finally:
            proc.stdout.close()
            rc = proc.wait()
        if rc != 0:
            raise ShardError(f"{url}: command exited with status {rc}")
        return
    try:
        resp = urllib.request.urlopen(url, timeout=timeout_s)  # noqa: S310
    except OSError as exc:
        raise ShardError(f"cannot download {url}: {exc}") from exc
    with resp:
        length = resp.headers.get("Content-Length")
        yield resp, int(length) if length and length.isdigit() else None


@dataclass
class ShardCache:
    """Fetch remote shards into ``cache_dir`` without ever holding more than ``max_bytes``.

    Pickle-safe (plain fields only): each DataLoader worker carries its own copy.
    """

    cache_dir: str
    max_bytes: int
    wait_s: float = 600.0
    timeout_s: float = 60.0
    retries: int = 3

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise UsageError(f"--cache-size must be positive, got {self.max_bytes} bytes")
        Path(self.cache_dir).mkdir(parents=True, exist_ok=True)

    # -- bookkeeping (callers hold the lock) ---------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(os.path.join(self.cache_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _entries(self) -> list[os.DirEntry]:
        return [e for e in os.scandir(self.cache_dir) if e.is_file() and e.name != LOCK_NAME]

    def usage(self) -> int:
        """Bytes the directory holds now: finished shards plus reserved downloads."""
        return sum(e.stat().st_size for e in self._entries())

    def _clean_dead_parts(self) -> None:
        for e in self._entries():
            m = _PART.match(e.name)
            if m and not _pid_alive(int(m.group("pid"))):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(e.path)

    def _downloading(self, name: str) -> bool:
        for e in self._entries():
            m = _PART.match(e.name)
            if m and m.group("name") == name and int(m.group("pid")) != os.getpid():
                return True
        return False

    def _evict_until(self, needed: int) -> bool:
        """Evict unpinned finished shards, least recently used first, until ``needed`` fits."""
        used = self.usage()
        if used + needed <= self.max_bytes:
            return True
        finished = [e for e in self._entries() if not _PART.match(e.name)]
        finished.sort(key=lambda e: e.stat().st_mtime)
        for e in finished:
            try:
                fd = os.open(e.path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # pinned by a reader
            size = os.fstat(fd).st_size
            os.unlink(e.path)
            os.close(fd)
            used -= size
            if used + needed <= self.max_bytes:
                return True
        return False

    def _reserve(self, part: str, size: int) -> None:
        """Grow ``part`` to ``size`` apparent bytes once that fits, evicting or waiting."""
        if size > self.max_bytes:
            raise UsageError(
                f"a shard needs {size:,} bytes but --cache-size is {self.max_bytes:,}; "
                "raise --cache-size to at least (workers x ranks + 1) shards"
            )
        deadline = time.monotonic() + self.wait_s
        delay = 0.02
        while True:
            with self._locked():
                current = os.path.getsize(part) if os.path.exists(part) else 0
                if self._evict_until(size - current):
                    with open(part, "ab") as f:
                        f.truncate(size)
                    return
            if time.monotonic() > deadline:
                raise ShardError(
                    f"no room in the shard cache {self.cache_dir} for {size:,} bytes after "
                    f"{self.wait_s:.0f}s: every cached shard is being read; raise --cache-size "
                    "or lower --workers"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- public --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, url: str) -> Iterator[str]:
        """Yield a local path holding the whole shard ``url``, pinned while the block runs."""
        name = cache_name(url)
        path = os.path.join(self.cache_dir, name)
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._locked():
                self._clean_dead_parts()
                fd = self._pin(path)
                busy = fd is None and self._downloading(name)
                if fd is None and not busy:  # claim the download before letting go of the lock
                    open(f"{path}.{os.getpid()}.part", "ab").close()
            if fd is None and not busy:
                fd = self._download(url, path)
            if fd is not None:
                try:
                    yield path
                finally:
                    os.close(fd)
                return
            if time.monotonic() > deadline:
                raise ShardError(f"timed out waiting for another process to download {url}")
            time.sleep(0.05)

    def _pin(self, path: str) -> int | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.utime(path)  # the mtime is the LRU clock
        return fd

    def _download(self, url: str, path: str) -> int:
        """Download ``url`` to ``path``; return a descriptor pinning the finished file."""
        for attempt in range(self.retries):
            try:
                return self._download_once(url, path)
            except ShardError:
                if attempt + 1 == self.retries or url.startswith("pipe:"):
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def _download_once(self, url: str, path: str) -> int:
        part = f"{path}.{os.getpid()}.part"
        written = 0
        try:
            with _open_stream(url, self.timeout_s) as (stream, expected):
                reserved = expected if expected is not None else min(64 * CHUNK, self.max_bytes)
                self._reserve(part, reserved)
                with open(part, "r+b") as out:
                    while chunk := stream.read(CHUNK):
                        if written + len(chunk) > reserved:
                            # unknown (or wrong) length: reserve more before writing any further
                            reserved = min(max(reserved * 2, written + len(chunk)), self.max_bytes)
                            if written + len(chunk) > reserved:
                                raise UsageError(
                                    f"{url} is larger than --cache-size {self.max_bytes:,} bytes; "
                                    "raise --cache-size"
                                )
                            self._reserve(part, reserved)
                        out.write(chunk)
                        written += len(chunk)
                    out.truncate(written)
            if expected is not None and written != expected:
                raise ShardError(f"{url}: got {written:,} of {expected:,} bytes")
            with self._locked():
                if os.path.exists(path):  # another process finished it first: keep theirs
                    os.unlink(part)
                else:
                    os.replace(part, path)
                fd = self._pin(path)
            assert fd is not None
            return fd
        except (OSError, ShardError, UsageError) as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            if isinstance(exc, OSError):
                raise ShardError(f"cannot download {url}: {exc}") from exc
            raise
