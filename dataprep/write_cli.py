"""``dataprep split``, ``resize``, ``tencrop`` and ``shard``: parse flags, build the task and
the option objects (:mod:`dataprep.cli_options`), call one library function, print its report.
No image logic lives here; :mod:`dataprep.cli` registers these commands.
"""

from __future__ import annotations

import click

from dataprep.cli_options import (
    MAX_PIXELS_HELP,
    echo_report,
    image_options,
    input_options,
    jitter_options,
    output_options,
    reports_errors,
    run_options,
    seed_option,
)
from dataprep.recipe import recipe_callback


@click.command("split")
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


@click.command("resize")
@click.argument("src")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--short-side", type=click.IntRange(min=1), default=256, show_default=True,
              help="Length of the shorter side in pixels (the longer keeps the aspect ratio).")
@click.option("--upscale/--no-upscale", default=False, show_default=True,
              help="Enlarge images whose shorter side is below --short-side.")
@image_options
@input_options
@output_options()
@seed_option()
@run_options
@reports_errors
def resize_cmd(inputs, out, output, run, seed, **fields):
    """Resize every image of SRC so its shorter side is --short-side.

    \b
    Examples:
      dataprep resize splits/val.jsonl -o shards --short-side 256
      dataprep resize images/ -o small --short-side 128 --format folder --image-format png
      dataprep resize images/ -o db --format lmdb --lmdb-layout caffe --max-disk 20GB
    """
    from dataprep.jobs.job import write_records
    from dataprep.jobs.tencrop import ResizeTask

    task = ResizeTask(**fields)  # its fields are the flags, by name (--seed changes nothing)
    echo_report(write_records("resize", inputs, task, out, output, run))


@click.command("tencrop")
@click.argument("src")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--short-side", type=click.IntRange(min=1), default=256, show_default=True,
              help="Resize so the shorter side is this many pixels, before cropping.")
@click.option("--crop", type=click.IntRange(min=1), default=224, show_default=True,
              help="Side of the square views, in pixels.")
@click.option("--five", is_flag=True, help="Five views (corners + center), no mirrored ones.")
@click.option("--hflip/--no-hflip", default=True, show_default=True,
              help="Add the five views of the horizontally flipped image (ten in all).")
@click.option("--flip/--no-flip", default=None, hidden=True, help="Older name of --hflip.")
@click.option("--views", type=click.Choice(["materialize", "lazy"]), default="materialize",
              show_default=True,
              help="materialize: one sample per view ({key}_v{i}); lazy: store the resized image "
                   "once with the view spec, readers expand it (about 5-8x fewer bytes).")
@click.option("--upscale/--no-upscale", default=True, show_default=True,
              help="Enlarge images whose shorter side is below --short-side (else images "
                   "smaller than --crop are skipped).")
@jitter_options
@image_options
@input_options
@output_options()
@seed_option()
@run_options
@reports_errors
def tencrop_cmd(inputs, out, output, run, hflip, flip, **flags):
    """Resize, then cut ten views: four corners and center, and the same of the mirror image.

    The order is torchvision's TenCrop: top-left, top-right, bottom-left, bottom-right, center,
    then the same five of the horizontally flipped image. --color-jitter / --pca-lighting
    jitter each materialized view with its own generator (seed, key, view).

    \b
    Examples:
      dataprep tencrop splits/train.jsonl -o shards --short-side 256 --crop 224
      dataprep tencrop splits/train.jsonl -o lazy --views lazy        # one image, 10 views
      dataprep tencrop splits/train.jsonl -o jit --color-jitter 0.4 --pca-lighting 0.1
      dataprep tencrop splits/train.jsonl -o shards --dry-run         # size before writing
    """
    from dataprep.jobs.job import write_records
    from dataprep.jobs.tencrop import TencropTask

    task = TencropTask.build(flip=_mirrored_views(hflip, flip), **flags)  # flags by name
    echo_report(write_records("tencrop", inputs, task, out, output, run))


def _mirrored_views(hflip: bool, flip: bool | None) -> bool:
    """--hflip, or its older name --flip (also a recipe's ``flip`` key): a flag typed on the
    command line wins over a recipe, as every flag does."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source
    if flip is None or (source("hflip") is ParameterSource.COMMANDLINE
                        and source("flip") is not ParameterSource.COMMANDLINE):
        return hflip
    return flip


@click.command("shard")
@click.argument("src")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder.")
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
              help=MAX_PIXELS_HELP)
@click.option("--max-aspect", type=click.FloatRange(min=1, max=1e9), default=100.0,
              show_default=True,
              help="Refuse images whose longer side is more than this many times the shorter "
                   "(bomb guard).")
@input_options
@output_options(("webdataset", "lmdb"), "Shard format.")
@seed_option()
@run_options
@reports_errors
def shard_cmd(inputs, out, output, run, shuffle, balance, reencode, keep_formats, expand_views,
              image_format, quality, max_pixels, max_aspect, seed):
    """Pack any source into WebDataset tar shards or an LMDB, storing encoded images.

    Every sample gets one image field, --image-format in RGB: e.g. "dataprep shard photos/ -o
    shards/" stores PNGs with alpha as RGB .jpg (composited on white). With --keep-formats each
    file's bytes are kept.

    \b
    Examples:
      dataprep shard images/ -o packed --shuffle --seed 1 --max-bytes 1GB
      dataprep shard splits/train.jsonl -o db --format lmdb --balance oversample
      dataprep shard lazy/ -o views --expand-views     # lazy tencrop views -> samples
    """
    from dataprep.jobs.shard import Packing, ShardTask, shard_records

    task = ShardTask(reencode, image_format, quality, max_pixels, expand_views, max_aspect,
                     keep_formats)
    echo_report(shard_records(inputs, task, out, Packing(shuffle, seed, balance), output, run))
