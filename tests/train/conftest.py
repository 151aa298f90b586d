"""Tiny real shards for trainer tests, written with the project's own writers.

Images are small and learnable: each class has its own dominant color plus per-image noise
and a gradient, so a few optimizer steps separate the classes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataprep.io.manifest import write_info_json, write_ledger
from dataprep.io.tarsink import TarShardWriter
from dataprep.io.writers import LmdbWriter
from dataprep.records import Sample

CLASSES = ["red", "green", "blue"]


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)  # 2 cores: keep tests from oversubscribing
    yield


def class_image(label: int, index: int, size: int = 40) -> bytes:
    rng = np.random.default_rng(1000 * label + index)
    arr = rng.integers(0, 90, size=(size, size + 3, 3)).astype(np.int16)
    arr[..., label] += 150
    arr[..., (label + 1) % 3] += np.arange(size + 3)[None, :] * 2  # a gradient: crops differ
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def samples(split: str, per_class: int, size: int = 40, lazy_crop: int | None = None,
            ) -> list[Sample]:
    out = []
    for i in range(per_class):
        for label, name in enumerate(CLASSES):
            key = f"{split}_{name}_{i:04d}"
            meta = {"key": key, "label": label, "class_name": name, "path": f"{name}/{i}.png"}
            if lazy_crop:
                meta["views"] = {"kind": "tencrop", "crop": lazy_crop, "flip": True}
            out.append(Sample(key, class_image(label, i + (0 if split == "train" else 5000),
                                               size), "png", label, meta))
    return out


def write_split(out: Path, split: str, items: list[Sample], max_count: int,
                fmt: str = "webdataset") -> None:
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "lmdb":
        writer = LmdbWriter(out, split, classes=CLASSES)
    else:
        writer = TarShardWriter(out, split, max_count=max_count)
    for s in items:
        writer.write(s)
    shards = writer.close()
    if fmt == "webdataset":
        write_info_json(out, split, shards)
    write_ledger(out, split, {"command": "test", "format": fmt, "classes": CLASSES,
                              "shards": [s.to_json() for s in shards]})


def make_shards(out: Path, train_per_class: int = 16, val_per_class: int = 4,
                max_count: int = 16, size: int = 40, lazy_crop: int | None = None,
                fmt: str = "webdataset") -> Path:
    write_split(out, "train", samples("train", train_per_class, size, lazy_crop), max_count, fmt)
    write_split(out, "val", samples("val", val_per_class, size, lazy_crop), max_count, fmt)
    return out


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """3 classes x 16 train images in 3 shards (16, 16, 16) and 12 val images, 40x43 PNG."""
    return make_shards(tmp_path / "shards")


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def serve():
    """``serve(directory) -> base URL``: ``python -m http.server`` on 127.0.0.1, a free port."""
    import re
    import subprocess
    import sys

    procs = []

    def start(directory: Path) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
             "--directory", str(directory)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (...)"
        m = re.search(r"port (\d+)", line)
        assert m, line
        return f"http://127.0.0.1:{m.group(1)}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
