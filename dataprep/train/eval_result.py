"""What an evaluation found: :class:`ModeResult` (the predictions of one test-time mode) and
:class:`EvalResult` (every mode over the same samples, plus their keys, labels and tags).

Plain data with the summary numbers derived from it; :mod:`dataprep.train.evaluate` fills
it, :mod:`dataprep.train.eval_report` and ``predict`` turn it into tables and files, so it
lives apart from both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ModeResult:
    """Predictions of one test-time mode, aligned with :attr:`EvalResult.keys`."""

    views: int
    pred: np.ndarray  # int64 predicted class
    conf: np.ndarray  # float32 probability of the predicted class
    true_prob: np.ndarray  # float32 probability of the true class
    top5_hit: np.ndarray  # bool: true class among the 5 most probable
    seconds: float  # shared decoding + this mode's views and forward passes

    def top1(self, labels: np.ndarray) -> float:
        return float((self.pred == labels).mean()) if len(labels) else 0.0

    def class_mean_top1(self, labels: np.ndarray) -> float:
        """Mean over the classes present of their top-1 (balanced accuracy): what a model
        trained on balanced classes should be judged by on an imbalanced set."""
        present = np.unique(labels)
        if not len(present):
            return 0.0
        return float(np.mean([(self.pred[labels == c] == c).mean() for c in present]))

    def top5(self) -> float:
        return float(self.top5_hit.mean()) if len(self.top5_hit) else 0.0

    def images_per_s(self) -> float:
        return len(self.pred) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class EvalResult:
    classes: list[str]
    keys: list[str]
    paths: list[str]
    labels: np.ndarray
    tags: list[tuple[str, ...]]
    modes: dict[str, ModeResult]
    primary: str
    primary_reason: str  # "best top-1" or "--primary"
    skipped: list[dict[str, str]] = field(default_factory=list)  # key, reason
    info: dict[str, Any] = field(default_factory=dict)  # checkpoint, data, split, device, ...

    @property
    def num_samples(self) -> int:
        return len(self.keys)

    def table(self) -> list[dict[str, Any]]:
        """One row per mode, in the order asked: mode, views, top1, class_mean_top1, top5,
        images_per_s, seconds."""
        return [{"mode": m, "views": r.views, "top1": r.top1(self.labels),
                 "class_mean_top1": r.class_mean_top1(self.labels), "top5": r.top5(),
                 "images_per_s": r.images_per_s(), "seconds": r.seconds}
                for m, r in self.modes.items()]

    def lines(self) -> list[str]:
        out = [f"{'mode':<8} {'views':>5} {'top-1':>7} {'top-5':>7} {'class-mean':>10} "
               f"{'images/s':>9}"]
        for row in self.table():
            mark = "  <- primary" if row["mode"] == self.primary else ""
            out.append(f"{row['mode']:<8} {row['views']:>5} {row['top1']:>7.4f} "
                       f"{row['top5']:>7.4f} {row['class_mean_top1']:>10.4f} "
                       f"{row['images_per_s']:>9.1f}{mark}")
        return out


def pick_primary(modes: dict[str, ModeResult], labels: np.ndarray) -> str:
    """The mode of best top-1; ties go to the mode with fewer views (the cheaper one)."""
    return max(modes, key=lambda m: (modes[m].top1(labels), -modes[m].views))

