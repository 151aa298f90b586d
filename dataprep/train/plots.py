"""``curves.png``: loss and accuracy per epoch, train vs validation (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curves(history: list[dict[str, Any]], path: str | Path, freeze_epochs: int = 0,
                num_classes: int = 0) -> None:
    """Two panels: loss (train, val) and top-1 accuracy (train, val), with the chance level
    (the largest validation class) dashed; val top-5 dotted when there are more than 5
    classes (with 5 or fewer it is always 1). A vertical line marks the unfreeze epoch."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    acc_keys = [("train_top1", "train top-1", "-"), ("val_top1", "val top-1", "-")]
    if num_classes > 5:
        acc_keys.append(("val_top5", "val top-5", ":"))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    last = max((h["epoch"] for h in history), default=0)
    for ax, keys, title in ((ax_loss, [("train_loss", "train", "-"), ("val_loss", "val", "-")],
                             "loss"), (ax_acc, acc_keys, "top-1 accuracy")):
        for key, label, style in keys:
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, style, marker="o", markersize=3, label=label)
        if 0 < freeze_epochs < last:
            ax.axvline(freeze_epochs + 0.5, color="gray", linestyle=":", label="unfreeze")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    xs, chance = series("chance")
    if xs:
        ax_acc.axhline(chance[-1], color="gray", linestyle="--", linewidth=1,
                       label=f"chance ({chance[-1]:.2f})")
    ax_acc.set_ylim(0, 1.02)
    ax_loss.legend()
    ax_acc.legend(loc="lower right")
    fig.savefig(path, dpi=100)
    plt.close(fig)
