"""How well ``dataprep audit`` finds planted duplicates, and how fast it runs.

Builds a test set from real photos (``/work/real/photos`` when present, else
``examples/photos``): every photo once, and for every ``--every``-th photo planted copies:

    renamed     the same bytes under another name             (exact: bytes)
    relabelled  the same bytes in another class's folder       (exact: bytes; label conflict)
    png         the decoded pixels saved as PNG                (exact: pixels)
    q50, q95    re-encoded as JPEG at quality 50 / 95          (near)
    half        resized to half the size                       (near)
    crop3       cropped by 3 % on every side                   (near)
    mirror      mirrored left-right                            (near)

Then it prints: precision and recall of exact duplicates (bytes, pixels) and of near
duplicates at each Hamming threshold (pairs of images from the same photo are the truth; any
other pair found is a false positive, listed), recall per kind of copy; a planted leak
(``split`` without grouping, audited: planted copies straddle train and val) and the same
split with ``--group-by near-duplicates`` (audited again: none straddles); and audit's
throughput without embeddings, ``-j 1`` and ``-j 2``, in images/s and images/s per core.

    python benchmarks/audit_quality.py [--photos DIR] [--every 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataprep.io.decode import open_image  # noqa: E402
from dataprep.jobs.audit import gather  # noqa: E402
from dataprep.jobs.audit_features import Audited, compute_features  # noqa: E402
from dataprep.jobs.audit_findings import NEAR_THRESHOLD, near_duplicates  # noqa: E402

REAL = Path("/work/real/photos")
MODELS = Path("/work/real/models")
ELPV = Path("/work/real/datasets/elpv")
NEAR_KINDS = ("q50", "q95", "half", "crop3", "mirror")
EXACT_BYTES = ("renamed", "relabelled")


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def build(photos: Path, out: Path, every: int) -> dict[str, tuple[str, str]]:
    """Write the test set into ``out/<class>/``; returns file (relative) -> (origin, kind)."""
    truth: dict[str, tuple[str, str]] = {}
    classes = sorted(p.name for p in photos.iterdir() if p.is_dir())
    files = sorted(f for c in classes for f in (photos / c).iterdir()
                   if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for n, f in enumerate(files):
        cls = f.parent.name
        origin = f"{cls}/{f.name}"
        (out / cls).mkdir(parents=True, exist_ok=True)
        data = f.read_bytes()
        (out / cls / f.name).write_bytes(data)
        truth[f"{cls}/{f.name}"] = (origin, "original")
        if n % every:
            continue
        img = open_image(data)
        other = classes[(classes.index(cls) + 1) % len(classes)]
        (out / other).mkdir(parents=True, exist_ok=True)
        stem = f.stem
        w, h = img.size
        dx, dy = round(w * 0.03), round(h * 0.03)
        planted = {
            f"{cls}/copy_{stem}{f.suffix}": ("renamed", data),
            f"{other}/moved_{stem}{f.suffix}": ("relabelled", data),
            f"{cls}/{stem}_png.png": ("png", _png(img)),
            f"{cls}/{stem}_q50.jpg": ("q50", _jpeg(img, 50)),
            f"{cls}/{stem}_q95.jpg": ("q95", _jpeg(img, 95)),
            f"{cls}/{stem}_half.jpg": ("half", _jpeg(img.resize((max(1, w // 2),
                                                                 max(1, h // 2)),
                                                                Image.Resampling.BILINEAR), 90)),
            f"{cls}/{stem}_crop3.jpg": ("crop3", _jpeg(img.crop((dx, dy, w - dx, h - dy)), 90)),
            f"{cls}/{stem}_mirror.jpg": ("mirror", _jpeg(ImageOps.mirror(img), 90)),
        }
        for rel, (kind, blob) in planted.items():
            (out / rel).write_bytes(blob)
            truth[rel] = (origin, kind)
    return truth


def _rel(img: Audited, root: Path) -> str:
    return str(Path(img.path).relative_to(root.resolve()))


def _pr(found: set, truth: set) -> tuple[float, float]:
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), (tp / len(truth) if truth else 1.0)


def quality(root: Path, truth: dict[str, tuple[str, str]], jobs: int) -> int:
    """Print precision / recall tables; returns the threshold with the best recall at >= 95 %
    precision."""
    stream, _, _, total = gather([root])
    images, _, _ = compute_features(stream, jobs=jobs, total=total, progress=False)
    rel = [_rel(i, root) for i in images]
    origin = [truth[r][0] for r in rel]
    kind = [truth[r][1] for r in rel]
    by_origin: dict[str, list[int]] = defaultdict(list)
    for i, o in enumerate(origin):
        by_origin[o].append(i)
    same = {p for g in by_origin.values() for p in combinations(g, 2)}
    print(f"test set: {len(images)} images from {len(by_origin)} photos; "
          f"{sum(k != 'original' for k in kind)} planted copies")

    def groups(field: str) -> set:
        by: dict[str, list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            by[img.features[field]].append(i)
        return {p for g in by.values() for p in combinations(g, 2)}

    exact_bytes_truth = {(i, j) for i, j in same
                         if {kind[i], kind[j]} <= {"original", *EXACT_BYTES}}
    exact_pixel_truth = {(i, j) for i, j in same
                         if {kind[i], kind[j]} <= {"original", "png", *EXACT_BYTES}}
    print("\n| exact duplicates | true pairs | found | precision | recall |")
    print("|---|---|---|---|---|")
    for name, field, t in (("same bytes", "sha256", exact_bytes_truth),
                           ("same pixels", "pixels", exact_pixel_truth)):
        found = groups(field)
        p, r = _pr(found, t)
        print(f"| {name} | {len(t)} | {len(found)} | {100 * p:.1f} % | {100 * r:.1f} % |")
    print("\n| threshold (bits of 64, both hashes) | pairs found | precision | recall | "
          + " | ".join(f"recall {k}" for k in NEAR_KINDS) + " |")
    print("|---|---|---|---|" + "---|" * len(NEAR_KINDS))
    best = 0
    for t in range(2, 21, 2):
        pairs, _ = near_duplicates(images, t)
        found = {(i, j) for i, j, d in pairs}
        p, r = _pr(found, same)
        per_kind = []
        for k in NEAR_KINDS:
            want = {(i, j) for i, j in same if {kind[i], kind[j]} == {"original", k}}
            per_kind.append(f"{100 * _pr(found, want)[1]:.1f} %")
        print(f"| {t} | {len(found)} | {100 * p:.1f} % | {100 * r:.1f} % | "
              + " | ".join(per_kind) + " |")
        if p >= 0.95:
            best = t
    pairs, _ = near_duplicates(images, NEAR_THRESHOLD)
    false = sorted((d, rel[i], rel[j]) for i, j, d in pairs if (i, j) not in same)
    print(f"\npairs of different photos found at the default {NEAR_THRESHOLD} bits "
          f"({len(false)}):")
    for d, a, b in false[:15]:
        print(f"  {d:2d}  {a}  ~  {b}")
    return best


def leak(root: Path, work: Path, truth: dict[str, tuple[str, str]], jobs: int) -> None:
    """A planted leak found by audit, then prevented by --group-by near-duplicates."""
    from dataprep.jobs.audit import audit
    from dataprep.jobs.split import split

    for group_by in (None, "near-duplicates"):
        name = group_by or "plain"
        splits, out = work / f"splits-{name}", work / f"audit-{name}"
        result = split(root, splits, ratio=0.7, seed=0, group_by=group_by, jobs=jobs)
        found = audit([splits], out, jobs=jobs, sheets=False, progress=False)
        leak = found.findings["leakage"]
        straddling = set()
        for g in found.findings["near_duplicates"]["clusters"]:
            if g["across_splits"]:
                straddling.update(truth[str(Path(m["path"]).relative_to(root.resolve()))][0]
                                  for m in g["members"])
        print(f"\nsplit --group-by {group_by or '(none)'}: "
              + ", ".join(f"{k} {len(v)}" for k, v in result.splits.items())
              + f"; audit: {found.leaks()} near pairs across splits "
              f"({found.exact_leaks()} exact), photos with copies straddling train/val: "
              f"{len(straddling)}; val images with a copy in train: "
              f"{leak['splits'].get('val', {}).get('leaked_near', 0)}")
        for line in result.notes:
            print("  " + line)


def drift(photos: Path, work: Path, weights: Path, elpv: Path, count: int, jobs: int) -> None:
    """A val split of real photos with ``count`` solar-cell images (ELPV) mixed into its classes:
    how many of them the drift ranking puts first (MobileNetV2 ImageNet weights)."""
    from dataprep.jobs.audit import audit

    root = work / "drift"
    files = sorted(f for f in photos.glob("*/*") if f.suffix.lower() in (".jpg", ".jpeg",
                                                                          ".png"))
    classes = sorted({f.parent.name for f in files})
    for n, f in enumerate(files):
        split = "val" if n % 4 == 0 else "train"
        (root / split / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / split / f.parent.name / f.name)
    cells = sorted(elpv.glob("*/*.png"))[:: max(1, len(list(elpv.glob("*/*.png"))) // count)]
    foreign = set()
    for n, f in enumerate(cells[:count]):
        dest = root / "val" / classes[n % len(classes)] / f"elpv_{f.parent.name}_{f.name}"
        shutil.copy(f, dest)
        foreign.add(str(dest.resolve()))
    start = time.perf_counter()
    result = audit([root / "train", root / "val"], work / "drift-audit", jobs=jobs,
                   weights=weights, sheets=True, progress=False)
    seconds = time.perf_counter() - start
    d = result.findings["drift"]
    ranked = [str(Path(m["path"]).resolve()) in foreign for m in d["ranking"]]
    top = sum(ranked[:len(foreign)])
    v = d["splits"]["val"]
    print(f"\ndrift ({weights.name}): val = {v['images'] - len(foreign)} photos + "
          f"{len(foreign)} ELPV solar cells; {top} of the {len(foreign)} farthest from train "
          f"are the solar cells; val score {v['score']:.2f}, far share "
          f"{100 * v['far_share']:.1f} % (5 % for a val drawn like train); "
          f"{seconds:.1f} s with embeddings")
    print("  ranking (X = solar cell): " + "".join("X" if r else "." for r in ranked[:60]))


def throughput(photos: Path, work: Path) -> None:
    from dataprep.jobs.audit import audit

    print("\n| audit (no embeddings) | images | seconds | images/s | images/s per core |")
    print("|---|---|---|---|---|")
    for jobs in (1, 2):
        out = work / f"speed-{jobs}"
        start = time.perf_counter()
        result = audit([photos], out, jobs=jobs, sheets=False, progress=False)
        seconds = time.perf_counter() - start
        n = result.computed
        print(f"| -j {jobs} | {n} | {seconds:.2f} | {n / seconds:.1f} | "
              f"{n / seconds / jobs:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=REAL if REAL.is_dir()
                    else ROOT / "examples" / "photos")
    ap.add_argument("--every", type=int, default=3, help="plant copies of every N-th photo")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="keep the test set here")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--weights", type=Path, default=MODELS / "mobilenet_v2-b0353104.pth",
                    help="MobileNetV2 state_dict for the drift part (skipped when missing)")
    ap.add_argument("--elpv", type=Path, default=ELPV, help="solar-cell images for drift")
    ap.add_argument("--elpv-count", type=int, default=24)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        root = args.keep or work / "set"
        if root.exists():
            shutil.rmtree(root)
        print(f"photos: {args.photos}")
        truth = build(args.photos, root, args.every)
        best = quality(root, truth, args.jobs)
        print(f"\nhighest threshold at >= 95 % precision: {best} bits")
        leak(root, work, truth, args.jobs)
        if args.weights.is_file() and args.elpv.is_dir():
            drift(args.photos, work, args.weights, args.elpv, args.elpv_count, args.jobs)
        else:
            print(f"\ndrift: skipped ({args.weights} or {args.elpv} missing)")
        if not args.skip_speed:
            throughput(args.photos, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
