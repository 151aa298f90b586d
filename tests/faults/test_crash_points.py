"""A run killed at every commit step of every sink, then run again, gives the output of a clean
run: the same files, byte for byte, and the same ledgers and errors.jsonl.

Every fsync, rename, unlink and tree removal of a run goes through ``dataprep.io.durable``. The
job runs in a forked child (dataprep already imported, so each run takes milliseconds) that
counts those steps and dies with ``os._exit`` at the N-th one: before it (the step not done)
or, for the last step, after it. No timing is involved. The parent then reruns the same job in
another child without a crash and compares the output folder with a clean run's. Between the
two, ``verify`` must never say OK about an output that differs from the clean one.
"""

from __future__ import annotations

import os
import random
import shutil
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from PIL import Image

from dataprep.io import durable
from dataprep.io.foldersink import FolderWriter
from dataprep.jobs.tencrop import resize, tencrop
from dataprep.jobs.verify import verify

STEPS = ("fsync", "fsync_dir", "sync_lmdb", "replace", "unlink", "rmtree")
CRASHED = 77


def make_images(root: Path, n: int = 14) -> Path:
    """``n`` small gradient images in two classes, and one file that is not an image."""
    for i in range(n):
        folder = root / ("ant" if i % 2 else "bee")
        folder.mkdir(parents=True, exist_ok=True)
        x = [(i * 17 + 3 * c) % 256 for c in range(3)]
        img = Image.new("RGB", (40 + i, 36 + (i % 3)), tuple(x))
        img.putpixel((1, 1), (255, 0, 0))
        img.save(folder / f"img{i:02d}.png")
    (root / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


JOBS: dict[str, Callable[[Path, Path], object]] = {
    "webdataset": lambda src, out: tencrop(src, out, short_side=32, crop=24, jobs=1,
                                           max_count=20, image_format="png"),
    "lmdb": lambda src, out: tencrop(src, out, short_side=32, crop=24, jobs=1, fmt="lmdb",
                                     image_format="png"),
    "lmdb-caffe": lambda src, out: tencrop(src, out, short_side=32, crop=24, jobs=1, fmt="lmdb",
                                           lmdb_layout="caffe", image_format="png"),
    "folder": lambda src, out: resize(src, out, short_side=24, jobs=1, fmt="folder",
                                      image_format="png"),
}


def in_child(job: Callable[[], object], crash: tuple[int, str] | None = None,
             count_file: Path | None = None) -> int:
    """Run ``job`` in a forked child; with ``crash=(n, "before"|"after")`` the child dies at
    its n-th durable step. Returns the child's exit code (CRASHED when it died there)."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            counter = [0]

            def wrap(fn: Callable) -> Callable:
                def step(*args, **kwargs):
                    counter[0] += 1
                    if crash and crash == (counter[0], "before"):
                        os._exit(CRASHED)
                    result = fn(*args, **kwargs)
                    if crash and crash == (counter[0], "after"):
                        os._exit(CRASHED)
                    return result
                return step

            for name in STEPS:
                setattr(durable, name, wrap(getattr(durable, name)))
            FolderWriter.checkpoint_every = 4  # several checkpoints in a small run
            job()
            if count_file is not None:
                count_file.write_text(str(counter[0]))
            code = 0
        except BaseException:  # noqa: BLE001 - reported, and the child's exit code says it
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def tree(out: Path) -> dict[str, bytes]:
    """Every file of an output folder but its lock file."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != ".dataprep.lock"}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("crash") / "images")


def reference(fmt: str, images: Path, base: Path) -> tuple[dict[str, bytes], int]:
    """A clean run's files and the number of durable steps it takes."""
    out = base / "clean" / "out"
    count = base / "steps.txt"
    assert in_child(lambda: JOBS[fmt](images, out), count_file=count) == 0
    return tree(out), int(count.read_text())


def check_rerun(fmt: str, images: Path, out: Path, want: dict[str, bytes], where: str) -> None:
    report = None
    if out.exists() and (out / "dataprep.json").exists():
        try:
            report = verify(out, jobs=1)
        except Exception:  # noqa: BLE001 - a refusal (another run's lock) is not a verdict
            report = None
    if report is not None and report.ok:
        assert tree(out) == want, f"verify said OK about a wrong output after {where}"
    assert in_child(lambda: JOBS[fmt](images, out)) == 0, f"the rerun after {where} failed"
    got = tree(out)
    assert sorted(got) == sorted(want), f"files differ after {where}"
    for name in want:
        assert got[name] == want[name], f"{name} differs after {where}"
    assert verify(out, jobs=1).ok


@pytest.mark.parametrize("fmt", sorted(JOBS))
def test_a_crash_at_every_step_then_a_rerun_gives_the_clean_output(fmt, images, tmp_path):
    want, steps = reference(fmt, images, tmp_path)
    assert steps >= 10, steps
    assert any(name.endswith("errors.jsonl") for name in want)
    points = [(n, "before") for n in range(1, steps + 1)] + [(steps, "after")]
    for n, when in points:
        out = tmp_path / f"{when}{n}" / "out"
        assert in_child(partial(JOBS[fmt], images, out), crash=(n, when)) == CRASHED
        check_rerun(fmt, images, out, want, f"a crash {when} step {n} of {steps}")
        shutil.rmtree(out.parent)


@pytest.mark.parametrize("fmt", sorted(JOBS))
def test_crashes_during_the_rerun_too(fmt, images, tmp_path):
    want, steps = reference(fmt, images, tmp_path)
    rng = random.Random(fmt)
    for trial in range(4):
        out = tmp_path / f"twice{trial}" / "out"
        first = rng.randint(2, steps)
        assert in_child(partial(JOBS[fmt], images, out), crash=(first, "before")) == CRASHED
        second = rng.randint(1, 12)  # the rerun's steps: it may finish before this one
        in_child(partial(JOBS[fmt], images, out), crash=(second, "before"))
        check_rerun(fmt, images, out, want, f"crashes at step {first}, then {second}")


@pytest.mark.parametrize("fmt", sorted(JOBS))
@pytest.mark.parametrize("torn", [False, True])
def test_a_crash_while_finishing_then_a_crash_while_recovering(fmt, torn, images, tmp_path):
    """The last steps of a run are where the journal says most: crash there, then crash the
    recovery at each of its first steps. ``torn``: the first run also left half a journal
    line behind (a write cut short by a full disk), which the recovery must not build on."""
    want, steps = reference(fmt, images, tmp_path)
    for first in range(max(2, steps - 13), steps + 1, 3):
        for second in range(1, 20, 3):
            out = tmp_path / f"f{first}s{second}" / "out"
            assert in_child(partial(JOBS[fmt], images, out), crash=(first, "before")) == CRASHED
            journal = out / ".journal-train.jsonl"
            if torn and journal.exists():
                with open(journal, "ab") as f:
                    f.write(b'{"checkpoint": {"next_rec')
            in_child(partial(JOBS[fmt], images, out), crash=(second, "before"))
            check_rerun(fmt, images, out, want, f"crashes at step {first}, then {second}"
                        + (" (torn journal line)" if torn else ""))
            shutil.rmtree(out.parent)
