"""``dataprep train`` and ``dataprep summary``: parse flags, call the library, render the result.

Importing this module is cheap (click and stdlib only): torch, torchvision and matplotlib load
inside the commands, with an install hint when they are missing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from dataprep.errors import DataprepError, UsageError, cli_message, require
from dataprep.recipe import recipe_callback
from dataprep.train.config import (
    AMP_MODES,
    DEVICES,
    LAZY_VIEWS,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
)
from dataprep.units import parse_size


def _floats(n: int) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def convert(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None or isinstance(value, (list, tuple)):
            return value
        try:
            values = tuple(float(v) for v in str(value).split(","))
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected comma-separated numbers") from None
        if n and len(values) != n:
            raise click.BadParameter(f"{value!r}: expected {n} comma-separated numbers")
        return values
    return convert


def _size(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    try:
        return parse_size(value) if value is not None else None
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    handler = logging.StreamHandler(sys.stderr)
    prefix = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    handler.setFormatter(logging.Formatter(prefix + "%(levelname)s %(message)s"
                                           if rank else "%(message)s"))
    logger = logging.getLogger("dataprep.train")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False


_D = TrainConfig(data="", out="")  # the defaults, shown in --help


def augment_options() -> list:
    """``dataprep augment``'s augmentation flags, for online use: the parameter names are
    :func:`dataprep.jobs.augment.build_augment`'s (so recipes share keys), drawn per
    ``(seed, key, view, epoch)`` as ``augment`` draws copy ``k``. Differences: the crop is
    ``--img-size``, ``--hflip`` is on by default."""
    return [
        click.option("--hflip/--no-hflip", default=True, show_default=True,
                     help="Mirror left-right with probability 0.5."),
        click.option("--scale-jitter", default=None, metavar="LO,HI",
                     help="Resize so the shorter side is ~ U{LO..HI} (e.g. 256,480), then a "
                          "random --img-size square (VGG / ResNet scale augmentation)."),
        click.option("--random-resized-crop", is_flag=True,
                     help="torchvision RandomResizedCrop to --img-size (area 8-100%, aspect "
                          "3/4-4/3) from the stored image."),
        click.option("--rotate", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     metavar="DEG", help="Rotate by an angle ~ U(-DEG, DEG) degrees."),
        click.option("--shift", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                     metavar="F",
                     help="Translate by up to F of the width and height (whole pixels)."),
        click.option("--color-jitter", default=None, callback=_floats(0), metavar="B,C,S,H",
                     help="Strength, or brightness,contrast,saturation,hue "
                          "(e.g. 0.4,0.4,0.4,0.1)."),
        click.option("--pca-lighting", type=click.FloatRange(min=0), default=0.0,
                     show_default=True, metavar="SIGMA",
                     help="AlexNet PCA lighting sigma (0.1 in the paper); 0 disables."),
        click.option("--blur", is_flag=True,
                     help="Gaussian blur, sigma ~ U(0.1, 2.0) pixels, on half of the samples."),
        click.option("--noise", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     metavar="SIGMA",
                     help="Add Gaussian noise of this standard deviation (pixels in [0, 1])."),
        click.option("--stats", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="stats.json of `dataprep stats`: sets --mean/--std (unless given) "
                          "and the eigenvectors of --pca-lighting."),
    ]


def finetune_options() -> list:
    """Which layers train, at which learning rate (see :mod:`dataprep.train.finetune`);
    shared by ``train`` and ``summary``."""
    return [
        click.option("--reinit-last", type=click.IntRange(min=0), default=0, show_default=True,
                     metavar="N", help="Re-initialise the last N layers with parameters after "
                                       "loading --weights (1: the classifier)."),
        click.option("--train-last", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Train only the last N layers with parameters; freeze the rest."),
        click.option("--freeze-until", default=None, metavar="NAME",
                     help="Freeze every layer before NAME (a module, e.g. layer4 or "
                          "classifier); NAME and what follows train."),
        click.option("--lr-group", multiple=True, metavar="PATTERN=MULT",
                     help="Learning rate x MULT for parameters whose name or module matches "
                          "PATTERN (fnmatch); repeatable, first match wins; MULT 0 freezes, "
                          "e.g. --lr-group 'classifier.6=10' --lr-group '*=0'."),
        click.option("--head-lr-mult", type=float, default=_D.head_lr_mult, show_default=True,
                     help="Learning-rate multiplier of the classifier (where no --lr-group "
                          "matches)."),
    ]

TRAIN_OPTIONS = [
    # data
    click.option("--val", default=None, metavar="SHARDS",
                 help="Validation shards [default: DATA's val split]."),
    click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
                 help="Run directory: config.json, metrics.jsonl, curves.png, best.pt, last.pt."),
    click.option("--train-split", default=_D.train_split, show_default=True,
                 help="Split of DATA to train on (the {split}-*.tar shards or {split}.lmdb)."),
    click.option("--val-split", default=_D.val_split, show_default=True,
                 help="Split of DATA (or of --val) to validate on after each epoch."),
    click.option("--num-classes", type=click.IntRange(min=1), default=None,
                 help="Outputs of the classifier [default: the class list in dataprep.json / "
                      "the LMDB]."),
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                 help="Where remote shards are cached [default: RUN/shard-cache]."),
    click.option("--cache-size", default="4GB", show_default=True, callback=_size, metavar="SIZE",
                 help="Hard bound of the shard cache, all workers and ranks of a machine."),
    click.option("--workers", type=click.IntRange(min=0), default=_D.workers, show_default=True,
                 help="Loader processes per rank."),
    click.option("--shuffle-buffer", type=click.IntRange(min=0), default=_D.shuffle_buffer,
                 show_default=True, help="Samples mixed per worker after the shard shuffle."),
    click.option("--lazy-views", type=click.Choice(LAZY_VIEWS), default=_D.lazy_views,
                 show_default=True,
                 help="Lazily stored ten-crops: every view a sample, or one random view."),
    click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None,
                 help="Batches per rank per epoch [default: one pass over DATA]."),
    # pixels
    click.option("--img-size", type=click.IntRange(min=1), default=None,
                 help="Side of the square crop the model sees [default: 299 for "
                      "inception_v3, else 224]."),
    click.option("--short-side", type=click.IntRange(min=1), default=None,
                 help="Resize images to this before cropping [default: img-size / 0.875]."),
    *augment_options(),
    click.option("--pca-stats", type=click.Path(exists=True, dir_okay=False), default=None,
                 hidden=True, help="Older name of --stats, for the PCA eigenvectors only."),
    click.option("--mean", default=None, callback=_floats(3), metavar="R,G,B",
                 help="Normalization mean (pixels in [0, 1]) [default: --stats', else "
                      "ImageNet's 0.485,0.456,0.406]."),
    click.option("--std", default=None, callback=_floats(3), metavar="R,G,B",
                 help="Normalization std [default: --stats', else ImageNet's "
                      "0.229,0.224,0.225]."),
    # model
    click.option("--model", default=_D.model, show_default=True,
                 help="torchvision name (resnet50, mobilenet_v2, ...), timm name, or tiny_cnn."),
    click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Local state_dict to start from. Its classifier is kept when its class "
                      "count equals the data's, replaced by a new one otherwise."),
    click.option("--pretrained", is_flag=True,
                 help="Download torchvision's ImageNet weights (needs internet)."),
    click.option("--channels-last", is_flag=True, help="NHWC memory format."),
    # optimization
    click.option("--epochs", type=click.IntRange(min=1), default=_D.epochs, show_default=True,
                 help="Passes over the training split (or --steps-per-epoch batches each)."),
    click.option("--batch-size", "-b", type=click.IntRange(min=1), default=_D.batch_size,
                 show_default=True, help="Per rank and step."),
    click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_D.optimizer,
                 show_default=True,
                 help="torch.optim optimizer (sgd: with --momentum, Nesterov off)."),
    click.option("--lr", type=float, default=_D.lr, show_default=True,
                 help="Base learning rate (backbone)."),
    click.option("--momentum", type=float, default=_D.momentum, show_default=True,
                 help="Momentum of sgd (and rmsprop)."),
    click.option("--weight-decay", type=float, default=_D.weight_decay, show_default=True,
                 help="L2 penalty (torch.optim weight_decay) on every parameter, e.g. 1e-4."),
    click.option("--schedule", type=click.Choice(SCHEDULES), default=_D.schedule,
                 show_default=True,
                 help="Learning-rate schedule over the epochs (cosine: down to 0 at the end; "
                      "step / multistep: times --gamma, see --step-size / --milestones)."),
    click.option("--step-size", type=click.IntRange(min=1), default=_D.step_size,
                 show_default=True, help="step schedule: epochs between decays."),
    click.option("--milestones", default=",".join(map(str, _D.milestones)), show_default=True,
                 metavar="E1,E2,..",
                 callback=_floats(0), help="multistep schedule: epochs of decay."),
    click.option("--gamma", type=float, default=_D.gamma, show_default=True,
                 help="Decay factor of step / multistep."),
    click.option("--warmup-epochs", type=float, default=0.0, show_default=True,
                 help="Epochs (may be fractional, e.g. 0.5) of linear learning-rate warm-up "
                      "from 0 before the schedule."),
    click.option("--freeze-epochs", type=click.IntRange(min=0), default=0, show_default=True,
                 help="Train only the classifier for N epochs, then every layer."),
    *finetune_options(),
    click.option("--freeze-bn", is_flag=True,
                 help="Keep BatchNorm statistics as loaded, also after the unfreeze."),
    click.option("--accum-steps", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Micro-batches per optimizer step."),
    click.option("--label-smoothing", type=float, default=0.0, show_default=True,
                 help="Share of the target spread over the other classes (0.1 in Inception "
                      "v3; 0: off)."),
    click.option("--amp", type=click.Choice(AMP_MODES), default=_D.amp, show_default=True,
                 help="Mixed precision: auto = bf16 on GPUs that have it, off on CPU."),
    click.option("--early-stop", type=click.IntRange(min=1), default=None, metavar="PATIENCE",
                 help="Stop after PATIENCE epochs without a better val top-1."),
    click.option("--save-every", type=click.IntRange(min=1), default=None, metavar="N",
                 help="Also keep epoch-N.pt every N epochs."),
    click.option("--eval-every-steps", type=click.IntRange(min=1), default=None, metavar="N",
                 help="Also validate every N optimizer steps (evals.jsonl); best.pt is the "
                      "best of every validation."),
    # run
    click.option("--resume", is_flag=True, help="Continue RUN/last.pt."),
    click.option("--overwrite", is_flag=True, help="Start afresh in a RUN that holds a run."),
    click.option("--device", type=click.Choice(DEVICES), default=_D.device, show_default=True,
                 help="auto: the GPU when there is one, else the CPU."),
    click.option("--seed", type=int, default=0, show_default=True,
                 help="Seed of the initialisation, the shuffle and every augmentation draw."),
    click.option("--progress/--no-progress", default=True, show_default=True,
                 help="Progress bar with loss and images/s."),
    click.option("--recipe", type=click.Path(dir_okay=False), is_eager=True,
                 expose_value=False, callback=recipe_callback,
                 help="TOML file of defaults for these flags (flags given here win)."),
]


def _with_options(options: list) -> Callable:
    def decorate(f: Callable) -> Callable:
        for opt in reversed(options):
            f = opt(f)
        return f
    return decorate


@click.command("train")
@click.argument("data")
@_with_options(TRAIN_OPTIONS)
def train(data: str, **flags: Any) -> None:
    """Train a classifier on shards: DATA is a WebDataset directory, brace pattern,
    http(s):// or pipe: URL, or an LMDB.

    \b
      dataprep train shards -o runs/r18 --model resnet18 --epochs 10
      dataprep train shards -o runs/ft --model mobilenet_v2 --weights mnv2.pth \\
          --freeze-epochs 2 --head-lr-mult 10 --lr 0.01
      torchrun --nproc_per_node 4 -m dataprep train http://host/shards -o runs/ddp

    Writes config.json, metrics.jsonl (per epoch: loss, top-1/5, lr, images/s, seconds),
    curves.png, last.pt and best.pt (by validation top-1) to the run directory.
    """
    try:
        require("torch", "train")
        from dataprep.train.loop import train as run_training

        flags["milestones"] = [int(m) for m in flags["milestones"]]
        flags["lr_group"] = list(flags["lr_group"])
        cfg = TrainConfig(data=data, **flags)
        _setup_logging()
        result = run_training(cfg)
    except (DataprepError, OSError) as exc:
        if (message := cli_message(exc)) is None:
            raise
        raise click.ClickException(message) from exc
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if result.best_top1 is not None:
        click.echo(f"best val top-1 {result.best_top1:.4f} at epoch {result.best_epoch}; "
                   f"{result.epochs_run} epoch(s) run ({result.stopped})")
    click.echo(f"run: {result.out} (config.json, metrics.jsonl, curves.png, last.pt"
               f"{', best.pt' if result.best_top1 is not None else ''})")
    if result.stopped == "diverged":
        raise click.ClickException("training diverged (loss is NaN or infinite); "
                                   "lower --lr and start again")


@click.command("summary")
@click.option("--model", required=True, help="Model name, as for `dataprep train --model`.")
@click.option("--img-size", type=click.IntRange(min=1), default=None,
              help="[default: 299 for inception_v3, else 224]")
@click.option("--num-classes", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Outputs of the classifier.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Check that a local state_dict fits the model.")
@click.option("--lr", type=float, default=_D.lr, show_default=True,
              help="Base learning rate, for the group table.")
@_with_options(finetune_options())
def summary(model: str, img_size: int | None, num_classes: int, weights: str | None, lr: float,
            reinit_last: int, train_last: int | None, freeze_until: str | None,
            lr_group: tuple[str, ...], head_lr_mult: float) -> None:
    """Print each layer's output shape, parameter count and learning-rate multiplier for a
    1x3xSIZExSIZE input (the fine-tuning flags of `dataprep train` say which layers train),
    then the group table `dataprep train` prints."""
    try:
        require("torch", "train")
        from dataprep.train.config import default_img_size
        from dataprep.train.finetune import apply_stage, parse_lr_group, plan
        from dataprep.train.models import build_model
        from dataprep.train.summary import summarize

        size = img_size or default_img_size(model)
        built = build_model(model, num_classes, weights=weights, img_size=size,
                            reinit_last=reinit_last)
        groups = plan(built.model, built.head, rules=[parse_lr_group(t) for t in lr_group],
                      head_lr_mult=head_lr_mult, train_last=train_last,
                      freeze_until=freeze_until)
        apply_stage(built.model, groups)
        report = summarize(built.model, (1, 3, size, size), name=model, plan=groups)
    except (DataprepError, OSError) as exc:
        if (message := cli_message(exc)) is None:
            raise
        raise click.ClickException(message) from exc
    except RuntimeError as exc:  # e.g. an input too small for the network's downsampling
        raise click.ClickException(f"{model} cannot run on {size}x{size} inputs: "
                                   f"{exc}") from exc
    click.echo(report.to_text())
    click.echo("")
    click.echo(groups.table(lr))
