"""The option groups of the ``dataprep`` verbs, and how a verb reports.

Each writing verb takes three groups, each given to the command as one object built here:
:func:`run_options` -> ``run`` (:class:`dataprep.options.RunOptions`), :func:`output_options`
-> ``output`` (:class:`dataprep.options.OutputSpec`), :func:`input_options` -> ``inputs``
(:class:`dataprep.jobs.job.InputSpec`); the task flags (:func:`image_options`,
:func:`jitter_options`) stay keyword arguments of the command, which builds its task from them.
The flag names are the recipe keys (:mod:`dataprep.recipe`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import Any

import click

from dataprep import units
from dataprep.cluster import cluster
from dataprep.errors import DataprepError, UsageError, cli_message
from dataprep.recipe import recipe_callback

FORMATS = ("webdataset", "lmdb", "folder")
MAX_PIXELS_HELP = ("Refuse an image of more pixels than this (width x height, read from its "
                   "header before anything is decoded: a guard against decompression bombs; "
                   "the default is Pillow's, about 179 megapixels, e.g. 17900x10000).")


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
                         help=MAX_PIXELS_HELP),
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



def _cluster_flags(expose: bool) -> list[Callable[[Callable], Callable]]:
    from dataprep.cluster import BACKENDS

    keep = {} if expose else {"expose_value": False, "callback": _remember}
    return [
        click.option("--backend", type=click.Choice(BACKENDS), default="loky",
                     show_default=True, **keep,
                     help="loky: processes on this machine (forked on Linux, joblib's loky "
                          "pool elsewhere or with DATAPREP_POOL=loky); dask / ray: the "
                          "workers of a cluster "
                          "(pip install 'dataprep[dist]'). The output is the same."),
        click.option("--scheduler", "--address", "scheduler", default=None, metavar="ADDRESS",
                     **keep,
                     help="Address of an existing Dask scheduler (tcp://host:8786) or Ray "
                          "cluster (host:6379) for --backend dask|ray [default: start a local "
                          "one]."),
    ]


def cluster_options(f: Callable) -> Callable:
    """--backend and --scheduler/--address: where the worker tasks run (see dataprep.cluster);
    :func:`reports_errors` runs the verb inside that cluster."""
    return _apply(f, _cluster_flags(expose=False))


def _apply(f: Callable, options: list[Callable[[Callable], Callable]]) -> Callable:
    """Decorate ``f`` with ``options``, the first one listed first in --help."""
    for option in reversed(options):
        f = option(f)
    return f


def _grouped(f: Callable, names: tuple[str, ...], key: str,
             build: Callable[..., Any]) -> Callable:
    """``f`` called with the click parameters ``names`` replaced by one object ``key``:
    ``build(**those parameters)``."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            kwargs[key] = build(**{name: kwargs.pop(name) for name in names})
        except DataprepError as exc:  # e.g. --lmdb-layout caffe without --format lmdb
            raise click.ClickException(cli_message(exc) or str(exc)) from exc
        return f(*args, **kwargs)

    return wrapper


def run_options(f: Callable) -> Callable:
    """--recipe, --jobs, --on-error, --max-disk, --dry-run, --overwrite, --fingerprint,
    --backend, --scheduler of every writing verb, given to the command as ``run``:
    :class:`dataprep.options.RunOptions` (its log: the terminal)."""
    from dataprep.options import RunOptions

    names = ("jobs", "on_error", "max_disk", "dry_run", "overwrite", "fingerprint", "backend",
             "scheduler")
    f = _grouped(f, names, "run", lambda **kw: RunOptions(**kw, log=click.echo))
    return _apply(f, [
        click.option("--recipe", type=click.Path(dir_okay=False), is_eager=True,
                     expose_value=False, callback=recipe_callback,
                     help="TOML file of defaults for these flags (flags given here win)."),
        click.option("--jobs", "-j", type=int, default=None,
                     help="Worker processes [default: all cores]; 0 or -1: all cores, -2: all "
                          "but one (joblib's rule). Output does not depend on it."),
        click.option("--on-error", type=click.Choice(["skip", "raise"]), default="skip",
                     show_default=True,
                     help="skip: unreadable images are counted and listed in errors.jsonl; "
                          "raise: stop at the first one."),
        click.option("--max-disk", type=SizeType(unit=True), default=None,
                     help="Refuse to start when the estimated output exceeds this size, with a "
                          "unit (e.g. 50GB, 500MB, 2GiB); free space is always checked."),
        click.option("--dry-run", is_flag=True,
                     help="Estimate the output size and print the plan; write nothing."),
        click.option("--overwrite", is_flag=True,
                     help="Replace earlier output of the same split (default: a rerun of the "
                          "same command resumes or skips; another command is refused)."),
        click.option("--fingerprint", type=click.Choice(["stat", "content"]), default="stat",
                     show_default=True,
                     help="How a rerun tells whether the inputs changed: stat (each file's "
                          "path, size and modification time) or content (the sha256 of its "
                          "bytes; reads every input once more)."),
        *_cluster_flags(expose=True),
    ])


def output_options(formats: tuple[str, ...] = FORMATS,
                   format_help: str = "Output sink.") -> Callable[[Callable], Callable]:
    """--format, --max-count, --max-bytes, --lmdb-layout, given to the command as ``output``:
    :class:`dataprep.options.OutputSpec`."""
    from dataprep.options import OutputSpec

    def decorate(f: Callable) -> Callable:
        f = _grouped(f, ("format", "max_count", "max_bytes", "lmdb_layout"), "output",
                     lambda format, **kw: OutputSpec(fmt=format, **kw))
        return _apply(f, [
            click.option("--format", "format", type=click.Choice(formats),
                         default="webdataset", show_default=True, help=format_help),
            click.option("--max-count", type=click.IntRange(min=1), default=10_000,
                         show_default=True, help="Samples per shard at most."),
            click.option("--max-bytes", type=SizeType(), default=None,
                         help="Start a new shard before one exceeds this size (e.g. 1GB)."),
            click.option("--lmdb-layout", type=click.Choice(["dataprep", "caffe"]),
                         default="dataprep", show_default=True,
                         help="Layout of --format lmdb output. dataprep: keys %08d.image / "
                              ".cls / .json. caffe: what Caffe's convert_imageset --encoded "
                              "writes (keys %08d_<key>, values caffe.Datum with the encoded "
                              "image), read by Caffe's and DALI's LMDB readers, e.g. --format "
                              "lmdb --lmdb-layout caffe."),
        ])
    return decorate


def input_options(f: Callable) -> Callable:
    """--split and --root, given to the command with its SRC as ``inputs``:
    :class:`dataprep.jobs.job.InputSpec`."""

    def build(src: str, split: str | None, root: str | None) -> Any:
        from dataprep.jobs.job import InputSpec

        return InputSpec(src, root=root, split=split)

    f = _grouped(f, ("src", "split", "root"), "inputs", build)
    return _apply(f, [
        click.option("--split", default=None,
                     help="Name of the output split [default: the manifest's split, else "
                          "train]."),
        click.option("--root", type=click.Path(file_okay=False), default=None,
                     help="Folder that relative paths of a list file resolve against."),
    ])


def seed_option(help: str = "Seed for every random choice (same seed, same bytes).",
                ) -> Callable[[Callable], Callable]:
    return click.option("--seed", type=int, default=0, show_default=True, help=help)


def image_options(f: Callable) -> Callable:
    """Decode / resize / encode flags shared by resize, tencrop and augment (the fields of
    :class:`dataprep.jobs.tencrop.ResizeTask`)."""
    from dataprep.ops.resize import INTERPOLATIONS

    return _apply(f, [
        click.option("--interpolation", type=click.Choice(sorted(INTERPOLATIONS)),
                     default="bilinear", show_default=True,
                     help="Resampling filter (Pillow, antialiased, as torchvision on PIL)."),
        click.option("--exact", is_flag=True,
                     help="Decode JPEGs in full (no DCT-domain draft): pixels then equal "
                          "torchvision's Resize on the full image; slower."),
        click.option("--image-format", type=click.Choice(["jpg", "png", "webp"]),
                     default="jpg", show_default=True,
                     help="Encoding of the stored images (never raw pixels)."),
        click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True,
                     help="JPEG/WebP quality of the stored images."),
        click.option("--max-aspect", type=click.FloatRange(min=1, max=1e9), default=100.0,
                     show_default=True,
                     help="Refuse images whose longer side is more than this many times the "
                          "shorter (bomb guard, with --max-pixels on the resized size too)."),
        click.option("--max-pixels", type=int, default=178_956_970, show_default=True,
                     help=MAX_PIXELS_HELP),
    ])


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
    """Turn library errors into clean click errors (no traceback for user mistakes); a verb
    with :func:`cluster_options` runs inside the cluster they name."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        meta = click.get_current_context().meta
        try:
            with cluster(meta.get("dataprep.backend", "loky"), meta.get("dataprep.scheduler"),
                         jobs=kwargs.get("jobs")):
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
