"""Ten-crop throughput: dataprep vs a plain Pillow loop doing the same work, side by side.

Both read the same JPEG photos and do: open, convert to RGB, short-side resize to 256
(bilinear, antialiased), ten 224 crops (five + five of the mirror), encode at JPEG quality 90,
write. The plain loop writes files; dataprep writes WebDataset shards. Prints images/s per core
for both, their ratio, and bytes per record for materialized views, lazy views and raw pixels.

    python benchmarks/prep_throughput.py [--photos DIR] [--jobs N] [--repeat R]

Without --photos, the real photo set of shared/data/fetch_real_images.sh is fetched once.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cores, jpeg_files, print_table, real_photos  # noqa: E402

from PIL import Image  # noqa: E402


def plain_loop(files: list[Path], out: Path, short_side: int = 256, crop: int = 224) -> None:
    """What people write by hand: one process, full decode, Pillow resize, ten crops, save."""
    for i, path in enumerate(files):
        img = Image.open(path).convert("RGB")
        w, h = img.size
        if w <= h:
            size = (short_side, int(h * short_side / w))
        else:
            size = (int(w * short_side / h), short_side)
        img = img.resize(size, Image.Resampling.BILINEAR)
        for j, im in enumerate((img, img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))):
            W, H = im.size
            left, top = int(round((W - crop) / 2)), int(round((H - crop) / 2))
            boxes = [(0, 0, crop, crop), (W - crop, 0, W, crop), (0, H - crop, crop, H),
                     (W - crop, H - crop, W, H), (left, top, left + crop, top + crop)]
            for k, box in enumerate(boxes):
                im.crop(box).save(out / f"{i}_{j * 5 + k}.jpg", quality=90)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def time_it(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=None, help="folder of images (root/<class>/...)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dataprep-bench")
    ap.add_argument("--jobs", type=int, default=cores(), help="jobs for the parallel run")
    ap.add_argument("--repeat", type=int, default=2, help="best of R runs for each timing")
    args = ap.parse_args()

    from dataprep.io.scan import Source
    from dataprep.jobs.tencrop import tencrop
    from dataprep.records import Record, make_key

    photos = args.photos or real_photos(args.cache)
    files = jpeg_files(photos)
    if not files:
        sys.exit(f"no JPEG files under {photos}")
    records = [Record(make_key(str(p.relative_to(photos))), str(p), 0, "all") for p in files]
    mpix = sum(Image.open(p).size[0] * Image.open(p).size[1] for p in files) / len(files) / 1e6
    print(f"{len(files)} JPEG photos from {photos} (mean {mpix:.1f} MP), best of {args.repeat}")
    del Source

    work = Path(tempfile.mkdtemp(prefix="dataprep-bench-"))
    results: dict[str, float] = {}
    try:
        def run_plain() -> None:
            out = work / "plain"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            plain_loop(files, out)

        def run_dataprep(jobs: int, views: str = "materialize", exact: bool = False) -> None:
            tencrop("bench", work / f"dp-{views}-{jobs}", records=records, classes=["all"],
                    jobs=jobs, views=views, exact=exact, overwrite=True)

        results["plain"] = min(time_it(run_plain) for _ in range(args.repeat))
        results["dp1"] = min(time_it(lambda: run_dataprep(1)) for _ in range(args.repeat))
        results["dp1exact"] = min(time_it(lambda: run_dataprep(1, exact=True))
                                  for _ in range(args.repeat))
        results["dpN"] = min(time_it(lambda: run_dataprep(args.jobs)) for _ in range(args.repeat))
        run_dataprep(1, views="lazy")
        n = len(files)
        rate = {k: n / v for k, v in results.items()}
        print_table(
            "ten-crop 256/224, JPEG q90 (images/s per core; ratio vs the plain Pillow loop)",
            ["run", "jobs", "seconds", "images/s", "images/s per core", "ratio"],
            [
                ["plain Pillow loop", 1, f"{results['plain']:.2f}", f"{rate['plain']:.1f}",
                 f"{rate['plain']:.1f}", "1.00"],
                ["dataprep tencrop --exact", 1, f"{results['dp1exact']:.2f}",
                 f"{rate['dp1exact']:.1f}", f"{rate['dp1exact']:.1f}",
                 f"{rate['dp1exact'] / rate['plain']:.2f}"],
                ["dataprep tencrop", 1, f"{results['dp1']:.2f}", f"{rate['dp1']:.1f}",
                 f"{rate['dp1']:.1f}", f"{rate['dp1'] / rate['plain']:.2f}"],
                ["dataprep tencrop", args.jobs, f"{results['dpN']:.2f}", f"{rate['dpN']:.1f}",
                 f"{rate['dpN'] / args.jobs:.1f}", f"{rate['dpN'] / args.jobs / rate['plain']:.2f}"],
            ],
        )
        mat = dir_bytes(work / "dp-materialize-1") / n
        lazy = dir_bytes(work / "dp-lazy-1") / n
        raw = 224 * 224 * 3 * 10
        plain_b = dir_bytes(work / "plain") / n
        print_table(
            "bytes per record (ten views of 224x224)",
            ["layout", "bytes/record", "vs raw pixels", "vs materialized"],
            [
                ["raw-pixel LMDB (224*224*3*10)", f"{raw:,.0f}", "1.00", f"{raw / mat:.2f}"],
                ["plain loop JPEG files", f"{plain_b:,.0f}", f"{plain_b / raw:.3f}",
                 f"{plain_b / mat:.2f}"],
                ["dataprep materialized (WebDataset)", f"{mat:,.0f}", f"{mat / raw:.3f}", "1.00"],
                ["dataprep lazy views (WebDataset)", f"{lazy:,.0f}", f"{lazy / raw:.3f}",
                 f"{lazy / mat:.3f} ({mat / lazy:.1f}x fewer)"],
            ],
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
