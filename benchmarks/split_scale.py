"""``dataprep split`` on a 1,000,000-record list file: time, peak memory, file access, profile.

The list file (``class_XXXX/img_XXXXXXX.jpg LABEL`` lines, 1,000 classes; the files do not
exist) is generated once into ``--cache``. ``dataprep split LIST -o DIR`` runs as a fresh
process, timed whole; its peak memory is the kernel's ``ru_maxrss`` (split runs in one
process). A second run under cProfile counts the file-system calls (stat, open, ...) and,
when a target is missed, prints where the time goes.

    python benchmarks/split_scale.py [--records N] [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_CACHE,
    Measured,
    dataprep_cmd,
    mb,
    print_profile,
    print_table,
    run_process,
    verdict,
    work_dir,
)

TARGET_S = 10.0
TARGET_BYTES = 1e9
CLASSES = 1000
PROFILE_RECORDS = 200_000
FS_CALLS = ("posix.stat", "posix.lstat", "posix.access", "posix.scandir", "io.open",
            "posix.listdir")


def make_list(cache: Path, n: int) -> Path:
    path = cache / f"split-list-{n}.txt"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            for start in range(0, n, 100_000):
                f.write("".join(f"class_{i % CLASSES:04d}/img_{i:07d}.jpg {i % CLASSES}\n"
                                for i in range(start, min(n, start + 100_000))))
        tmp.replace(path)
    return path


def profile_child(list_file: str, out: str, stats_file: str) -> None:
    """Runs in a fresh process: the library call under cProfile, stats dumped to a file."""
    from dataprep.jobs.split import split

    prof = cProfile.Profile()
    prof.enable()
    split(list_file, out, overwrite=True)
    prof.disable()
    prof.dump_stats(stats_file)


def fs_calls(stats: pstats.Stats) -> dict[str, int]:
    counts = dict.fromkeys(FS_CALLS, 0)
    for (_, _, name), (_, ncalls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        for call in FS_CALLS:
            if call in name:
                counts[call] += ncalls
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--records", type=int, default=None,
                    help="lines in the list file [1,000,000; 200,000 with --quick]")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                    help="print the profile when a target is missed (auto), always or never")
    ap.add_argument("--top", type=int, default=12, help="profile rows")
    ap.add_argument("--profile-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.profile_child:
        profile_child(*args.profile_child)
        return
    n = args.records or (200_000 if args.quick else 1_000_000)
    list_file = make_list(args.cache, n)
    work = work_dir(args.cache, "split")
    m: Measured = run_process(dataprep_cmd("split", list_file, "-o", work / "out", "--overwrite"))
    scale = 1_000_000 / n
    rows = [[f"{n:,}", f"{m.wall_s:.1f}", f"{m.cpu_s:.1f}", mb(m.max_rss),
             f"{n / m.wall_s:,.0f}"]]
    time_ok = m.wall_s * scale < TARGET_S
    mem_ok = m.max_rss * scale < TARGET_BYTES
    extrapolated = "" if n == 1_000_000 else (
        f" ({n:,} records; linear extrapolation to 1,000,000: {m.wall_s * scale:.1f} s, "
        f"{mb(m.max_rss * scale)})")
    # the profile (cProfile roughly doubles the time) runs on at most PROFILE_RECORDS records
    n_prof = min(n, PROFILE_RECORDS)
    stats_file = work / "split.prof"
    run_process([sys.executable, __file__, "--profile-child", str(make_list(args.cache, n_prof)),
                 str(work / "prof-out"), str(stats_file)])
    stats = pstats.Stats(str(stats_file))
    calls = fs_calls(stats)
    touched = calls["posix.stat"] + calls["posix.lstat"] + calls["posix.access"]
    access = (f"the listed files were never touched ({touched} stat/lstat/access calls in all "
              f"for {n_prof:,} records; they do not exist)" if touched < n_prof / 100 else
              f"split stats the listed files: {touched:,} stat/lstat/access calls for "
              f"{n_prof:,} records")
    print_table(
        "`dataprep split` of a list file (80/20, 1,000 classes)",
        ["records", "seconds", "CPU s", "peak memory", "records/s"],
        rows,
        note=(f"targets (1,000,000 records): < {TARGET_S:.0f} s: "
              f"{verdict(-m.wall_s * scale, -TARGET_S)}; < 1 GB: "
              f"{verdict(-m.max_rss * scale, -TARGET_BYTES)}{extrapolated}. One fresh process "
              "(`dataprep split LIST -o DIR`), timed whole; peak memory is its ru_maxrss. "
              f"File access: {access}; calls: "
              + ", ".join(f"{k} {v:,}" for k, v in calls.items()) + "."),
    )
    if args.profile == "always" or (args.profile == "auto" and not (time_ok and mem_ok)):
        print_profile(stats, f"split profile ({n_prof:,} records)", args.top)


if __name__ == "__main__":
    main()
