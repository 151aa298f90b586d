"""The fixed test split of a learning curve: one held-out part of SRC (or ``--test``), resized
once into test shards, and the pool the sizes draw their training images from.

Every size and every repeat is scored on exactly these images, so nothing may leak between
the two: with ``--test`` the pool is SRC less every image also in the test split (the same
file, or the same bytes under another name). Importing this module is cheap (stdlib only).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError

Log = Callable[[str], None]


@dataclass
class HeldOut:
    """Where a curve's runs draw from and what they are scored on."""

    pool: str  # the images the sizes draw from (SRC's training part)
    shards: str  # the test shards (a folder, or --test's own shards)
    split: str | None  # their split name (None: --test's shards as they are)
    classes: list[str]


def _is_shards(path: str) -> bool:
    from dataprep.io.scan import scan

    return scan(path).records is None


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pool_without_test(src: str, test: str, out: Path, classes: list[str], log: Log) -> str:
    """``src`` less the images that are also in ``test`` (the same resolved file, or the same
    bytes under another name), written as ``out/pool.jsonl``: the sizes draw from it, so no
    run trains on a test image. Raises :class:`UsageError` when a class is left empty."""
    from dataprep.io.durable import write_atomic
    from dataprep.io.scan import scan
    from dataprep.jobs.split import manifest_line

    test_records = list(scan(test, packed=False).records or [])
    test_paths = {os.path.realpath(r.path) for r in test_records}
    test_sizes = {os.path.getsize(r.path) for r in test_records}
    test_hashes: set[str] | None = None
    pool: list[Any] = []
    dropped = 0
    for r in scan(src, packed=False).records or []:
        real = os.path.realpath(r.path)
        same = real in test_paths
        if not same and os.path.getsize(real) in test_sizes:  # hash only when sizes match
            if test_hashes is None:
                test_hashes = {_sha256(t.path) for t in test_records}
            same = _sha256(real) in test_hashes
        if same:
            dropped += 1
        else:
            pool.append(replace(r, path=real))
    if dropped:
        log(f"{dropped} training images are also in the test split (same file or same "
            "bytes): left out")
    left = Counter(r.label for r in pool)
    empty = [c for i, c in enumerate(classes) if not left.get(i)]
    if empty:
        raise UsageError(f"no training image of class {empty[0]!r} is left once the images "
                         f"also in --test {test} are left out; give SRC images not in --test")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pool.jsonl"
    write_atomic(path, "".join(manifest_line(r) for r in pool).encode("utf-8"))
    return str(path)


def held_out_split(src: str, out: Path, test: str | None, *, ratio: float, seed: int,
                   short_side: int, jobs: int | None, overwrite: bool, log: Log) -> HeldOut:
    """Split once (or take ``test``), resize the test part once into ``out/test``."""
    from dataprep.io.scan import scan
    from dataprep.jobs.split import split
    from dataprep.jobs.tencrop import resize

    if test is None:
        result = split(src, out / "split", ratio=ratio, seed=seed, overwrite=True)
        log(f"split {src}: {len(result.splits['train'])} images to draw from, "
            f"{len(result.splits['val'])} held out for testing (ratio {ratio}, seed {seed})")
        train_part, test_src, classes = str(out / "split" / "train.jsonl"), \
            str(out / "split" / "val.jsonl"), result.classes
    else:
        train_part, test_src = src, test
        classes = scan(src).classes
        test_classes = scan(test).classes
        if test_classes and test_classes != classes:
            raise UsageError(f"--test {test} has classes {test_classes[:10]} but {src} has "
                             f"{classes[:10]}; they must be the same list in the same order")
        if _is_shards(test):
            return HeldOut(train_part, test, None, classes)
        train_part = _pool_without_test(src, test, out, classes, log)
    report = resize(test_src, out / "test", short_side=short_side, split="test", jobs=jobs,
                    overwrite=overwrite, classes=classes if test is not None else None)
    log(f"test shards: already complete in {out / 'test'}" if report.complete else
        f"test shards: {report.records_in} images -> {out / 'test'}")
    return HeldOut(train_part, str(out / "test"), "test", classes)
