"""Helpers shared by the benchmarks: inputs, timing, process-tree measurement, tables.

Every benchmark prints Markdown tables and never asserts a time. Machines are shared and
noisy, so the runs being compared are interleaved (A, B, A, B, ...) and each keeps its best
of ``--repeat``; ratios are only ever taken between runs of the same invocation.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FETCH = ROOT / "benchmarks" / "fetch_real_images.sh"
DEFAULT_CACHE = Path.home() / ".cache" / "dataprep-bench"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

# input size buckets (megapixels, lower bound inclusive)
BUCKETS = (("< 0.5 MP", 0.0, 0.5), ("0.5-4 MP", 0.5, 4.0), ("> 4 MP", 4.0, math.inf))


# -- arguments and inputs -----------------------------------------------------------------------


def add_common_args(ap: argparse.ArgumentParser, repeat: int = 2) -> None:
    ap.add_argument("--photos", type=Path, default=None,
                    help="folder of labelled photos root/<class>/... (default: the real photo "
                         "set of benchmarks/fetch_real_images.sh, fetched once into --cache)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="where fetched photos and generated inputs are kept between runs")
    ap.add_argument("--jobs", type=int, default=cores(), help="worker processes [all cores]")
    ap.add_argument("--repeat", type=int, default=None,
                    help=f"best of R runs for each timing [{repeat}; 1 with --quick]")
    ap.add_argument("--quick", action="store_true",
                    help="fewer images and repeats: a smoke run, not a measurement")
    ap.set_defaults(default_repeat=repeat)


def repeats(args: argparse.Namespace) -> int:
    if args.repeat is not None:
        return max(1, args.repeat)
    return 1 if args.quick else args.default_repeat


def photo_dir(args: argparse.Namespace) -> Path:
    photos = args.photos or real_photos(args.cache)
    if not photos.is_dir():
        sys.exit(f"--photos {photos} is not a folder")
    return photos.resolve()


def real_photos(cache: Path) -> Path:
    """The labelled real photo set of fetch_real_images.sh (fetched once into ``cache``)."""
    photos = cache / "photos"
    if not (photos / ".sources.tsv").exists():
        if not FETCH.exists():
            sys.exit(f"no photo folder given and {FETCH} is missing; pass --photos DIR")
        print(f"fetching the real photo set into {photos} (once) ...", file=sys.stderr)
        subprocess.run(["bash", str(FETCH), str(photos)], check=True,
                       stdout=subprocess.DEVNULL)
    return photos


def image_files(root: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Images under ``root`` (hidden files and folders skipped), sorted."""
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower() in suffixes and not any(
                      part.startswith(".") for part in p.relative_to(root).parts))


def jpeg_files(root: Path) -> list[Path]:
    return image_files(root, (".jpg", ".jpeg"))


def megapixels(path: Path) -> float:
    from PIL import Image

    with Image.open(path) as img:
        return img.size[0] * img.size[1] / 1e6


def bucket_of(mp: float) -> str:
    return next(name for name, lo, hi in BUCKETS if lo <= mp < hi)


def repeated_tree(files: Sequence[Path], root: Path, dst: Path, copies: int) -> Path:
    """``dst/<class>/c{i}__<name>``: symlinks to ``files`` (relative to ``root``), ``copies``
    times over, so a run sees ``copies * len(files)`` distinct paths. Built once."""
    done = dst / ".complete"
    if done.exists() and done.read_text() == f"{len(files)} {copies}":
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    for c in range(copies):
        for f in files:
            rel = f.relative_to(root)
            link = dst / rel.parent / f"c{c}__{rel.name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f.resolve())
    done.write_text(f"{len(files)} {copies}")
    return dst


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def work_dir(cache: Path, name: str) -> Path:
    """A scratch folder of this run only (two runs at once never share one), removed at exit."""
    import atexit
    import tempfile

    cache.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"work-{name}-", dir=cache))
    atexit.register(shutil.rmtree, path, True)
    return path


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- timing -------------------------------------------------------------------------------------


@dataclass
class Timing:
    wall_s: float
    cpu_s: float  # user + system CPU seconds (this process, or the measured process tree)


def time_call(fn: Callable[[], Any]) -> Timing:
    """Wall and CPU time of an in-process call. The CPU time is this process's own: worker
    processes of a reused pool are reaped whenever they exit, maybe during a later call, so
    their time cannot be charged to the call that used them."""
    def cpu() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return me.ru_utime + me.ru_stime

    c0, t0 = cpu(), time.perf_counter()
    fn()
    return Timing(time.perf_counter() - t0, cpu() - c0)


def interleaved(runs: dict[str, Callable[[], Timing]], repeat: int) -> dict[str, Timing]:
    """Run each entry ``repeat`` times, round-robin; keep each entry's fastest (wall) run."""
    best: dict[str, Timing] = {}
    for _ in range(repeat):
        for name, run in runs.items():
            t = run()
            if name not in best or t.wall_s < best[name].wall_s:
                best[name] = t
    return best


# -- whole processes ----------------------------------------------------------------------------


@dataclass
class Measured(Timing):
    """A whole process tree: wall time, CPU time, and memory.

    ``max_rss``: the largest resident set of any single process of the tree (kernel's
    ``ru_maxrss``, exact). ``peak_pss``: the largest sum over the tree's live processes of their
    proportional set size (shared pages divided among the processes that share them, so the
    sum does not count a library or a copy-on-write page twice), sampled every ``interval``;
    ``peak_rss_sum`` is the same with plain RSS; ``peak_root_rss`` the RSS of the top process
    alone. All three are 0 when not sampled.
    """

    max_rss: int = 0
    peak_pss: int = 0
    peak_rss_sum: int = 0
    peak_root_rss: int = 0
    returncode: int = 0
    output: str = ""


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_pids(root: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(Pss, Rss) of one process in kB; (0, 0) when it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return pss, rss


def run_process(cmd: Sequence[str], *, interval: float | None = None, cwd: Path | None = None,
                env: dict[str, str] | None = None, check: bool = True) -> Measured:
    """Run ``cmd`` to completion; wall and CPU time of its whole tree (the kernel's rusage of the
    child and every descendant it reaped), and with ``interval`` its sampled memory."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    peak_pss = peak_rss = peak_root = 0
    chunks: list[str] = []
    if interval is not None:
        import threading

        reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
        reader.start()
        while True:
            pids = tree_pids(proc.pid)
            mem = [_memory_kb(p) for p in pids]
            peak_pss = max(peak_pss, sum(m[0] for m in mem))
            peak_rss = max(peak_rss, sum(m[1] for m in mem))
            peak_root = max(peak_root, mem[0][1])
            try:
                done, status, usage = os.wait4(proc.pid, os.WNOHANG)
            except ChildProcessError:  # pragma: no cover
                break
            if done:
                break
            time.sleep(interval)
        reader.join()
    else:
        chunks.append(proc.stdout.read())  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = "".join(chunks)
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{output[-3000:]}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, max_rss=usage.ru_maxrss * 1024,
                    peak_pss=peak_pss * 1024, peak_rss_sum=peak_rss * 1024,
                    peak_root_rss=peak_root * 1024,
                    returncode=proc.returncode, output=output)


def dataprep_cmd(*args: object) -> list[str]:
    """The ``dataprep`` CLI of the Python running the benchmark."""
    return [sys.executable, "-m", "dataprep", *map(str, args)]


class StaticServer:
    """``python -m http.server`` serving ``root`` on 127.0.0.1 at a free port (a context)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> StaticServer:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
             "--directory", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(self.url(""), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"http.server did not start on port {self.port}") from None
                time.sleep(0.1)

    def url(self, rel: str) -> str:
        from urllib.parse import quote

        return f"http://127.0.0.1:{self.port}/{quote(rel)}"

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()
                self.proc.wait()


# -- output -------------------------------------------------------------------------------------


def print_table(title: str, header: list[str], rows: Iterable[Sequence[object]],
                note: str | None = None) -> None:
    """A Markdown table under a ``###`` title, with an optional note below it."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n### {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    if note:
        print(f"\n{note}")
    sys.stdout.flush()


def profile_tables(stats: Any, top: int) -> tuple[list[list[object]], list[list[object]]]:
    """From :class:`pstats.Stats`: (top functions by own time, dataprep's functions by
    cumulative time), rows of ``[function, calls, own s, cumulative s, share]``; the share is
    of the longest cumulative time (the profiled call)."""
    import dataprep

    package = str(Path(dataprep.__file__).resolve().parent) + os.sep
    entries = stats.stats.items()
    total = max(ct for _, (_, _, _, ct, _) in entries)

    def where(func: tuple[str, int, str]) -> str:
        file, line, name = func
        if file == "~":
            return name
        short = file[len(package):] if file.startswith(package) else Path(file).name
        return f"{short}:{line} {name}"

    def rows(items: list, share_of: int) -> list[list[object]]:
        return [[where(f), f"{nc:,}", f"{tt:.2f}", f"{ct:.2f}", f"{(tt, ct)[share_of] / total:.0%}"]
                for f, (_, nc, tt, ct, _) in items]

    own = sorted(entries, key=lambda kv: -kv[1][2])[:top]
    ours = sorted((kv for kv in entries if kv[0][0].startswith(package)),
                  key=lambda kv: -kv[1][3])[:top]
    return rows(own, 0), rows(ours, 1)


def print_profile(stats: Any, what: str, top: int = 12) -> None:
    own, cumulative = profile_tables(stats, top)
    header = ["function", "calls", "own s", "cumulative s", "share"]
    print_table(f"{what}: top functions by own time", header, own,
                note="cProfile times (it inflates many small calls); share: of the whole "
                     "profiled call.")
    print_table(f"{what}: dataprep functions by cumulative time", header, cumulative)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"
