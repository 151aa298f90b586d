"""The ``dataprep`` command line: the group of verbs, ``run``, and how the process ends.

Each verb parses flags, calls one library function and renders its report; the verbs live
beside what they call (:mod:`dataprep.write_cli` for split / resize / tencrop / shard,
``*_cli`` modules and :mod:`dataprep.train.cli` for the others) and are registered here. The
option groups they share are in :mod:`dataprep.cli_options`. No image logic lives here."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from dataprep._version import __version__
from dataprep.errors import MissingSourceError
from dataprep.jobs.run import run_cmd
from dataprep.verbs import VERBS
from dataprep.write_cli import resize_cmd, shard_cmd, split_cmd, tencrop_cmd


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


for _command in (split_cmd, resize_cmd, tencrop_cmd, shard_cmd, run_cmd):
    cli.add_command(_command)


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

for _name, _text in VERBS.items():
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
    from dataprep.pool import stop_local

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
