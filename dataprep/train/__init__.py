"""The bundled trainer: streams dataprep shards into a PyTorch training loop.

Modules, one stage each: ``config`` (TrainConfig), ``sources`` (data argument -> parts with
counts), ``cache`` (bounded cache of remote shards), ``data`` (streaming loader and pixels),
``models`` (models by name, heads, freezing), ``loop`` (the loop, DDP), ``checkpoint``
(``best.pt`` / ``last.pt``), ``plots`` (curves.png), ``summary`` (layer table), ``cli`` (click
commands; ``python -m dataprep.train`` runs them without the rest of the CLI).
Importing this package loads nothing heavy; torch loads with ``loop``, ``data`` or ``models``.
"""

from __future__ import annotations

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from dataprep.train.config import TrainConfig
        return TrainConfig
    if name == "train":
        from dataprep.train.loop import train
        return train
    raise AttributeError(f"module 'dataprep.train' has no attribute {name!r}")
