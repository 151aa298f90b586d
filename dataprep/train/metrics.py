"""The arithmetic of the loop's metrics: what one batch adds to the running sums of an epoch
(kept on the device, so a GPU step never waits for the host) and what the sums, reduced over
ranks, mean. Pure tensor and list functions; :mod:`dataprep.train.loop` calls them.
"""

from __future__ import annotations

from typing import Any

import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have their label among the ``k`` largest logits (a 0-d tensor)."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).sum()


def train_sums(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What one training batch adds to the epoch's sums: loss x samples (0 when the loss is
    not finite), correct top-1, samples, and 1 for a non-finite loss."""
    value = loss.detach().double()
    finite = torch.isfinite(value)
    correct = (logits.detach().argmax(dim=1) == y).sum().double()
    return torch.stack([torch.where(finite, value * len(y), 0.0), correct,
                        torch.full_like(value, len(y)), (~finite).double()])


def val_metrics(values: list[float], num_classes: int, seconds: float) -> dict[str, Any]:
    """The validation metrics of the validation sums, reduced over ranks: loss sum, top-1
    hits, top-5 hits, samples, then samples per class (for the chance level), then top-1
    hits per class (for the class-mean top-1)."""
    n = max(values[3], 1)
    per_class, hits = values[4:4 + num_classes], values[4 + num_classes:]
    seen = [h / c for h, c in zip(hits, per_class, strict=True) if c]
    return {"val_loss": values[0] / n, "val_top1": values[1] / n, "val_top5": values[2] / n,
            "val_class_top1": sum(seen) / len(seen) if seen else 0.0,
            "val_samples": int(values[3]), "val_seconds": seconds,
            "chance": max(per_class) / n if num_classes else 0.0}
