"""Exceptions. Messages say what was wrong, what was expected, and how to fix it."""

from __future__ import annotations


class DataprepError(Exception):
    """Base class for every error dataprep raises on purpose."""


class UsageError(DataprepError):
    """Bad parameters or arguments (the CLI turns these into click errors)."""


class SourceError(DataprepError):
    """A source (folder, list, manifest, shards) cannot be read as asked."""


class MissingSourceError(SourceError):
    """The source path does not exist: a usage error (the CLI exits 2, as for a bad flag)."""


class ImageError(DataprepError):
    """One input image cannot be used (truncated, not an image, bomb, too small...).

    Per-image failures are data: the runner counts them and lists them in ``errors.jsonl``.
    """


class ShardError(DataprepError):
    """A shard is corrupt, hostile, or does not match its ledger."""


class OutputError(UsageError):
    """The output folder cannot be used as asked: it holds files dataprep did not write, it
    overlaps the inputs, another run holds it, or its ledger or journal is damaged."""


class WorkerError(DataprepError):
    """A worker process died mid-run (killed, out of memory); finished work is kept."""


class DiskFullError(DataprepError):
    """The output's filesystem ran out of space (finished shards are kept for resuming)."""


class DiskBudgetError(DataprepError):
    """The estimated output does not fit the free space or ``--max-disk``; nothing was written."""


class MissingDependency(DataprepError):
    """An optional dependency is not installed."""


def require(module: str, extra: str):
    """Import an optional heavy dependency lazily, with an install hint when missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependency(
            f"{module} is needed for this command but is not installed; "
            f"install it with: pip install 'dataprep[{extra}]'"
        ) from exc


def cli_message(exc: BaseException) -> str | None:
    """The one line the CLI prints, without a traceback, for a user's error: dataprep's own
    errors, and file-system errors about a path (say, a part of ``-o`` that is a file, or a
    folder without write permission). None for anything else: a bug, which should crash."""
    if isinstance(exc, DataprepError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        import os

        if isinstance(exc, NotADirectoryError):
            what = "a part of that path is a file, not a folder"
        elif isinstance(exc, FileExistsError) and os.path.isfile(exc.filename):
            what = "is a file, where a folder is needed"
        else:
            what = exc.strerror or str(exc)
        return f"{exc.filename}: {what}"
    return None
