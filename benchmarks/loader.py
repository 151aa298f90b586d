"""Trainer input pipeline: dataprep's shard stream vs torchvision ImageFolder + DataLoader.

Both read the same images, short-side resized to 256 by ``dataprep resize --upscale`` (the
real photos, ``--copies`` times): dataprep from its WebDataset shards, torchvision from the
same JPEG bytes extracted into an ``ImageFolder`` tree. Both decode, take a random 224 crop,
flip at random and return uint8 NCHW tensors in batches of 64, with the same number of worker
processes. An epoch is timed from building the dataset to the last batch, worker start-up
included (non-persistent workers, as each epoch starts them again).

    python benchmarks/loader.py [--photos DIR] [--jobs WORKERS] [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Timing,
    add_common_args,
    fresh_dir,
    image_files,
    interleaved,
    photo_dir,
    print_profile,
    print_table,
    repeated_tree,
    repeats,
    time_call,
    verdict,
    work_dir,
)

TARGET = 1.5
BATCH = 64


def make_inputs(farm: Path, work: Path, jobs: int, workers: int) -> tuple[Path, Path, int]:
    """(shard folder, ImageFolder root, images): the same encoded images in both."""
    from dataprep.io.readers import iter_samples
    from dataprep.jobs.tencrop import resize

    n = len(image_files(farm))
    shards = work / "shards"
    # a few shards per worker, as a real data set has
    resize(farm, shards, short_side=256, upscale=True, quality=90, jobs=jobs, overwrite=True,
           max_count=max(1, math.ceil(n / (4 * workers))))
    folder = fresh_dir(work / "imagefolder")
    count = 0
    for s in iter_samples(shards, "train"):
        d = folder / str(s.meta["class_name"])
        d.mkdir(exist_ok=True)
        (d / f"{s.key}.{s.ext}").write_bytes(s.image)
        count += 1
    return shards, folder, count


def dataprep_epoch(shards: Path, workers: int, seed: int = 0, decoder: str = "auto") -> int:
    """One epoch of the trainer's stream. ``decoder``: auto (simplejpeg where it applies, else
    torchvision's), ``torchvision`` (as if simplejpeg were not installed) or ``pillow`` (no fast
    path); the workers fork with the setting."""
    from dataprep.train import data
    from dataprep.train.data import ShardStream, batches_per_epoch, make_loader
    from dataprep.train.pixels import Augment
    from dataprep.train.sources import resolve_source

    data._decode_jpeg = False if decoder == "pillow" else None
    data._simplejpeg = False if decoder in ("torchvision", "pillow") else None

    source = resolve_source(str(shards), "train")
    batches = batches_per_epoch(source.num_samples or 0, 1, BATCH)
    stream = ShardStream(source.parts, train=True, batch_size=BATCH,
                         aug=Augment(img_size=224, short_side=256), seed=seed, batches=batches)
    seen = 0
    try:
        for x, _ in make_loader(stream, workers):
            seen += x.shape[0]
    finally:
        data._decode_jpeg = data._simplejpeg = None
    return seen


def torchvision_epoch(folder: Path, workers: int) -> int:
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomCrop(224), transforms.RandomHorizontalFlip(),
                             transforms.PILToTensor()])
    ds = datasets.ImageFolder(str(folder), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True,
                                         num_workers=workers, drop_last=True)
    seen = 0
    for x, _ in loader:
        seen += x.shape[0]
    return seen


def profile_epoch(shards: Path) -> pstats.Stats:
    """One dataprep epoch in this process (no workers) under cProfile."""
    prof = cProfile.Profile()
    prof.enable()
    dataprep_epoch(shards, 0)
    prof.disable()
    return pstats.Stats(prof)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(ap, repeat=5)
    ap.add_argument("--copies", type=int, default=None,
                    help="each photo this many times [12; 1 with --quick]")
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                    help="profile one dataprep epoch when the target is missed (auto)")
    args = ap.parse_args()
    import torch

    photos = photo_dir(args)
    copies = args.copies or (1 if args.quick else 12)
    farm = repeated_tree(image_files(photos), photos, args.cache / f"resize-x{copies}", copies)
    work = work_dir(args.cache, "loader")
    workers, repeat = args.jobs, repeats(args)
    shards, folder, n = make_inputs(farm, work, args.jobs, workers)
    print(f"\n{n} images (the photos of {photos} x {copies}, short side 256), batches of {BATCH}, "
          f"{workers} workers, best of {repeat}")
    counts: dict[str, int] = {}

    def timed(name: str, fn) -> Timing:  # type: ignore[no-untyped-def]
        def run() -> None:
            counts[name] = fn()
        return time_call(run)

    import torchvision.datasets  # noqa: F401

    import dataprep.train.data  # noqa: F401  (imports are not part of an epoch)

    torch.set_num_threads(1)
    best = interleaved({
        "torchvision": lambda: timed("torchvision", lambda: torchvision_epoch(folder, workers)),
        "dataprep": lambda: timed("dataprep", lambda: dataprep_epoch(shards, workers)),
        "torchvision decoder": lambda: timed(
            "torchvision decoder", lambda: dataprep_epoch(shards, workers, decoder="torchvision")),
        "pillow": lambda: timed("pillow", lambda: dataprep_epoch(shards, workers,
                                                                 decoder="pillow")),
    }, repeat)
    base = counts["torchvision"] / best["torchvision"].wall_s
    rows = []
    for name, label in (("torchvision", "torchvision ImageFolder + DataLoader"),
                        ("dataprep", "dataprep ShardStream (WebDataset shards)"),
                        ("torchvision decoder",
                         "dataprep ShardStream, JPEGs decoded by torchvision.io"),
                        ("pillow", "dataprep ShardStream, JPEGs decoded by Pillow")):
        rate = counts[name] / best[name].wall_s
        rows.append([label, workers, counts[name], f"{best[name].wall_s:.2f}", f"{rate:.1f}",
                     f"{rate / base:.2f}"])
    got = counts["dataprep"] / best["dataprep"].wall_s / base
    print_table(
        "Trainer loader: decode + random crop 224 + flip + uint8 tensor, batch 64",
        ["loader", "workers", "images", "seconds", "images/s", "ratio"],
        rows,
        note=(f"target >= {TARGET:.1f}x torchvision: {got:.2f}x, {verdict(got, TARGET)}. One "
              f"epoch each, best of {repeat}, interleaved; dataset construction and worker "
              "start-up included. The same JPEG bytes: dataprep reads them from "
              f"{len(list(shards.glob('*.tar')))} tar shards, torchvision from files "
              "(`RandomCrop(224), RandomHorizontalFlip(), PILToTensor()`, shuffle, drop_last). "
              "dataprep decodes JPEGs straight into arrays with simplejpeg (libjpeg-turbo; the "
              "train extra), torchvision's decode_jpeg for files with Exif data; the last two "
              "rows force torchvision's decoder for every file, then Pillow, the decoder "
              "ImageFolder uses, to show what each decoder is worth (the pixels are the same)."),
    )
    if args.profile == "always" or (args.profile == "auto" and got < TARGET):
        print_profile(profile_epoch(shards), "dataprep loader profile (one epoch, no workers)")


if __name__ == "__main__":
    main()
