"""``curves.png``: loss and accuracy per epoch, train vs validation (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curves(history: list[dict[str, Any]], path: str | Path, freeze_epochs: int = 0) -> None:
    """Two panels: loss (train, val) and top-1 accuracy (train, val; val top-5 dashed).

    A dotted vertical line marks where the backbone is unfrozen (after ``freeze_epochs``).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, keys, title in (
        (ax_loss, (("train_loss", "train", "-"), ("val_loss", "val", "-")), "loss"),
        (ax_acc, (("train_top1", "train top-1", "-"), ("val_top1", "val top-1", "-"),
                  ("val_top5", "val top-5", "--")), "accuracy"),
    ):
        for key, label, style in keys:
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, style, marker="o", markersize=3, label=label)
        if 0 < freeze_epochs < (max(epochs) if epochs else 0):
            ax.axvline(freeze_epochs + 0.5, color="gray", linestyle=":", label="unfreeze")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(0, 1)
    fig.savefig(path, dpi=100)
    plt.close(fig)
