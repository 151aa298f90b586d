"""``dataprep stats``, ``dataprep augment`` and ``dataprep preview``: parse flags, call one
library function (:func:`dataprep.jobs.stats.stats`, :func:`dataprep.jobs.augment.augment`,
:func:`dataprep.jobs.preview.preview`), render its result. No image logic lives here.

:mod:`dataprep.cli` registers these commands by name; importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from dataprep.cli_options import (
    MAX_PIXELS_HELP,
    echo_report,
    image_options,
    input_options,
    jitter_options,
    output_options,
    read_options,
    reports_errors,
    run_options,
    seed_option,
)
from dataprep.errors import UsageError
from dataprep.io.decode import DEFAULT_MAX_PIXELS
from dataprep.ops.resize import INTERPOLATIONS

# Flags of `augment` that only shape the stored output; a preview reads a recipe's [augment]
# table without them (it writes no shards).
OUTPUT_ONLY = {"format", "image_format", "quality", "max_count", "max_bytes", "jobs", "on_error",
               "overwrite", "dry_run", "max_disk", "root", "split", "lmdb_layout", "fingerprint",
               "max_aspect", "backend", "scheduler"}


def augment_options(f: Callable) -> Callable:
    """Geometry and noise flags shared by augment and preview (see ``build_augment``)."""
    opts = [
        click.option("--noise", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     metavar="SIGMA",
                     help="Add Gaussian noise of this standard deviation (pixels in [0, 1])."),
        click.option("--blur", is_flag=True,
                     help="Gaussian blur, sigma ~ U(0.1, 2.0) pixels, on half of the copies."),
        click.option("--shift", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                     metavar="F",
                     help="Translate by up to F of the width and height (whole pixels)."),
        click.option("--rotate", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     metavar="DEG", help="Rotate by an angle ~ U(-DEG, DEG) degrees."),
        click.option("--hflip", is_flag=True, help="Mirror left-right with probability 0.5."),
        click.option("--random-resized-crop", is_flag=True,
                     help="torchvision RandomResizedCrop to --crop (area 8-100%, aspect "
                          "3/4-4/3)."),
        click.option("--scale-jitter", default=None, metavar="LO,HI",
                     help="Resize so the shorter side is ~ U{LO..HI} (e.g. 256,480), then a "
                          "random --crop square (VGG / ResNet scale augmentation)."),
    ]
    for opt in opts:
        f = opt(f)
    return jitter_options(f)


# --- stats ---------------------------------------------------------------------------------


@click.command("stats")
@click.argument("src")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the statistics, e.g. stats.json.")
@click.option("--split", default=None,
              help="Only this split (of a manifest folder written by `split`, or of shards); "
                   "PCA lighting wants the train split's statistics.")
@click.option("--short-side", type=click.IntRange(min=1), default=None,
              help="Resize each image (never up) so its shorter side is this long first: the "
                   "statistics of what training sees, and faster.")
@click.option("--exact", is_flag=True,
              help="With --short-side, decode JPEGs in full (no DCT-domain draft).")
@read_options("The result does not depend on it.")
@reports_errors
def stats(src, out, split, short_side, exact, max_pixels, root, on_error, jobs):
    """Per-channel mean/std and the RGB covariance eigen decomposition of SRC, for
    normalization and PCA lighting.

    \b
    stats.json holds, for pixels scaled to [0, 1]:
      mean, std      per channel (R, G, B), population std
      eigval         eigenvalues of the RGB covariance, descending
      eigvec         3x3, eigenvectors as columns (RGB rows)
      cov            the covariance itself
      num_images, num_pixels, num_skipped
    The numbers are exact integer sums merged across workers: the same for any --jobs.
    """
    from dataprep.jobs.stats import stats as compute

    result = compute(src, out, split=split, root=root, jobs=jobs, short_side=short_side,
                     exact=exact, max_pixels=max_pixels, on_error=on_error)
    for line in result.lines():
        click.echo(line)


# --- augment -------------------------------------------------------------------------------


@click.command("augment")
@click.argument("src")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--copies", "-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Augmented copies per image, keys {key}_a0 .. {key}_a{K-1}.")
@click.option("--crop", type=click.IntRange(min=1), default=None,
              help="Side of a random square crop (the output size with --scale-jitter or "
                   "--random-resized-crop) [default: no crop].")
@augment_options
@click.option("--short-side", type=click.IntRange(min=1), default=None,
              help="Resize so the shorter side is this long before augmenting [default: keep "
                   "the size].")
@click.option("--upscale/--no-upscale", default=False, show_default=True,
              help="With --short-side, enlarge images whose shorter side is below it.")
@image_options
@input_options
@output_options()
@seed_option()
@run_options
@reports_errors
def augment(inputs, out, output, run, **flags):
    """Write K deterministic augmented copies of every image of SRC (offline augmentation).

    Copy k of an image is drawn from its own generator (seed, key, copy k): the same command
    gives the same bytes, whatever --jobs. Each copy's json holds source, copy and the drawn
    parameters (augment). Stages run in a fixed order: crop (scale jitter / random resized /
    random), flip, rotate, shift, color jitter, PCA lighting, blur, noise.
    """
    from dataprep.jobs.augment import AugmentTask
    from dataprep.jobs.job import write_records

    task = AugmentTask.build(**flags)  # the flags are its keyword arguments, by name
    echo_report(write_records("augment", inputs, task, out, output, run))


# --- preview -------------------------------------------------------------------------------


def _has_table(recipe: dict[str, Any], verb: str) -> bool:
    return isinstance(recipe.get(verb), dict) or any(
        isinstance(v, dict) and v.get("verb") == verb for v in recipe.values())


def _preview_recipe(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """A recipe's [preview] table, else its [augment] table without the output-only keys: a
    preview shows what an augment recipe does."""
    if not value:
        return
    from dataprep.recipe import check_keys, load_recipe, table_for, verb_names

    try:
        recipe = load_recipe(value)
        verb = "augment" if _has_table(recipe, "augment") and not _has_table(
            recipe, "preview") else "preview"
        table = table_for(recipe, verb, f"recipe {value}", verb_names(ctx))
        if verb == "augment":
            table = {k: v for k, v in table.items() if k not in OUTPUT_ONLY}
        allowed = {p.name for p in ctx.command.params if p.name and p.name != "recipe"}
        check_keys(table, allowed, f"recipe {value} [{verb}]")
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    ctx.default_map = {**(ctx.default_map or {}), **table}


@click.command("preview")
@click.argument("src")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Image to write: .png (or .jpg / .webp).")
@click.option("--count", "-n", type=click.IntRange(min=1), default=4, show_default=True,
              help="Images to show (one row each), spread over the classes.")
@click.option("--copies", "-k", type=click.IntRange(min=0), default=4, show_default=True,
              help="Augmented copies per image (as `augment` writes them).")
@click.option("--views/--no-views", default=True, show_default=True,
              help="Show the ten views (as `tencrop` writes them).")
@click.option("--five", is_flag=True, help="Five views (corners + center), no mirrored ones.")
@click.option("--cell", type=click.IntRange(min=16), default=112, show_default=True,
              help="Side of each thumbnail in pixels.")
@click.option("--colors", type=click.IntRange(2, 256), default=None,
              help="Write a palette PNG of this many colors (3-4x smaller, e.g. for docs) "
                   "[default: full RGB].")
@click.option("--short-side", type=click.IntRange(min=1), default=None,
              help="Short side before cropping [default: 256 for the views, the original "
                   "size for the copies, as tencrop and augment do].")
@click.option("--crop", type=click.IntRange(min=1), default=None,
              help="View size, and the copies' crop [default: 224 for the views, no crop for "
                   "the copies].")
@augment_options
@click.option("--upscale/--no-upscale", default=False, show_default=True,
              help="With --short-side, enlarge small images for the copies.")
@click.option("--interpolation", type=click.Choice(sorted(INTERPOLATIONS)),
              default="bilinear", show_default=True, help="Resampling filter.")
@click.option("--exact", is_flag=True, help="Decode JPEGs in full (no DCT-domain draft).")
@click.option("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, show_default=True,
              help=MAX_PIXELS_HELP)
@click.option("--split", default=None, help="Only images of this split.")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Folder that relative paths of a list file resolve against.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the jitter (the same seed shows the same copies augment writes).")
@click.option("--recipe", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_preview_recipe,
              help="A recipe to show: its [preview] table, else its [augment] table "
                   "(flags given here win).")
@reports_errors
def preview(src, out, count, copies, views, five, cell, colors, short_side, crop, color_jitter,
            pca_lighting, stats, scale_jitter, random_resized_crop, hflip, rotate, shift, blur,
            noise, upscale, interpolation, exact, max_pixels, split, root, seed):
    """Contact sheet of a few images of SRC: each original, its ten views and K augmented
    copies, labelled, so you see what a recipe does before running it."""
    from dataprep.jobs.preview import preview as draw

    result = draw(src, out, count=count, copies=copies, views=views, five=five, cell=cell,
                  seed=seed, short_side=short_side, crop=crop, color_jitter=color_jitter,
                  pca_lighting=pca_lighting, stats=stats, scale_jitter=scale_jitter,
                  random_resized_crop=random_resized_crop, hflip=hflip, rotate=rotate,
                  shift=shift, blur=blur, noise=noise, interpolation=interpolation, exact=exact,
                  upscale=upscale, max_pixels=max_pixels, root=root, split=split,
                  colors=colors)
    for line in result.lines():
        click.echo(line)
