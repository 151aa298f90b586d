"""Warnings that diagnose a run, each with the fix: pure functions of the metrics.

- :func:`loss_rising_at_chance`: validation loss rose at each of the last ``k`` evaluations
  while top-1 stayed at chance: the learning rate is too high (the weights are thrown around,
  nothing is learned).
- :func:`overfitting`: train top-1 above val top-1 by more than ``margin`` for ``k`` epochs.
- :func:`label_order`: how often neighbours in a shard share a label, against a shuffled
  order; :func:`sorted_shard_message` turns it into the warning about class-ordered shards.

Only stdlib here; the loop calls these and logs what they return.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

LOSS_RISE_EVALS = 3  # evaluations in a row with a higher val loss, at chance
CHANCE_TOLERANCE = 0.01  # top-1 within this of the largest class's share counts as chance
OVERFIT_EPOCHS = 3  # epochs in a row with the gap below
OVERFIT_MARGIN = 0.15  # train top-1 minus val top-1
ORDERED_RATIO = 0.5  # label changes between neighbours below this share of a shuffle's
MIN_EXPECTED_CHANGES = 10  # judge the ratio only where a shuffle would change this often


def loss_rising_at_chance(evals: Sequence[dict[str, Any]], k: int = LOSS_RISE_EVALS,
                          tolerance: float = CHANCE_TOLERANCE) -> bool:
    """True when each of the last ``k`` evaluations (dicts with ``val_loss``, ``val_top1``,
    ``chance``) has a higher ``val_loss`` than the one before and a ``val_top1`` within
    ``tolerance`` of ``chance``. Needs ``k + 1`` evaluations."""
    if len(evals) < k + 1:
        return False
    last = evals[-(k + 1):]
    rising = all(b["val_loss"] > a["val_loss"] for a, b in zip(last, last[1:], strict=False))
    at_chance = all(e["val_top1"] <= e["chance"] + tolerance for e in last[1:])
    return rising and at_chance


def loss_rising_message(evals: Sequence[dict[str, Any]], lr: float,
                        k: int = LOSS_RISE_EVALS) -> str:
    first, last = evals[-(k + 1)], evals[-1]
    return (f"validation loss rose for {k} evaluations in a row ({first['val_loss']:.4f} -> "
            f"{last['val_loss']:.4f}) while top-1 {last['val_top1']:.3f} stays at chance "
            f"({last['chance']:.3f}): learning rate too high? try --lr {lr / 10:g}")


def overfitting(history: Sequence[dict[str, Any]], k: int = OVERFIT_EPOCHS,
                margin: float = OVERFIT_MARGIN) -> bool:
    """True when the last ``k`` epochs all have ``train_top1 - val_top1 > margin``."""
    last = [h for h in history if "val_top1" in h][-k:]
    return len(last) == k and all(h["train_top1"] - h["val_top1"] > margin for h in last)


def overfitting_message(history: Sequence[dict[str, Any]], weight_decay: float,
                        best_epoch: int | None, k: int = OVERFIT_EPOCHS) -> str:
    h = history[-1]
    best = f"; the best val top-1 was at epoch {best_epoch}" if best_epoch else ""
    return (f"overfitting: train top-1 {h['train_top1']:.3f} vs val top-1 {h['val_top1']:.3f}, "
            f"a gap over {OVERFIT_MARGIN:g} for {k} epochs: more augmentation (--scale-jitter, "
            "--random-resized-crop, --color-jitter, --rotate), weight decay (--weight-decay "
            f"{max(weight_decay * 5, 5e-4):g}, now {weight_decay:g}), fewer epochs "
            f"(--epochs, --early-stop){best}")


def label_order(labels: Sequence[int]) -> tuple[float, float]:
    """(share of neighbouring samples with the same label, the share a shuffled order gives in
    expectation: the sum over classes of (count / n)^2). (0, 0) for fewer than 2 labels."""
    n = len(labels)
    if n < 2:
        return 0.0, 0.0
    same = sum(a == b for a, b in zip(labels, labels[1:], strict=False)) / (n - 1)
    expected = sum((c / n) ** 2 for c in Counter(labels).values())
    return same, expected


def sorted_shard_message(labels: Sequence[int], shard: str, buffer: int,
                         num_samples: int | None, num_classes: int) -> str | None:
    """The warning for a shard whose labels come in runs (written in class order), or None.

    Counts label changes between neighbours against the ``(n - 1) * (1 - expected)`` a
    shuffled shard gives (see :func:`label_order`). Warns when the data has more than one
    class, the shard holds 32 samples or more, the shuffle buffer is smaller than the data
    (``num_samples``; None: unknown), and the shard holds one class only, or its labels change
    less than :data:`ORDERED_RATIO` as often as a shuffle's would (judged where a shuffle
    changes at least :data:`MIN_EXPECTED_CHANGES` times, so small imbalanced shards do not
    trip it by chance)."""
    n = len(labels)
    if num_classes < 2 or n < 32 or buffer >= (num_samples or float("inf")):
        return None
    same, expected = label_order(labels)
    changes, shuffled = (n - 1) * (1 - same), (n - 1) * (1 - expected)
    one_class = len(set(labels)) == 1
    if not one_class and (shuffled < MIN_EXPECTED_CHANGES or changes >= ORDERED_RATIO * shuffled):
        return None
    return (f"{shard}: its {n} labels change {changes:.0f} times between neighbours, where a "
            f"shuffled shard changes about {shuffled:.0f} times: the shards look sorted by "
            f"class, and --shuffle-buffer {buffer} mixes only a window of them, so batches "
            "hold one or two classes; write the shards with `dataprep shard --shuffle`")
