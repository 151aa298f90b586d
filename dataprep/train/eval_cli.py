"""``dataprep evaluate`` and ``dataprep learning-curve``: parse flags, call the library, render.

Importing this module is cheap (click and stdlib only); torch and matplotlib load inside the
commands, with an install hint when missing.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from dataprep.errors import DataprepError, UsageError, cli_message, require

MODE_NAMES = ("resize", "center", "five", "ten", "flip", "mix")  # = dataprep.train.tta.MODES


def _modes(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from dataprep.train.tta import parse_modes

    try:
        return parse_modes(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


def _logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("dataprep.train")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _run(module: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """``module.name(*args, **kwargs)`` for a trainer command: torch required, the trainer's
    log lines on stderr, dataprep's errors as one-line click errors."""
    import importlib

    try:
        require("torch", "train")
        fn = getattr(importlib.import_module(module), name)
        _logging()
        return fn(*args, **kwargs)
    except (DataprepError, OSError) as exc:
        if (message := cli_message(exc)) is None:
            raise
        raise click.ClickException(message) from exc


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("data")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Report folder: report.md, metrics.json, confusion.csv/png, per_class.csv, "
                   "misclassified.csv/png (per_tag.csv).")
@click.option("--tta", default=",".join(MODE_NAMES), show_default=True, callback=_modes,
              metavar="MODES",
              help="Test-time modes, comma-separated: resize (squash to crop x crop), center, "
                   "five, ten (torchvision TenCrop order), flip (center + mirror), mix (resize and "
                   "five-crop probabilities averaged); or all.")
@click.option("--primary", type=click.Choice(MODE_NAMES), default=None,
              help="Mode the confusion matrix, per-class and misclassified files describe "
                   "[default: the best top-1].")
@click.option("--split", default=None,
              help="Split of DATA to read [default: the first of val, test, train it has].")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images decoded at once; also views per forward pass.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto",
              show_default=True, help="auto: the GPU when there is one, else the CPU.")
@click.option("--tags", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV of key,tag rows (key or source path): accuracy per tag, besides the "
                   "tags / tag fields of the samples' json.")
@click.option("--max-samples", type=click.IntRange(min=1), default=None,
              help="Evaluate only the first N samples (a quick look).")
@click.option("--sheet-per-class", type=click.IntRange(min=1), default=8, show_default=True,
              help="Misclassified images per true class in misclassified.png.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on the terminal (off: for logs).")
def evaluate(checkpoint: str, data: str, out: str, tta: tuple[str, ...], primary: str | None,
             split: str | None, batch_size: int, device: str, tags: str | None,
             max_samples: int | None, sheet_per_class: int, progress: bool) -> None:
    """Evaluate a `dataprep train` checkpoint on shards in several test-time modes.

    DATA: WebDataset directory, brace pattern, http(s):// or pipe: URL, or LMDB holding one
    stored image per record (e.g. the val split resized to a 256 short side). The model, its
    classes, crop size and normalization come from the checkpoint.

    \b
      dataprep evaluate runs/r18/best.pt shards -o runs/r18/eval
      dataprep evaluate best.pt val-shards -o eval --tta center,ten --tags tags.csv
    """
    result = _run("dataprep.train.evaluate", "evaluate", checkpoint, data, out, modes=tta,
                  primary=primary, split=split, batch_size=batch_size, device=device,
                  tags=tags, max_samples=max_samples, progress=progress,
                  per_class_sheet=sheet_per_class)
    click.echo(f"{result.num_samples} images of {data} (split {result.info['split']}), "
               f"{len(result.classes)} classes, {result.info['model']} on {result.info['device']}")
    for line in result.lines():
        click.echo(line)
    wrong = int((result.modes[result.primary].pred != result.labels).sum())
    click.echo(f"primary: {result.primary} ({result.primary_reason}); {wrong} misclassified")
    if result.skipped:
        click.echo(f"{len(result.skipped)} unreadable sample(s) skipped (listed in metrics.json)")
    click.echo(f"report: {out}/report.md")


def _ints(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from dataprep.train.learning_curve import parse_sizes

    try:
        return parse_sizes(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("learning-curve")
@click.argument("src", type=click.Path(exists=True))
@click.option("--per-class", required=True, callback=_ints, metavar="N1,N2,..",
              help="Images per class drawn for each point, comma-separated, e.g. "
                   "10,20,40,80 (an --inner-val share of them validates).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for learning_curve.csv/png/json, learning_curve_runs.csv and one "
                   "n{N}/seed{S}/ folder per run.")
@click.option("--test", "--val", "test", default=None, type=click.Path(exists=True),
              help="Fixed held-out test set (images, manifest or shards) [default: split SRC "
                   "once with --ratio]. --val is its older name.")
@click.option("--ratio", type=float, default=0.8, show_default=True,
              help="Share of each class that may be drawn for training when --test is not "
                   "given; the rest is the test split.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs per size, seeds --seed, --seed + 1, ...: each draws its own subset "
                   "and initialisation; the curve shows their mean and standard deviation.")
@click.option("--inner-val", type=click.FloatRange(0, 1, max_open=True), default=0.2,
              show_default=True,
              help="Share of each size's images per class cut off (stratified) to validate "
                   "inside the run: best.pt and --patience use it. 0: no validation, last.pt "
                   "is scored.")
@click.option("--patience", type=click.IntRange(min=1), default=None,
              help="Stop a run after this many epochs without a better inner val top-1 "
                   "[default: run --epochs].")
@click.option("--short-side", type=click.IntRange(min=1), default=None,
              help="Stored (and training) short side [default: img-size / 0.875].")
@click.option("--tta", default="center", show_default=True, callback=_modes,
              metavar="MODES",
              help="Test-time modes scored per run (as for `dataprep evaluate`); the first "
                   "one is fitted.")
@click.option("--min-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="At least this many optimizer steps per run (small sizes otherwise get few).")
@click.option("--model", default="resnet18", show_default=True,
              help="torchvision name (resnet18, mobilenet_v2, ...), timm name, or tiny_cnn.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local state_dict to start from (fine-tuning); its classifier is replaced.")
@click.option("--img-size", type=click.IntRange(min=1), default=224, show_default=True,
              help="Side of the square crop the model sees, in pixels.")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Most epochs per run (fewer with --patience).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per optimizer step.")
@click.option("--optimizer", type=click.Choice(("sgd", "adam", "adamw", "adagrad", "rmsprop")),
              default="sgd", show_default=True, help="torch.optim optimizer of every run.")
@click.option("--lr", type=float, default=0.01, show_default=True,
              help="Base learning rate (backbone).")
@click.option("--head-lr-mult", type=float, default=1.0, show_default=True,
              help="The classifier's learning rate is --lr times this (e.g. 10 when "
                   "fine-tuning).")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True,
              help="L2 penalty on the weights, e.g. 1e-4.")
@click.option("--freeze-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Train only the classifier for N epochs of each run, then every layer.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto",
              show_default=True, help="auto: the GPU when there is one, else the CPU.")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Loader processes of the trainer.")
@click.option("--jobs", "-j", type=int, default=None,
              help="Processes that resize the shards [default: all cores]; 0 or -1: all "
                   "cores, -2: all but one (joblib's rule).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the test split and of the first repeat.")
@click.option("--overwrite", is_flag=True, help="Replace shards of an earlier curve in OUT.")
def learning_curve(src: str, per_class: list[int], out: str, test: str | None, ratio: float,
                   repeats: int, inner_val: float, patience: int | None,
                   short_side: int | None, tta: tuple[str, ...], min_steps: int,
                   jobs: int | None, seed: int, overwrite: bool, **train_options: Any) -> None:
    """Top-1 on a fixed test split against images per class, with spread and trend.

    SRC: image folder, list file or manifest. The test split is fixed once (--test, or a
    seeded split of SRC) and scores every run. For each size N and repeat, N images per
    class are drawn from the rest (nested subsets within a seed), an --inner-val share of
    them is cut off to validate (best.pt, --patience), the others train; best.pt is scored
    on the test split. The PNG has a log x axis, error bars (one standard deviation over the
    repeats) and the fitted trend, printed as "+N points of top-1 per doubling of images
    per class".

    \b
      dataprep learning-curve images/ --per-class 10,20,40,80 --repeats 3 -o curve \\
          --model mobilenet_v2 --weights mnv2.pth --img-size 128 --epochs 10 --patience 2
    """
    result = _run("dataprep.train.learning_curve", "learning_curve", src, out,
                  per_class=per_class, test=test, ratio=ratio, seed=seed, repeats=repeats,
                  inner_val=inner_val, patience=patience, short_side=short_side, modes=tta,
                  min_steps=min_steps, jobs=jobs, overwrite=overwrite, log=click.echo,
                  **train_options)
    for line in result.lines():
        click.echo(line)


@click.command("predict")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("src", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for predictions.csv, predictions.png (contact sheet), predict.json "
                   "and errors.csv (unreadable images).")
@click.option("--tta", default="center", show_default=True, metavar="MODES",
              type=click.Choice(MODE_NAMES),
              help="Test-time mode, as for `dataprep evaluate`: resize (squash to crop x "
                   "crop), center, five, ten, flip (center + mirror), mix.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Most probable classes written per image (at most the model's classes).")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="Use SRC's class folders / list labels for accuracy when they name classes "
                   "of the model; --no-labels predicts only.")
@click.option("--split", default=None, help="Split to read when SRC is shards.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images decoded at once; also views per forward pass.")
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto",
              show_default=True, help="auto: the GPU when there is one, else the CPU.")
@click.option("--sheet-count", type=click.IntRange(min=0), default=48, show_default=True,
              help="Images on the contact sheet (spread over the classes when labelled); 0: "
                   "no sheet.")
@click.option("--cell", type=click.IntRange(min=32), default=128, show_default=True,
              help="Side of one contact-sheet thumbnail, in pixels.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on the terminal (off: for logs).")
def predict_cmd(checkpoint: str, src: str, out: str, tta: str, top_k: int, labels: bool,
                split: str | None, batch_size: int, device: str, sheet_count: int, cell: int,
                progress: bool) -> None:
    """Run a `dataprep train` checkpoint on any images, labelled or not.

    SRC: an image folder (root/<class>/<image>, or a flat folder of photos), a list file
    (`path label` lines, or one image path per line), a .jsonl manifest, or shards. Images are
    decoded as everywhere in dataprep (EXIF orientation, alpha on white, 16-bit) and cut into
    views with the checkpoint's own crop size, short side and normalization, exactly as
    `dataprep evaluate` does. With labels, accuracy is printed as `evaluate` prints it.
    Unreadable images are listed in errors.csv and skipped.

    \b
      dataprep predict runs/r18/best.pt my_photos/ -o runs/r18/predict
      dataprep predict best.pt images/ -o pred --tta ten --top-k 3 --sheet-count 24
    """
    result = _run("dataprep.train.predict", "predict", checkpoint, src, out, mode=tta,
                  top_k=top_k, batch_size=batch_size, device=device, use_labels=labels,
                  split=split, sheet_count=sheet_count, cell=cell, progress=progress)
    for line in result.lines():
        click.echo(line)
    click.echo(f"predictions: {out}/predictions.csv")
