"""Special files where images are expected: FIFOs, devices, folders named like images,
unreadable folders, and shapes that would make a decoder allocate gigabytes. Every run ends
(a hang fails through the subprocess timeout), exits as documented, prints one line per
problem (never a traceback) and lists what it skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from dataprep.errors import ImageError
from dataprep.io.decode import MAX_INPUT_BYTES, open_image, read_input
from dataprep.io.scan import scan

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120  # seconds: far beyond what these tiny runs need; a hang ends the test


def dataprep(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m dataprep ARGS`` of this checkout, killed (and failed) if it hangs."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "dataprep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def errors_of(out: Path) -> list[dict]:
    path = out / "errors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


@pytest.fixture
def photos_with(tmp_path: Path, make_folder):
    """Two real classes of gradient images; the test adds its special file."""
    return make_folder(tmp_path / "images", {"cat": [(40, 30), (30, 40)], "dog": [(36, 36)]})


def test_fifo_named_like_an_image_in_a_class_folder(photos_with: Path, tmp_path: Path) -> None:
    fifo = photos_with / "cat" / "x.jpg"
    os.mkfifo(fifo)
    source = scan(photos_with)
    assert str(fifo) not in [r.path for r in source]
    assert [e["path"] for e in source.errors] == [str(fifo)]
    assert source.errors[0]["reason"] == (
        f"{fifo}: not a regular file (fifo); only regular files are read: replace it with the "
        "file itself or remove it")
    proc = dataprep("resize", str(photos_with), "-o", str(tmp_path / "out"), "-j", "1",
                    "--short-side", "16", cwd=tmp_path)
    clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert "3 records in -> 3 samples out" in proc.stdout
    assert [e["path"] for e in errors_of(tmp_path / "out")] == [str(fifo)]


def test_fifo_and_folder_in_a_list_file_are_skipped_with_a_reason(photos_with: Path,
                                                                   tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "y.jpg").mkdir()
    (tmp_path / "list.txt").write_text(
        f"{photos_with}/cat/img0.png 0\n{tmp_path}/pipe.jpg 1\n{tmp_path}/y.jpg 1\n")
    out = tmp_path / "out"
    proc = dataprep("shard", str(tmp_path / "list.txt"), "-o", str(out), cwd=tmp_path)
    clean(proc)
    assert proc.returncode == 0, proc.stderr
    reasons = {Path(e["path"]).name: e["reason"] for e in errors_of(out)}
    assert reasons == {
        "pipe.jpg": f"{tmp_path}/pipe.jpg: not a regular file (fifo); only regular files are "
                    "read: replace it with the file itself or remove it",
        "y.jpg": f"{tmp_path}/y.jpg: not a regular file (folder); only regular files are "
                 "read: replace it with the file itself or remove it",
    }


def test_symlink_to_dev_zero_is_refused_unread(photos_with: Path, tmp_path: Path) -> None:
    link = photos_with / "dog" / "zero.jpg"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match=r"zero\.jpg: not a regular file \(character device\)"):
        read_input(link)
    assert [e["path"] for e in scan(photos_with).errors] == [str(link)]
    (tmp_path / "l.txt").write_text(f"{link} 0\n{photos_with}/dog/img0.png 0\n")
    proc = dataprep("shard", str(tmp_path / "l.txt"), "-o", str(tmp_path / "out"), cwd=tmp_path)
    clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert [e["path"] for e in errors_of(tmp_path / "out")] == [str(link)]


def test_symlinks_to_regular_files_still_work(photos_with: Path, tmp_path: Path) -> None:
    (photos_with / "dog" / "link.png").symlink_to(photos_with / "cat" / "img0.png")
    source = scan(photos_with)
    assert len(source) == 4 and source.errors == []
    assert open_image(photos_with / "dog" / "link.png").size == (40, 30)


def test_broken_symlink_is_listed(photos_with: Path) -> None:
    broken = photos_with / "cat" / "gone.jpg"
    broken.symlink_to(photos_with / "nowhere.jpg")
    assert scan(photos_with).errors == [{
        "path": str(broken),
        "reason": f"{broken}: a broken symbolic link; remove it or restore what it points to"}]


def test_oversized_input_is_refused_from_its_size(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:  # sparse: no disk used
        f.truncate(MAX_INPUT_BYTES + 1)
    with pytest.raises(ImageError, match=r"big\.jpg: 1,073,741,825 bytes, over the "
                                         r"1,073,741,824-byte limit"):
        read_input(big)


# As root, chmod 000 does not stop reading (CAP_DAC_OVERRIDE). The run then goes through a
# child that, once everything is imported, enters a new user namespace: there it keeps no
# capability over root's files, so the folder is really unreadable.
UNPRIVILEGED = textwrap.dedent("""
    import ctypes, sys
    import fcntl, hashlib, json, lmdb, numpy, resource, shutil, signal, tarfile, tempfile
    import joblib, tqdm
    import dataprep.cli, dataprep.cluster, dataprep.io.writers, dataprep.jobs.job
    import dataprep.jobs.tencrop, dataprep.report, dataprep.runner
    from PIL import Image
    Image.init()
    if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:  # CLONE_NEWUSER
        sys.exit(77)
    sys.argv[0] = "dataprep"
    dataprep.cli.main(sys.argv[1:])
""")


def test_unreadable_class_folder_is_listed_not_dropped(make_folder) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # reachable from the namespace
        base = Path(tmp)
        base.chmod(0o777)
        images = make_folder(base / "images", {"cat": [(40, 30)], "dog": [(36, 36)]})
        for path in [images, *images.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        locked = images / "dog"
        locked.chmod(0)
        try:
            _check_unreadable_folder(images, locked, base)
        finally:
            locked.chmod(0o755)


def _check_unreadable_folder(images: Path, locked: Path, base: Path) -> None:
    args = ["resize", str(images), "-o", str(base / "out"), "-j", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        os.listdir(locked)
        readable = True
    except PermissionError:
        readable = False
    if not readable:
        source = scan(images)
        assert source.classes == ["cat", "dog"]
        assert [e["path"] for e in source.errors] == [str(locked)]
        cmd = [sys.executable, "-m", "dataprep", *args]
    else:  # root: read it from a user namespace
        cmd = [sys.executable, "-c", UNPRIVILEGED, *args]
    proc = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    if proc.returncode == 77:
        pytest.skip("chmod 000 cannot make a folder unreadable here (root, no user namespaces)")
    clean(proc)
    assert proc.returncode == 0, proc.stderr
    [error] = errors_of(base / "out")
    assert error["path"] == str(locked)
    assert error["reason"] == (f"{locked}: cannot list this folder (Permission denied); its "
                               "images are left out: make it readable (chmod +rx) and run "
                               "again")
    assert error["reason"] in proc.stdout


PEAK_MB = textwrap.dedent("""
    import resource, subprocess, sys
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=110)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(f"PEAK_MB={peak} RC={proc.returncode}")
""")


def test_thin_png_is_refused_before_resizing_with_little_memory(tmp_path: Path) -> None:
    """A 4x60000 PNG (1.6 KB) upscaled to a 256 short side would be 256x3,840,000 pixels
    (~3 GB of RGB): refused from its header, by --max-aspect and by the resized-size bound."""
    folder = tmp_path / "images" / "thin"
    folder.mkdir(parents=True)
    Image.new("RGB", (4, 60000), (9, 9, 9)).save(folder / "thin.png")
    Image.new("RGB", (300, 300), (200, 9, 9)).save(folder / "ok.png")
    assert (folder / "thin.png").stat().st_size < 4096
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for extra, words in (([], "over --max-aspect 100"),
                         (["--max-aspect", "100000"], "would be resized to 256x3840000")):
        out = tmp_path / f"out{len(extra)}"
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_MB, sys.executable, "-m", "dataprep", "tencrop",
             str(tmp_path / "images"), "-o", str(out), "-j", "1", *extra],
            capture_output=True, text=True, timeout=TIMEOUT, env=env)
        clean(proc)
        peak = int(proc.stdout.rsplit("PEAK_MB=", 1)[1].split()[0])
        assert "RC=0" in proc.stdout, proc.stdout + proc.stderr
        assert peak < 600, f"peak memory {peak} MB"
        [error] = errors_of(out)
        assert error["path"].endswith("thin.png") and words in error["reason"], error


def test_max_aspect_flag_is_checked(tmp_path: Path) -> None:
    proc = dataprep("tencrop", str(tmp_path), "-o", str(tmp_path / "o"), "--max-aspect", "0.5",
                    cwd=tmp_path)
    assert proc.returncode == 2
    assert "Invalid value for '--max-aspect'" in proc.stderr
    clean(proc)


@pytest.mark.parametrize("verb", ["split", "resize"])
def test_fifo_as_the_source_is_refused_unopened(tmp_path: Path, verb: str) -> None:
    os.mkfifo(tmp_path / "list.txt")
    proc = dataprep(verb, str(tmp_path / "list.txt"), "-o", str(tmp_path / "out"), cwd=tmp_path)
    clean(proc)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"Error: {tmp_path}/list.txt: not a regular file (fifo); "
                                   "only regular files are read: replace it with the file "
                                   "itself or remove it")


def test_fifo_as_side_files_is_refused_unopened(photos_with: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "stats.json")
    proc = dataprep("tencrop", str(photos_with), "-o", str(tmp_path / "out"), "--short-side",
                    "32", "--crop", "24", "--pca-lighting", "0.1", "--stats",
                    str(tmp_path / "stats.json"), cwd=tmp_path)
    clean(proc)
    assert proc.returncode != 0
    assert "stats.json: not a regular file (fifo)" in proc.stderr
    os.mkfifo(tmp_path / "r.toml")
    proc = dataprep("tencrop", str(photos_with), "-o", str(tmp_path / "out"), "--recipe",
                    str(tmp_path / "r.toml"), cwd=tmp_path)
    clean(proc)
    assert proc.returncode == 2
    assert "r.toml: not a regular file (fifo)" in proc.stderr
