"""The options of a writing run, as two named objects built once by each verb.

Every writing verb (``resize``, ``tencrop``, ``augment``, ``shard``) keeps its keyword
arguments, the Python API, and turns them into three things: its task (what happens to one
record, e.g. :class:`dataprep.jobs.tencrop.TencropTask`), an :class:`OutputSpec` (what the
output looks like) and :class:`RunOptions` (how the run goes). Everything below the verb -
:func:`dataprep.jobs.job.run_job`, :func:`dataprep.runner.execute` - takes these objects, so an
option is named in one dataclass and the verbs' signatures, and the CLI builds the same objects
(:mod:`dataprep.cli_options`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dataprep.errors import UsageError
from dataprep.io.writers import LMDB_LAYOUTS, WRITERS

Log = Callable[[str], None]
FINGERPRINTS = ("stat", "content")
ON_ERROR = ("skip", "raise")


@dataclass(frozen=True)
class OutputSpec:
    """What the output is: the sink (``fmt``), shard limits and the LMDB layout.

    ``max_count`` samples per shard at most; ``max_bytes``: a new shard starts before one would
    exceed it; ``lmdb_layout``: ``dataprep`` (keys ``%08d.image/.cls/.json``) or ``caffe``
    (``%08d_<key>`` -> ``caffe.Datum``), for ``fmt="lmdb"`` only.
    """

    fmt: str = "webdataset"
    max_count: int = 10_000
    max_bytes: int | None = None
    lmdb_layout: str = "dataprep"

    def __post_init__(self) -> None:
        if self.fmt not in WRITERS:
            raise UsageError(f"--format {self.fmt!r} is not supported; choose one of "
                             f"{', '.join(WRITERS)}")
        if self.max_count < 1:
            raise UsageError(f"--max-count must be at least 1, got {self.max_count}")
        if self.lmdb_layout not in LMDB_LAYOUTS:
            raise UsageError(f"--lmdb-layout {self.lmdb_layout!r}: expected one of "
                             f"{', '.join(LMDB_LAYOUTS)}")
        if self.lmdb_layout != "dataprep" and self.fmt != "lmdb":
            raise UsageError(f"--lmdb-layout {self.lmdb_layout} applies to LMDB output; add "
                             "--format lmdb")

    def params(self) -> dict[str, Any]:
        """The output's part of a split's identity (ledger ``params``). The default LMDB layout
        stays out, so outputs written before the option existed keep their identity."""
        params: dict[str, Any] = {"format": self.fmt, "max_count": self.max_count,
                                  "max_bytes": self.max_bytes}
        if self.lmdb_layout != "dataprep":
            params["lmdb_layout"] = self.lmdb_layout
        return params


@dataclass(frozen=True)
class RunOptions:
    """How a run goes: where and on how many workers, what an unreadable image does, what
    happens to earlier output, the disk budget, how inputs are identified, where lines go.

    ``jobs``: worker processes (None or 0: all cores; negative: joblib's rule). ``backend`` /
    ``scheduler``: ``loky`` (local processes), or the workers of a Dask / Ray cluster at
    ``scheduler`` (None: the backend in force, see :func:`dataprep.cluster.cluster`).
    ``on_error``: ``skip`` (listed in errors.jsonl) or ``raise``. ``overwrite``: replace earlier
    output of the same split. ``dry_run``: estimate and plan, write nothing. ``max_disk``:
    refuse to start above this many bytes. ``fingerprint``: ``stat`` (size and modification time
    of every input) or ``content`` (their sha256). ``log``: receives the plan and notes.
    """

    jobs: int | None = None
    backend: str | None = None
    scheduler: str | None = None
    on_error: str = "skip"
    overwrite: bool = False
    dry_run: bool = False
    max_disk: int | None = None
    fingerprint: str = "stat"
    log: Log | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise UsageError(f"--on-error {self.on_error!r}: expected one of "
                             f"{', '.join(ON_ERROR)}")
        if self.fingerprint not in FINGERPRINTS:
            raise UsageError(f"--fingerprint {self.fingerprint!r}: expected one of "
                             f"{', '.join(FINGERPRINTS)}")

    def say(self, line: str) -> None:
        """Send one line to ``log`` (nowhere without one)."""
        if self.log is not None:
            self.log(line)
