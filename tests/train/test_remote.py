"""Training from http:// shards (python -m http.server on loopback) through a cache smaller
than the data, and from pipe: URLs."""

from __future__ import annotations

import json
import os
import threading
import time

from conftest import make_shards

from dataprep.train.config import TrainConfig
from dataprep.train.loop import train
from dataprep.train.sources import resolve_source


def _cache_bytes(path: str) -> int:
    total = 0
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return 0
    for name in names:
        try:
            total += os.stat(os.path.join(path, name)).st_size
        except FileNotFoundError:  # evicted between listing and stat
            pass
    return total


def test_http_shards_through_a_cache_smaller_than_the_data(tmp_path, serve):
    data = make_shards(tmp_path / "www", train_per_class=8, val_per_class=2, max_count=6)
    files = sorted(data.glob("*.tar"))
    sizes = [f.stat().st_size for f in files]
    assert len(files) == 5  # 4 train shards, 1 val shard
    bound = int(2.5 * max(sizes))
    assert bound < sum(sizes)
    base = serve(data)
    cache_dir = str(tmp_path / "cache")
    peak, samples, stop = [0], [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _cache_bytes(cache_dir))
            samples[0] += 1
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cfg = TrainConfig(data=base, out=str(tmp_path / "run"), model="tiny_cnn", img_size=32,
                          short_side=36, batch_size=4, workers=2, epochs=2, lr=0.05,
                          cache_dir=cache_dir, cache_size=bound, shuffle_buffer=8,
                          progress=False)
        result = train(cfg)
    finally:
        stop.set()
        sampler.join()
    assert result.epochs_run == 2
    assert result.history[-1]["val_samples"] == 6  # the val split of the same URL
    assert result.history[-1]["batches_per_rank"] == [24 // 4]
    assert samples[0] > 50 and 0 < peak[0] <= bound
    left = [n for n in os.listdir(cache_dir) if n.endswith(".tar")]
    assert 0 < len(left) < len(files)  # whole shards were evicted to stay under the bound
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["classes"] == ["red", "green", "blue"]  # from dataprep.json over http


def test_brace_pattern_urls_find_counts_beside_them(tmp_path, serve):
    data = make_shards(tmp_path / "www", train_per_class=8, val_per_class=2, max_count=6)
    base = serve(data)
    src = resolve_source(f"{base}/train-{{000000..000003}}.tar", "train")
    assert [p.num_samples for p in src.parts] == [6, 6, 6, 6]
    assert src.classes == ["red", "green", "blue"] and src.remote


def test_pipe_urls(tmp_path):
    data = make_shards(tmp_path / "shards", train_per_class=8, val_per_class=2, max_count=6)
    cfg = TrainConfig(data=f"pipe:cat {data}/train-{{000000..000003}}.tar",
                      val=f"pipe:cat {data}/val-000000.tar", num_classes=3,
                      steps_per_epoch=3, out=str(tmp_path / "run"), model="tiny_cnn",
                      img_size=32, batch_size=4, workers=0, epochs=1, progress=False)
    result = train(cfg)
    assert result.history[0]["batches_per_rank"] == [3]
    assert result.history[0]["val_samples"] == 6
