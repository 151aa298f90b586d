"""Checkpoints: plain tensors and primitives only, so they load with ``weights_only=True``.

Layout of ``best.pt`` / ``last.pt``::

    {"format": "dataprep-checkpoint", "version": 1,
     "model": state_dict, "optimizer": state_dict, "scaler": state_dict,
     "epoch": epochs completed, "step": optimizer steps taken,
     "best_top1": float, "best_epoch": int, "bad_epochs": int, "chance_epochs": int,
     "history": [per-epoch metrics], "config": resolved TrainConfig as a dict,
     "classes": [class names]}

``model`` alone is what ``--weights`` reads, so a run's ``best.pt`` starts the next fine-tune.
Files are written to a temporary name and renamed: a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dataprep.errors import UsageError

FORMAT = "dataprep-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(dict(state, format=FORMAT, version=VERSION), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (never unpickles code)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist: nothing to resume; drop --resume to start "
                         "a new run") from None
    except Exception as exc:  # UnpicklingError, RuntimeError on truncated files
        raise UsageError(f"{path} is not a readable checkpoint: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path} is not a dataprep checkpoint (no format={FORMAT!r})")
    return state
