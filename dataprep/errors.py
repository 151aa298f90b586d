"""Exceptions. Messages say what was wrong, what was expected, and how to fix it."""

from __future__ import annotations


class DataprepError(Exception):
    """Base class for every error dataprep raises on purpose."""


class UsageError(DataprepError):
    """Bad parameters or arguments (the CLI turns these into click errors)."""


class SourceError(DataprepError):
    """A source (folder, list, manifest, shards) cannot be read as asked."""


class ImageError(DataprepError):
    """One input image cannot be used (truncated, not an image, bomb, too small...).

    Per-image failures are data: the runner counts them and lists them in ``errors.jsonl``.
    """


class ShardError(DataprepError):
    """A shard is corrupt, hostile, or does not match its ledger."""


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
