"""Every benchmark in one run, one Markdown report: ``make bench``.

Each benchmark runs as its own process (so one's memory or worker pool never colours the next)
on the same photos, in this order: resize vs img2dataset, ten-crop vs a plain Pillow loop (and
bytes per record), scaling with --jobs, peak memory at 1k vs 10k inputs, split of a
1,000,000-record list, trainer loader vs torchvision. Every one is also runnable alone.

    python benchmarks/run_all.py [--photos DIR] [--quick] [--only NAME ...] [--output FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_CACHE, cores, real_photos  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCHMARKS = {  # name -> (script, takes --photos/--jobs/--repeat)
    "resize": ("resize_vs_img2dataset.py", True),
    "tencrop": ("prep_throughput.py", True),
    "scaling": ("scaling.py", True),
    "memory": ("memory.py", True),
    "split": ("split_scale.py", False),
    "loader": ("loader.py", True),
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for mod in ("PIL", "numpy", "joblib", "torch", "torchvision"):
        try:
            m = __import__(mod)
            out.append(f"{'Pillow' if mod == 'PIL' else mod} {m.__version__}")
        except ImportError:
            out.append(f"{mod} missing")
    return ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--quick", action="store_true", help="every benchmark's --quick")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=None)
    ap.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = ap.parse_args()
    photos = (args.photos or real_photos(args.cache)).resolve()
    out = open(args.output, "w") if args.output else None  # noqa: SIM115

    def emit(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        if out:
            out.write(text)
            out.flush()

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    quick = " (--quick: a smoke run, not a measurement)" if args.quick else ""
    emit(f"# dataprep benchmarks{quick}\n\n"
         f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {cores()} cores ({cpu_model()}), "
         f"{mem_gb:.0f} GiB, {platform.system()} {platform.release()}; {versions()}.\n"
         f"Photos: {photos}. Load average (1 min) at the start: {os.getloadavg()[0]:.1f}.\n")
    start = time.perf_counter()
    failed = []
    for name in args.only or BENCHMARKS:
        script, common_args = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / script), "--cache", str(args.cache)]
        if common_args:
            cmd += ["--photos", str(photos)]
            if args.jobs:
                cmd += ["--jobs", str(args.jobs)]
            if args.repeat:
                cmd += ["--repeat", str(args.repeat)]
        if args.quick:
            cmd.append("--quick")
        t0 = time.perf_counter()
        emit(f"\n## {name}\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            emit(line)
        if proc.wait() != 0:
            failed.append(name)
            emit(f"\n{name}: FAILED (exit status {proc.returncode})\n")
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr)
    emit(f"\nAll benchmarks: {time.perf_counter() - start:.0f} s; load average (1 min) at the "
         f"end: {os.getloadavg()[0]:.1f}.\n")
    if out:
        out.close()
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
