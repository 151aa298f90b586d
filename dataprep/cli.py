"""The ``dataprep`` command line: each command parses flags, calls one library function and
renders its report. No image logic lives here."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import click

from dataprep import units
from dataprep._version import __version__
from dataprep.errors import DataprepError, MissingSourceError, UsageError, cli_message
from dataprep.recipe import recipe_callback

FORMATS = ("webdataset", "lmdb", "folder")


def parse_size(text: str | int | None) -> int | None:
    """:func:`dataprep.units.parse_size` for click: bad sizes are usage errors (exit 2)."""
    if text is None:
        return None
    try:
        return units.parse_size(text)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


class SizeType(click.ParamType):
    """A size; with ``unit=True`` a bare number (``10``: bytes? GB?) is refused."""
    name = "SIZE"

    def __init__(self, unit: bool = False) -> None:
        self.unit = unit

    def convert(self, value, param, ctx):
        if self.unit and isinstance(value, (str, int)) and re.fullmatch(
                r"\s*(\d+\.?\d*|\.\d+)\s*", str(value)):
            self.fail(f"{str(value).strip()} has no unit; say {str(value).strip()}GB or "
                      f"{str(value).strip()}MB", param, ctx)
        return parse_size(value)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    ctx.meta[f"dataprep.{param.name}"] = value


def read_options(jobs_help: str) -> Callable[[Callable], Callable]:
    """--max-pixels, --root, --on-error, --jobs, --recipe: the options of a verb that reads
    a source and writes a report of it (stats, audit). ``jobs_help``: what --jobs changes."""
    from dataprep.io.decode import DEFAULT_MAX_PIXELS

    def decorate(f: Callable) -> Callable:
        for option in reversed((
            click.option("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                         show_default=True,
                         help="Refuse images with more pixels (decompression bomb guard)."),
            click.option("--root", type=click.Path(file_okay=False), default=None,
                         help="Folder that relative paths of a list file resolve against."),
            click.option("--on-error", type=click.Choice(["skip", "raise"]), default="skip",
                         show_default=True,
                         help="skip: unreadable images are counted and listed in "
                              "errors.jsonl; raise: stop."),
            click.option("--jobs", "-j", type=int, default=None,
                         help=f"Worker processes [default: all cores]. {jobs_help}"),
            click.option("--recipe", type=click.Path(dir_okay=False), is_eager=True,
                         expose_value=False, callback=recipe_callback,
                         help="TOML file of defaults for these flags (flags given here win)."),
        )):
            f = option(f)
        return f
    return decorate


def cluster_options(f: Callable) -> Callable:
    """--backend and --scheduler/--address: where the worker tasks run (see dataprep.cluster)."""
    from dataprep.cluster import BACKENDS

    f = click.option("--scheduler", "--address", "scheduler", default=None, metavar="ADDRESS",
                     expose_value=False, callback=_remember,
                     help="Address of an existing Dask scheduler (tcp://host:8786) or Ray "
                          "cluster (host:6379) for --backend dask|ray [default: start a local "
                          "one].")(f)
    f = click.option("--backend", type=click.Choice(BACKENDS), default="loky",
                     show_default=True, expose_value=False, callback=_remember,
                     help="loky: processes on this machine (forked on Linux, joblib's loky "
                          "pool elsewhere or with DATAPREP_POOL=loky); dask / ray: the "
                          "workers of a cluster "
                          "(pip install 'dataprep[dist]'). The output is the same.")(f)
    return f


def common_options(f: Callable) -> Callable:
    """--recipe, --jobs, --seed, --on-error, --overwrite, --dry-run, --max-disk, --backend,
    --scheduler, --fingerprint, --lmdb-layout: accepted by every writing verb."""
    f = cluster_options(f)
    f = click.option("--lmdb-layout", type=click.Choice(["dataprep", "caffe"]),
                     default="dataprep", show_default=True, expose_value=False,
                     callback=_remember,
                     help="Layout of --format lmdb output. dataprep: keys %08d.image / .cls / "
                          ".json. caffe: what Caffe's convert_imageset --encoded writes (keys "
                          "%08d_<key>, values caffe.Datum with the encoded image), read by "
                          "Caffe's and DALI's LMDB readers, e.g. --format lmdb --lmdb-layout "
                          "caffe.")(f)
    f = click.option("--fingerprint", type=click.Choice(["stat", "content"]), default="stat",
                     show_default=True, expose_value=False, callback=_remember,
                     help="How a rerun tells whether the inputs changed: stat (each file's "
                          "path, size and modification time) or content (the sha256 of its "
                          "bytes; reads every input once more).")(f)
    f = click.option("--overwrite", is_flag=True,
                     help="Replace earlier output of the same split (default: a rerun of the "
                          "same command resumes or skips; another command is refused).")(f)
    f = click.option("--dry-run", is_flag=True,
                     help="Estimate the output size and print the plan; write nothing.")(f)
    f = click.option("--max-disk", type=SizeType(unit=True), default=None,
                     help="Refuse to start when the estimated output exceeds this size, with a "
                          "unit (e.g. 50GB, 500MB, 2GiB); free space is always checked.")(f)
    f = click.option("--on-error", type=click.Choice(["skip", "raise"]), default="skip",
                     show_default=True,
                     help="skip: unreadable images are counted and listed in errors.jsonl; "
                          "raise: stop at the first one.")(f)
    f = click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed for every random choice (same seed, same bytes).")(f)
    f = click.option("--jobs", "-j", type=int, default=None,
                     help="Worker processes [default: all cores]; 0 or -1: all cores, -2: all "
                          "but one (joblib's rule). Output does not depend on it.")(f)
    f = click.option("--recipe", type=click.Path(dir_okay=False), is_eager=True,
                     expose_value=False, callback=recipe_callback,
                     help="TOML file of defaults for these flags (flags given here win).")(f)
    return f


def image_options(f: Callable) -> Callable:
    """Decode / resize / encode flags shared by resize and tencrop."""
    from dataprep.ops.resize import INTERPOLATIONS

    opts = [
        click.option("--max-pixels", type=int, default=178_956_970, show_default=True,
                     help="Refuse images with more pixels (decompression bomb guard)."),
        click.option("--max-aspect", type=click.FloatRange(min=1, max=1e9), default=100.0,
                     show_default=True,
                     help="Refuse images whose longer side is more than this many times the "
                          "shorter (bomb guard, with --max-pixels on the resized size too)."),
        click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True,
                     help="JPEG/WebP quality of the stored images."),
        click.option("--image-format", type=click.Choice(["jpg", "png", "webp"]), default="jpg",
                     show_default=True, help="Encoding of the stored images (never raw pixels)."),
        click.option("--exact", is_flag=True,
                     help="Decode JPEGs in full (no DCT-domain draft): pixels then equal "
                          "torchvision's Resize on the full image; slower."),
        click.option("--interpolation", type=click.Choice(sorted(INTERPOLATIONS)),
                     default="bilinear", show_default=True,
                     help="Resampling filter (Pillow, antialiased, as torchvision on PIL)."),
        click.option("--split", default=None,
                     help="Name of the output split [default: the manifest's split, else train]."),
        click.option("--root", type=click.Path(file_okay=False), default=None,
                     help="Folder that relative paths of a list file resolve against."),
        click.option("--max-bytes", type=SizeType(), default=None,
                     help="Start a new shard before one exceeds this size (e.g. 1GB)."),
        click.option("--max-count", type=click.IntRange(min=1), default=10_000,
                     show_default=True, help="Samples per shard at most."),
        click.option("--format", "format", type=click.Choice(FORMATS), default="webdataset",
                     show_default=True, help="Output sink."),
    ]
    for opt in opts:
        f = opt(f)
    return f


def jitter_options(f: Callable) -> Callable:
    """Color flags shared by tencrop, augment and preview (library: ``build_augment``)."""
    opts = [
        click.option("--stats", type=click.Path(dir_okay=False), default=None,
                     help="stats.json from `dataprep stats` (on the train split): eigval/eigvec "
                          "of PCA lighting [default: the ImageNet constants]."),
        click.option("--pca-lighting", type=click.FloatRange(min=0), default=0.0,
                     show_default=True, metavar="SIGMA",
                     help="AlexNet PCA lighting: add eigvec @ (alpha * eigval), alpha ~ N(0, "
                          "SIGMA) per image (0.1 in AlexNet; 0: off)."),
        click.option("--color-jitter", default=None, metavar="B,C,S,H",
                     help="Random brightness, contrast, saturation, hue as torchvision "
                          "ColorJitter, e.g. 0.4,0.4,0.4,0.1 (one value V means V,V,V,0)."),
    ]
    for opt in opts:
        f = opt(f)
    return f


def reports_errors(f: Callable) -> Callable:
    """Turn library errors into clean click errors (no traceback for user mistakes)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dataprep.cluster import cluster
        from dataprep.io.writers import lmdb_layout
        from dataprep.jobs.common import fingerprint_mode

        meta = click.get_current_context().meta
        try:
            with cluster(meta.get("dataprep.backend", "loky"), meta.get("dataprep.scheduler"),
                         jobs=kwargs.get("jobs")), \
                    fingerprint_mode(meta.get("dataprep.fingerprint", "stat")), \
                    lmdb_layout(meta.get("dataprep.lmdb_layout", "dataprep")):
                return f(*args, **kwargs)
        except (DataprepError, OSError) as exc:
            if (message := cli_message(exc)) is None:
                raise
            raise click.ClickException(message) from exc

    return wrapper


def _all_skipped(report: Any) -> bool:
    """Inputs came in and every one was skipped: the output holds nothing usable."""
    return bool(not report.dry_run and report.records_in and not report.samples_out
                and report.skipped >= report.records_in)


def echo_report(report: Any) -> None:
    """Print a job's summary; fail (exit 1) when every input was skipped, so scripts notice an
    output with nothing in it."""
    for line in report.lines():
        click.echo(line)
    if _all_skipped(report):
        n = report.records_in
        raise click.ClickException(
            f"{'the only input was' if n == 1 else f'all {n:,} inputs were'} skipped, so "
            "nothing usable was written; "
            f"the reasons are in {os.path.join(report.out_dir, 'errors.jsonl')}")


class DataprepGroup(click.Group):
    """The verbs: a source path that does not exist exits 2 in every verb, as a SRC that click
    checks itself (a usage error), not 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if isinstance(exc.__cause__, MissingSourceError):
                exc.exit_code = 2
            raise


@click.group(cls=DataprepGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dataprep")
def cli() -> None:
    """Turn folders of labelled images into training-ready shards, and train on them.

    \b
    Typical chain:
      dataprep split images/ -o splits --ratio 0.8
      dataprep tencrop splits/train.jsonl -o shards --short-side 256 --crop 224
      dataprep resize splits/val.jsonl -o shards --short-side 256
    SRC may be an image folder (root/<class>/<file>), a list file (path label), a .jsonl
    manifest, a WebDataset directory or brace pattern, or an LMDB.
    """


@cli.command("split")
@click.argument("src", type=click.Path(exists=True))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder for train.jsonl, val.jsonl (test.jsonl) and classes.json.")
@click.option("--ratio", type=float, default=0.8, show_default=True,
              help="Fraction of each class that goes to train.")
@click.option("--test-ratio", type=float, default=0.0, show_default=True,
              help="Fraction of each class for test.jsonl (0: no test split).")
@click.option("--per-class-limit", type=int, default=None,
              help="Draw at most N images per class (seeded) before splitting.")
@click.option("--group-by", default=None, metavar="REGEX",
              help="Records whose paths match the same group (first capture group) stay in one "
                   "split, e.g. '(\\w+)_\\d+\\.jpg$' keeps near-duplicates together. "
                   "duplicates / near-duplicates: the clusters `dataprep audit` finds "
                   "(identical pixels / near-duplicate hashes) stay in one split.")
@click.option("--audit", "audit_dir", type=click.Path(file_okay=False, exists=True),
              default=None,
              help="With --group-by duplicates|near-duplicates: reuse this `dataprep audit` "
                   "folder's features and threshold [default: hash the images now].")
@click.option("--jobs", "-j", type=int, default=None,
              help="Workers hashing images for --group-by duplicates|near-duplicates "
                   "[default: all cores].")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Folder that relative paths of a list file resolve against.")
@click.option("--balance", type=click.Choice(["oversample", "undersample"]), default=None,
              help="Balance the classes of the train split: repeat images of smaller classes "
                   "({key}_r{n}) up to the largest, or keep a seeded choice of each class down "
                   "to the smallest. val/test are not touched.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier split in -o.")
@click.option("--recipe", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=recipe_callback, help="TOML file of defaults for these flags.")
@reports_errors
def split_cmd(src, out, ratio, test_ratio, per_class_limit, group_by, audit_dir, jobs, balance,
              root, seed, overwrite):
    """Stratified, seeded train/val(/test) split of SRC into .jsonl manifests.

    Per class, the first round(ratio * n) images of a seeded hash ranking go to train; every
    class with two or more images keeps at least one in each split. The result does not depend
    on the order of the input.
    """
    from dataprep.jobs.split import split

    result = split(src, out, ratio=ratio, test_ratio=test_ratio, seed=seed,
                   per_class_limit=per_class_limit, group_by=group_by, root=root,
                   overwrite=overwrite, balance=balance, jobs=jobs, audit=audit_dir)
    for line in result.lines():
        click.echo(line)


@cli.command("resize")
@click.argument("src")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--short-side", type=click.IntRange(min=1), default=256, show_default=True,
              help="Target length of the shorter side (the longer keeps the aspect ratio).")
@click.option("--upscale/--no-upscale", default=False, show_default=True,
              help="Enlarge images whose shorter side is below --short-side.")
@image_options
@common_options
@reports_errors
def resize_cmd(src, out, short_side, upscale, format, max_count, max_bytes, root, split,
               interpolation, exact, image_format, quality, max_pixels, max_aspect, jobs, seed,
               on_error, overwrite, dry_run, max_disk):
    """Resize every image of SRC so its shorter side is --short-side."""
    from dataprep.jobs.tencrop import resize

    echo_report(resize(src, out, short_side=short_side, fmt=format, interpolation=interpolation,
                       exact=exact, upscale=upscale, image_format=image_format, quality=quality,
                       max_pixels=max_pixels, max_aspect=max_aspect, max_count=max_count,
                       max_bytes=max_bytes, jobs=jobs, on_error=on_error, overwrite=overwrite,
                       split=split, root=root, max_disk=max_disk, dry_run=dry_run,
                       log=click.echo))


@cli.command("tencrop")
@click.argument("src")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--short-side", type=click.IntRange(min=1), default=256, show_default=True,
              help="Resize so the shorter side is this long, before cropping.")
@click.option("--crop", type=click.IntRange(min=1), default=224, show_default=True,
              help="Side of the square views.")
@click.option("--five", is_flag=True, help="Five views (corners + center), no mirrored ones.")
@click.option("--flip/--no-flip", default=True, show_default=True,
              help="Add the five views of the mirrored image (ten in all).")
@click.option("--views", type=click.Choice(["materialize", "lazy"]), default="materialize",
              show_default=True,
              help="materialize: one sample per view ({key}_v{i}); lazy: store the resized image "
                   "once with the view spec, readers expand it (about 5-8x fewer bytes).")
@click.option("--upscale/--no-upscale", default=True, show_default=True,
              help="Enlarge images whose shorter side is below --short-side (else images "
                   "smaller than --crop are skipped).")
@jitter_options
@image_options
@common_options
@reports_errors
def tencrop_cmd(src, out, short_side, crop, five, flip, views, upscale, color_jitter,
                pca_lighting, stats, format, max_count, max_bytes, root, split, interpolation,
                exact, image_format, quality, max_pixels, max_aspect, jobs, seed, on_error,
                overwrite, dry_run, max_disk):
    """Resize, then cut ten views: four corners and center, and the same of the mirror image.

    The order is torchvision's TenCrop: top-left, top-right, bottom-left, bottom-right, center,
    then the same five of the horizontally flipped image. --color-jitter / --pca-lighting
    jitter each materialized view with its own generator (seed, key, view).
    """
    from dataprep.jobs.tencrop import tencrop

    echo_report(tencrop(src, out, short_side=short_side, crop=crop, five=five, flip=flip,
                        views=views, fmt=format, interpolation=interpolation, exact=exact,
                        upscale=upscale, image_format=image_format, quality=quality,
                        max_pixels=max_pixels, max_aspect=max_aspect, max_count=max_count,
                        max_bytes=max_bytes, jobs=jobs, on_error=on_error, overwrite=overwrite,
                        split=split, root=root, max_disk=max_disk, dry_run=dry_run,
                        log=click.echo, color_jitter=color_jitter, pca_lighting=pca_lighting,
                        stats=stats, seed=seed))


@cli.command("shard")
@click.argument("src")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--format", "format", type=click.Choice(["webdataset", "lmdb"]),
              default="webdataset", show_default=True, help="Shard format.")
@click.option("--max-count", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Samples per shard at most.")
@click.option("--max-bytes", type=SizeType(), default=None,
              help="Start a new shard before one exceeds this size (e.g. 1GB).")
@click.option("--shuffle", is_flag=True, help="Shuffle the samples (with --seed) before packing.")
@click.option("--balance", type=click.Choice(["oversample", "undersample"]), default=None,
              help="Balance the classes of each split first: repeat images of smaller classes "
                   "({key}_r{n}) up to the largest, or keep a seeded choice of each class down "
                   "to the smallest; prints the per-class counts.")
@click.option("--reencode", is_flag=True,
              help="Re-encode every image (default: files already in --image-format, RGB and "
                   "upright are stored byte for byte, the rest re-encoded).")
@click.option("--keep-formats", is_flag=True,
              help="Store JPEG/PNG/WebP files as they are, each under its own field (mixed "
                   ".jpg/.png/.webp, alpha kept). Hugging Face datasets, Ray Data and "
                   "webdataset's to_tuple(\"jpg\", ...) need one image type per output: "
                   "without this flag every sample is --image-format, RGB.")
@click.option("--expand-views", is_flag=True,
              help="Turn lazy view records (tencrop --views lazy) into materialized views.")
@click.option("--image-format", type=click.Choice(["jpg", "png", "webp"]), default="jpg",
              show_default=True, help="The one image field of the output (every sample is "
                                      "stored as it, in RGB), e.g. --image-format png.")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True,
              help="JPEG/WebP quality for re-encoded images.")
@click.option("--max-pixels", type=int, default=178_956_970, show_default=True,
              help="Refuse images with more pixels (decompression bomb guard).")
@click.option("--max-aspect", type=click.FloatRange(min=1, max=1e9), default=100.0,
              show_default=True,
              help="Refuse images whose longer side is more than this many times the shorter "
                   "(bomb guard).")
@click.option("--split", default=None,
              help="Name of the output split [default: the manifest's split, else train].")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Folder that relative paths of a list file resolve against.")
@common_options
@reports_errors
def shard_cmd(src, out, format, max_count, max_bytes, shuffle, balance, reencode, keep_formats,
              expand_views, image_format, quality, max_pixels, max_aspect, split, root, jobs,
              seed, on_error, overwrite, dry_run, max_disk):
    """Pack any source into WebDataset tar shards or an LMDB, storing encoded images.

    Every sample gets one image field, --image-format in RGB: e.g. "dataprep shard photos/ -o
    shards/" stores PNGs with alpha as RGB .jpg (composited on white). With --keep-formats each
    file's bytes are kept.
    """
    from dataprep.jobs.shard import shard

    echo_report(shard(src, out, fmt=format, max_count=max_count, max_bytes=max_bytes,
                      shuffle=shuffle, seed=seed, reencode=reencode, keep_formats=keep_formats,
                      expand_views=expand_views,
                      image_format=image_format,
                      quality=quality, max_pixels=max_pixels, max_aspect=max_aspect, jobs=jobs,
                      on_error=on_error,
                      overwrite=overwrite, split=split, root=root, max_disk=max_disk,
                      dry_run=dry_run, log=click.echo, balance=balance))


@cli.command("run")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option("--src", default=None, help="Override the recipe's src (the images to split).")
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False),
              help="Override the recipe's output folder.")
@click.option("--jobs", "-j", type=int, default=None,
              help="Worker processes [default: all cores]; -2: all but one.")
@click.option("--overwrite", is_flag=True, help="Replace earlier output.")
@cluster_options
@reports_errors
def run_cmd(recipe, src, out, jobs, overwrite):
    """Run a whole chain from a TOML recipe: split, then resize/tencrop/shard per split.

    Images go straight from the sources into the shards: no intermediate image files.
    """
    from dataprep.jobs.run import run

    result = run(recipe, src=src, out=out, jobs=jobs, overwrite=overwrite)
    for line in result.lines():
        click.echo(line)
    empty = [split for split, r in result.reports.items() if _all_skipped(r)]
    if empty:
        which = f"split {empty[0]}" if len(empty) == 1 else f"splits {', '.join(empty)}"
        raise click.ClickException(
            f"every input of {which} was skipped, so nothing usable was written there; the "
            "reasons are in "
            f"{os.path.join(result.reports[empty[0]].out_dir, 'errors.jsonl')}")


def _register_optional() -> None:
    """Commands that live in their own modules (imported cheaply; heavy deps load on use)."""
    import importlib

    for module, names in (("dataprep.train.cli", ("train", "summary", "evaluate")),
                          ("dataprep.jobs.stats_cli", ("stats", "augment", "preview")),
                          ("dataprep.jobs.verify", ("verify_cmd",)),
                          ("dataprep.jobs.audit_cli", ("audit",)),
                          ("dataprep.train.eval_cli", ("evaluate", "learning_curve")),
                          ("dataprep.train.eval_cli", ("predict_cmd",)),
                          ("dataprep.train.sweep", ("sweep_cmd",)),
                          ("dataprep.train.compare", ("compare_cmd",))):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        for name in names:
            cmd = getattr(mod, name, None)
            if isinstance(cmd, click.Command):
                cli.add_command(cmd)


_register_optional()

# One line per verb for `dataprep --help` (click would cut the docstrings' first sentences).
VERB_SUMMARIES = {
    "split": "Stratified, seeded train/val(/test) manifests.",
    "resize": "Resize so the shorter side is --short-side.",
    "tencrop": "Resize, then cut ten (or five) views per image.",
    "shard": "Pack any source into WebDataset or LMDB shards.",
    "run": "Run a whole chain from a TOML recipe.",
    "verify": "Re-read shards: sha256, counts, every image decodes.",
    "stats": "Per-channel mean/std and RGB eigen decomposition.",
    "augment": "Write K seeded augmented copies of every image.",
    "preview": "Contact sheet of originals, views, augmentations.",
    "audit": "Duplicates, leakage, label conflicts, odd images, drift.",
    "train": "Fine-tune a CNN on shards (streams, bounded cache).",
    "evaluate": "Test-time crops, confusion matrix, misclassified.",
    "learning-curve": "Accuracy against training images per class.",
    "predict": "Top-k classes of any images, with a contact sheet.",
    "summary": "Layer output shapes and parameter counts.",
    "sweep": "Train a grid of runs from one TOML, then compare.",
    "compare": "Runs side by side: table, ties, overlaid curves.",
}
for _name, _text in VERB_SUMMARIES.items():
    if _name in cli.commands:
        cli.commands[_name].short_help = _text


INTERRUPTED = "interrupted: run the same command again to resume"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread: the runner's cleanup (unfinished shards
    removed, finished ones kept) runs as for a Ctrl-C, then :func:`main` exits 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _catch_stop_signals(handler: Any) -> None:
    """SIGINT and SIGTERM go to ``handler``, except one this process was started ignoring
    (``nohup``, a background job of a non-interactive shell): that one stays ignored."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, handler)


STOP_GRACE = 5.0  # seconds the running chunks of an interrupted run get to finish


def _stop(exc: BaseException) -> int:
    """After an interrupt: stop the workers, say how to go on, 128 + signal number."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut this short
        signal.signal(signum, signal.SIG_IGN)
    from dataprep.runner import stop_local

    status = 128 + getattr(exc, "signum", signal.SIGINT)
    stopped = stop_local(STOP_GRACE)
    click.echo(INTERRUPTED, err=True)
    if not stopped:  # a pool thread may be blocked for good: leave without joining it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _run(args: list[str] | None) -> int:
    """Run the CLI; click's own output and exit codes for --help, --version, usage (2) and
    other click errors (1); an interrupt exits 130 (SIGINT) or 143 (SIGTERM), no traceback."""
    try:
        cli.main(args=args, prog_name="dataprep", standalone_mode=False)
    except click.exceptions.Exit as exc:  # raised outside invoke (e.g. by a callback)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click's wrapping of an interrupt
            return _stop(exc.__cause__)
        click.echo("Aborted!", err=True)
        return 1
    except KeyboardInterrupt as exc:
        return _stop(exc)
    return 0


def main(args: list[str] | None = None) -> None:
    """The ``dataprep`` command (and ``python -m dataprep``)."""
    _catch_stop_signals(_raise_interrupted)
    sys.exit(_run(args))
