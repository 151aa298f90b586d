"""The shard cache: a hard global bound, LRU eviction of whole shards, pins, pipe: URLs."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import pytest

from dataprep.errors import ShardError, UsageError
from dataprep.train.cache import ShardCache, cache_name


def _files(tmp_path: Path, sizes: list[int]) -> Path:
    d = tmp_path / "www"
    d.mkdir()
    for i, n in enumerate(sizes):
        (d / f"s{i}.tar").write_bytes(bytes([i]) * n)
    return d


def test_download_is_cached_and_byte_identical(tmp_path, serve):
    base = serve(_files(tmp_path, [5000]))
    cache = ShardCache(str(tmp_path / "c"), 10_000)
    with cache.open(f"{base}/s0.tar") as path:
        assert Path(path).read_bytes() == bytes([0]) * 5000
        first = os.stat(path).st_ino
    with cache.open(f"{base}/s0.tar") as path:
        assert os.stat(path).st_ino == first  # served from the cache, not fetched again
    assert cache.usage() == 5000


def test_lru_eviction_keeps_the_bound(tmp_path, serve):
    base = serve(_files(tmp_path, [4000, 4000, 4000]))
    cache = ShardCache(str(tmp_path / "c"), 9000)
    for i in (0, 1):
        with cache.open(f"{base}/s{i}.tar"):
            pass
    time.sleep(0.02)
    with cache.open(f"{base}/s0.tar"):  # touch s0: s1 is now the least recently used
        pass
    with cache.open(f"{base}/s2.tar"):
        assert cache.usage() <= 9000
    names = set(os.listdir(tmp_path / "c"))
    assert cache_name(f"{base}/s0.tar") in names
    assert cache_name(f"{base}/s1.tar") not in names
    assert cache_name(f"{base}/s2.tar") in names


def test_pinned_shards_are_not_evicted_and_downloads_wait(tmp_path, serve):
    base = serve(_files(tmp_path, [6000, 6000]))
    cache = ShardCache(str(tmp_path / "c"), 10_000, wait_s=30)
    done = threading.Event()

    def second():
        with cache.open(f"{base}/s1.tar"):
            done.set()

    with cache.open(f"{base}/s0.tar") as path:
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        assert not done.is_set()  # no room while s0 is being read
        assert Path(path).read_bytes() == bytes([0]) * 6000
    t.join(timeout=20)
    assert done.is_set()
    assert cache.usage() <= 10_000


def test_shard_larger_than_the_cache_is_a_clear_error(tmp_path, serve):
    base = serve(_files(tmp_path, [5000]))
    cache = ShardCache(str(tmp_path / "c"), 4000)
    with pytest.raises(UsageError, match="--cache-size"), cache.open(f"{base}/s0.tar"):
        pass
    assert cache.usage() == 0


def test_pipe_url_of_unknown_length(tmp_path):
    src = _files(tmp_path, [300_000])
    cache = ShardCache(str(tmp_path / "c"), 1_000_000)
    with cache.open(f"pipe:cat {src}/s0.tar") as path:
        assert Path(path).stat().st_size == 300_000
    with pytest.raises(ShardError, match="status"), cache.open("pipe:exit 3"):
        pass


def test_missing_url_fails_after_retries(tmp_path, serve):
    base = serve(_files(tmp_path, [10]))
    cache = ShardCache(str(tmp_path / "c"), 1000, retries=2)
    with pytest.raises(ShardError, match="404"), cache.open(f"{base}/nope.tar"):
        pass


def _reader(cache_dir: str, bound: int, base: str, order: list[int]) -> None:
    cache = ShardCache(cache_dir, bound)
    for i in order:
        with cache.open(f"{base}/s{i}.tar") as path:
            assert os.path.getsize(path) == 3000 + 100 * i


def test_many_processes_never_exceed_the_bound(tmp_path, serve):
    sizes = [3000 + 100 * i for i in range(8)]
    base = serve(_files(tmp_path, sizes))
    cache_dir, bound = str(tmp_path / "c"), 10_000
    ShardCache(cache_dir, bound)
    peak, stop = [0], threading.Event()

    def sample():
        probe = ShardCache(cache_dir, bound)
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], probe.usage())
            except FileNotFoundError:  # a file vanished between listing and stat
                pass
            time.sleep(0.001)

    t = threading.Thread(target=sample)
    t.start()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_reader, args=(cache_dir, bound, base, order))
             for order in ([0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0], [3, 1, 4, 1, 5])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    stop.set()
    t.join()
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert 0 < peak[0] <= bound
