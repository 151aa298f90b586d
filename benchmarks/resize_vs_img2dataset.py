"""Short-side resize to 256, JPEG q90, WebDataset: dataprep vs img2dataset, whole processes.

Both tools get the same photos (the real photo set, each file ``--copies`` times under distinct
names) and the same number of processes; each whole process is timed, start-up included.
dataprep reads the files; img2dataset, by design, downloads them: here from a
``python -m http.server`` on 127.0.0.1 serving the same files. Prints images/s per core, images
per CPU-second (user + system time of the tool's whole process tree) and their ratios.

img2dataset pins albumentations < 2, an older webdataset and another OpenCV, which would
replace what dataprep's own extras install, so it lives in a venv of its own under
``--cache`` (created with pip on first use).

    python benchmarks/resize_vs_img2dataset.py [--photos DIR] [--jobs N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Measured,
    StaticServer,
    add_common_args,
    dataprep_cmd,
    fresh_dir,
    image_files,
    photo_dir,
    print_table,
    repeated_tree,
    repeats,
    run_process,
    verdict,
    work_dir,
)

IMG2DATASET = "img2dataset==1.47.0"
TARGET = 2.0  # dataprep images/s per core >= 2x img2dataset's


def img2dataset_bin(cache: Path) -> Path | str:
    """The img2dataset CLI of its own venv (created once), or why there is none."""
    venv = cache / "img2dataset-venv"
    exe = venv / "bin" / "img2dataset"
    if exe.exists():
        return exe
    print(f"installing {IMG2DATASET} into {venv} (once) ...", file=sys.stderr)
    log = cache / "img2dataset-install.log"
    cache.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        ok = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)],
                            stdout=f, stderr=f).returncode == 0 and subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", IMG2DATASET],
            stdout=f, stderr=f).returncode == 0
    if not ok or not exe.exists():
        return f"pip install {IMG2DATASET} failed (see {log})"
    return exe


def img2dataset_count(out: Path) -> int:
    return sum(json.loads(p.read_text()).get("successes", 0) for p in out.glob("*_stats.json"))


def dataprep_count(out: Path) -> int:
    info = json.loads((out / "_info.json").read_text())
    return sum(s["num_samples"] for s in info["splits"].values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap)
    ap.add_argument("--copies", type=int, default=None,
                    help="each photo this many times under distinct names [3; 1 with --quick]")
    ap.add_argument("--threads", type=int, default=4, help="img2dataset thread_count [4]")
    args = ap.parse_args()
    photos = photo_dir(args)
    copies = args.copies or (1 if args.quick else 3)
    files = image_files(photos)
    farm = repeated_tree(files, photos, args.cache / f"resize-x{copies}", copies)
    inputs = image_files(farm)
    n, jobs, repeat = len(inputs), args.jobs, repeats(args)
    work = work_dir(args.cache, "resize")
    print(f"\n{n} images ({len(files)} photos of {photos} x {copies}), {jobs} processes each, "
          f"best of {repeat}")

    exe = img2dataset_bin(args.cache)
    # img2dataset parallelizes by shard: several shards per process keep them all busy
    per_shard = max(1, math.ceil(n / (4 * jobs)))

    def run_dataprep() -> Measured:
        out = work / "dataprep"
        m = run_process(dataprep_cmd("resize", farm, "-o", out, "--short-side", 256,
                                     "--quality", 90, "--format", "webdataset", "--jobs", jobs,
                                     "--overwrite"))
        m.output = str(dataprep_count(out))
        fresh_dir(out)
        return m

    def run_img2dataset(url_list: Path) -> Measured:
        out = work / "img2dataset"
        fresh_dir(out)
        out.rmdir()  # img2dataset creates it (an existing folder means "resume")
        m = run_process([
            str(exe), "--url_list", str(url_list), "--output_folder", str(out),
            "--processes_count", str(jobs), "--thread_count", str(args.threads),
            "--resize_mode", "keep_ratio", "--image_size", "256", "--resize_only_if_bigger",
            "True", "--encode_quality", "90", "--output_format", "webdataset",
            "--number_sample_per_shard", str(per_shard), "--enable_wandb", "False"],
            env=env)
        m.output = str(img2dataset_count(out))
        return m

    # albumentations (imported by img2dataset) looks for updates online unless told not to
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    results: dict[str, Measured] = {}
    if isinstance(exe, Path):
        with StaticServer(farm) as server:
            url_list = work / "urls.txt"
            url_list.write_text("".join(server.url(str(p.relative_to(farm))) + "\n"
                                        for p in inputs))
            for _ in range(repeat):
                for name, run in (("dataprep", run_dataprep),
                                  ("img2dataset", lambda: run_img2dataset(url_list))):
                    m = run()
                    if name not in results or m.wall_s < results[name].wall_s:
                        results[name] = m
    else:
        for _ in range(repeat):
            m = run_dataprep()
            if "dataprep" not in results or m.wall_s < results["dataprep"].wall_s:
                results["dataprep"] = m

    base = results.get("img2dataset")
    rows = []
    for name, m in results.items():
        rate = n / m.wall_s
        per_cpu = n / m.cpu_s if m.cpu_s else float("nan")
        if base is not None:
            ratio = f"{base.wall_s / m.wall_s:.2f}"
            cpu_ratio = f"{base.cpu_s / m.cpu_s:.2f}"
        else:
            ratio = cpu_ratio = "n/a"
        rows.append([name, jobs, m.output, f"{m.wall_s:.1f}", f"{rate:.1f}", f"{rate / jobs:.1f}",
                     f"{m.cpu_s:.1f}", f"{per_cpu:.1f}", ratio, cpu_ratio])
    if base is not None:
        got = base.wall_s / results["dataprep"].wall_s
        status = f"target >= {TARGET:.1f}x img2dataset per core: {got:.2f}x, {verdict(got, TARGET)}"
    else:
        status = f"img2dataset not measured: {exe}"
    print_table(
        "Resize to short side 256, JPEG q90, WebDataset: dataprep vs img2dataset",
        ["tool", "processes", "samples out", "seconds", "images/s", "images/s per core",
         "CPU s", "images per CPU s", "ratio (per core)", "ratio (per CPU s)"],
        rows,
        note=(f"{status}. Whole processes, start-up included, best of {repeat}; CPU s is user + "
              "system time of the tool's process tree. dataprep reads the files; img2dataset "
              "downloads them over HTTP from a loopback `python -m http.server` (inherent in its "
              "design; the server's own CPU is not counted). img2dataset settings: "
              f"`resize_mode=keep_ratio, image_size=256, resize_only_if_bigger=True` (dataprep "
              f"does not enlarge either), `encode_quality=90, output_format=webdataset, "
              f"processes_count={jobs}, thread_count={args.threads}, "
              f"number_sample_per_shard={per_shard}`, other options at their defaults (sha256 "
              "of each image, EXIF extraction, parquet metadata), run with "
              "NO_ALBUMENTATIONS_UPDATE=1 (no online update check); it resizes with OpenCV "
              "(INTER_AREA), dataprep with Pillow (bilinear, antialiased, JPEG draft decode)."),
    )


if __name__ == "__main__":
    main()
