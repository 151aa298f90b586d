"""The bundled trainer: streams dataprep shards into a PyTorch training loop.

Modules, one stage each: ``config`` (TrainConfig), ``sources`` (data argument -> parts with
counts), ``cache`` (bounded cache of remote shards), ``reading`` (a part's samples), ``jpeg``
(fast JPEG decoding), ``pixels`` (augmentation, crops, normalization), ``data`` (the streaming
loader), ``models`` (models by name, heads, freezing), ``finetune`` (which layers train at which
rate), ``optim`` (optimizer, learning-rate schedule), ``runtime`` (process group, device,
autocast), ``run_setup`` (run folder and streams before the first epoch), ``metrics`` (the
loop's sums), ``tracker`` (best / patience / warnings, history), ``loop`` (the loop, DDP),
``checkpoint`` (``best.pt`` / ``last.pt``), ``plots`` (curves.png), ``summary`` (layer table),
``evaluate`` / ``eval_result`` / ``eval_report`` (test-time modes on a checkpoint, their
results, the report's tables and files), ``learning_curve`` (+ ``curve_split``,
``curve_output``), ``predict`` (+ ``predict_output``), ``sweep`` (+ ``sweep_spec``,
``sweep_folder``, ``sweep_launch``, ``sweep_estimate``), ``compare`` (+ ``compare_table``),
``cli`` / ``eval_cli`` (click commands) and ``commands`` (``python -m dataprep.train`` runs them
without the rest of the CLI).
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
