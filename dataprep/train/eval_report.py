"""The evaluation report: tables from an :class:`EvalResult`, then files.

Tables (pure numpy, on the primary mode): :func:`confusion_matrix`, :func:`per_class_rows`,
:func:`per_tag_rows`, :func:`misclassified_rows`. Files (:func:`write_report`):
``metrics.json``, ``confusion.csv`` (counts; rows true, columns predicted),
``confusion_normalized.csv`` (rows sum to 1), ``confusion.png`` (both), ``per_class.csv``,
``misclassified.csv``, ``misclassified.png`` (contact sheet grouped by true class),
``per_tag.csv`` (when samples carry tags) and ``report.md`` tying them together.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from dataprep.train.eval_result import EvalResult

SHEET_MAX_ROWS = 30  # classes shown in misclassified.png (those with most errors)


# -- tables -------------------------------------------------------------------------------------


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    flat = labels.astype(np.int64) * num_classes + pred.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes,
                                                                          num_classes)


def row_normalized(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows of unseen classes stay 0)."""
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros(cm.shape, dtype=np.float64), where=sums > 0)


def per_class_rows(result: EvalResult) -> list[dict[str, Any]]:
    """class, support, correct, top1 (recall), precision, most_confused_with, confused_count."""
    mode = result.modes[result.primary]
    cm = confusion_matrix(result.labels, mode.pred, len(result.classes))
    rows = []
    for i, name in enumerate(result.classes):
        support, correct, predicted = int(cm[i].sum()), int(cm[i, i]), int(cm[:, i].sum())
        off = cm[i].copy()
        off[i] = -1
        j = int(off.argmax())
        confused = int(off[j]) if len(off) > 1 else 0
        rows.append({"class": name, "support": support, "correct": correct,
                     "top1": correct / support if support else None,
                     "precision": correct / predicted if predicted else None,
                     "most_confused_with": result.classes[j] if confused > 0 else "",
                     "confused_count": confused})
    return rows


def per_tag_rows(result: EvalResult) -> list[dict[str, Any]]:
    """tag, samples, correct, top1 (primary mode), then ``top1_<mode>`` for every mode."""
    by_tag: dict[str, list[int]] = {}
    for i, tags in enumerate(result.tags):
        for t in tags:
            by_tag.setdefault(t, []).append(i)
    rows = []
    for tag in sorted(by_tag):
        idx = np.asarray(by_tag[tag])
        y = result.labels[idx]
        row: dict[str, Any] = {"tag": tag, "samples": len(idx)}
        primary = result.modes[result.primary]
        row["correct"] = int((primary.pred[idx] == y).sum())
        row["top1"] = row["correct"] / len(idx)
        for name, mode in result.modes.items():
            row[f"top1_{name}"] = float((mode.pred[idx] == y).mean())
        rows.append(row)
    return rows


def misclassified_rows(result: EvalResult) -> list[dict[str, Any]]:
    """Errors of the primary mode, by true class (class order), most confident first."""
    mode = result.modes[result.primary]
    wrong = np.flatnonzero(mode.pred != result.labels)
    order = sorted(wrong, key=lambda i: (int(result.labels[i]), -float(mode.conf[i]),
                                         result.keys[i]))
    return [{"key": result.keys[i], "path": result.paths[i],
             "true": result.classes[int(result.labels[i])],
             "predicted": result.classes[int(mode.pred[i])],
             "confidence": float(mode.conf[i]), "true_prob": float(mode.true_prob[i])}
            for i in order]


def _sheet_groups(rows: list[dict[str, Any]], per_class: int) -> list[tuple[str, list[dict]]]:
    """(true class, its first ``per_class`` errors) for the classes with most errors."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["true"], []).append(r)
    ranked = sorted(groups, key=lambda c: -len(groups[c]))[:SHEET_MAX_ROWS]
    keep = [c for c in groups if c in ranked]  # class order, as the CSV
    return [(c, groups[c][:per_class]) for c in keep]


def sheet_keys(result: EvalResult, per_class: int) -> set[str]:
    """Keys of the images ``misclassified.png`` shows."""
    return {r["key"] for _, rows in _sheet_groups(misclassified_rows(result), per_class)
            for r in rows}


# -- files --------------------------------------------------------------------------------------


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else
                        (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in columns])
    os.replace(tmp, path)


def write_matrix(path: str | Path, matrix: np.ndarray, classes: list[str]) -> None:
    rows = [{"true \\ predicted": name, **{c: matrix[i, j] for j, c in enumerate(classes)}}
            for i, name in enumerate(classes)]
    as_float = [{k: (float(v) if isinstance(v, np.floating) else
                     int(v) if isinstance(v, np.integer) else v) for k, v in r.items()}
                for r in rows]
    write_csv(path, as_float, ["true \\ predicted", *classes])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def _short(name: str, n: int = 18) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def plot_confusion(cm: np.ndarray, classes: list[str], path: str | Path, title: str = "") -> None:
    """Counts (left) and row-normalized (right); class names on both axes, values in the cells
    when there are at most 30 classes."""
    plt = _pyplot()
    n = len(classes)
    side = min(4 + 0.45 * n, 30)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side), constrained_layout=True)
    norm = row_normalized(cm)
    names = [_short(c) for c in classes]
    for ax, values, label, fmt in ((axes[0], cm, "count", "d"),
                                   (axes[1], norm, "fraction of the true class", ".2f")):
        im = ax.imshow(values, cmap="Blues", vmin=0)
        ax.set_xticks(range(n), names, rotation=45 if n > 3 else 0, ha="right" if n > 3 else
                      "center", fontsize=8 if n > 20 else 10)
        ax.set_yticks(range(n), names, fontsize=8 if n > 20 else 10)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{label}")
        fig.colorbar(im, ax=ax, shrink=0.8)
        if n <= 30:
            top = values.max() if values.size else 0
            for i in range(n):
                for j in range(n):
                    v = values[i, j]
                    ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=8,
                            color="white" if top and v > 0.6 * top else "black")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_misclassified(rows: list[dict[str, Any]], thumbs: dict[str, Image.Image],
                       path: str | Path, per_class: int = 8, title: str = "") -> None:
    """A contact sheet: one row per true class (its most confident errors), each image titled
    with the predicted class and its probability."""
    plt = _pyplot()
    groups = _sheet_groups(rows, per_class)
    if not groups:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=12)
        ax.axis("off")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["true"]] = counts.get(r["true"], 0) + 1
    ncols = max(len(g) for _, g in groups)
    fig, axes = plt.subplots(len(groups), ncols, figsize=(1.6 * ncols + 1.2,
                                                          1.9 * len(groups) + 0.6),
                             squeeze=False, constrained_layout=True)
    for r_i, (true, items) in enumerate(groups):
        for c_i in range(ncols):
            ax = axes[r_i][c_i]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(c_i < len(items))
            if c_i < len(items):
                item = items[c_i]
                img = thumbs.get(item["key"])
                if img is not None:
                    ax.imshow(np.asarray(img))
                ax.set_title(f"→ {_short(item['predicted'], 14)}\n{item['confidence']:.2f}",
                             fontsize=7)
            if c_i == 0:
                ax.set_ylabel(f"{_short(true)}\n({counts[true]} wrong)", fontsize=8)
    fig.suptitle(title or "misclassified, by true class (→ predicted, probability)",
                 fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def metrics_dict(result: EvalResult) -> dict[str, Any]:
    primary = result.modes[result.primary]
    cm = confusion_matrix(result.labels, primary.pred, len(result.classes))
    return {
        **result.info,
        "num_samples": result.num_samples,
        "skipped": result.skipped,
        "classes": result.classes,
        "modes": {r["mode"]: {k: v for k, v in r.items() if k != "mode"}
                  for r in result.table()},
        "primary": result.primary,
        "primary_reason": result.primary_reason,
        "per_class": per_class_rows(result),
        "per_tag": per_tag_rows(result),
        "confusion": cm.tolist(),
        "misclassified": int((primary.pred != result.labels).sum()),
    }


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def report_markdown(result: EvalResult, files: list[str], per_class_sheet: int) -> str:
    """``report.md``: what was evaluated, the modes, then the primary mode's per-class table,
    confusion matrix, tags and errors, and links to every file."""
    lines = ["# Evaluation report", ""]
    lines += _md_setup(result)
    lines += _md_modes(result)
    lines += _md_per_class(result)
    lines += ["", "## Confusion matrix", "", "![confusion matrix](confusion.png)", "",
              "Rows are true classes, columns predicted ones: counts on the left, each row "
              "divided by its class's support on the right ([confusion.csv](confusion.csv), "
              "[confusion_normalized.csv](confusion_normalized.csv)).", ""]
    tag_rows = per_tag_rows(result)
    if tag_rows:
        lines += ["## Accuracy per tag", "", "| tag | samples | top-1 |", "| --- | ---: | ---: |"]
        lines += [f"| {_md(r['tag'])} | {r['samples']} | {_pct(r['top1'])} |" for r in tag_rows]
        lines += ["", "Per mode in [per_tag.csv](per_tag.csv).", ""]
    lines += _md_misclassified(result, per_class_sheet)
    lines += ["## Files", "", ", ".join(f"[{f}]({f})" for f in files), ""]
    return "\n".join(lines)


def _md_setup(result: EvalResult) -> list[str]:
    """The checkpoint (and how it trained), the data, the views and the device."""
    info = result.info
    trained = []
    if info.get("epochs") is not None:
        trained.append(f"after epoch {info['epochs']}")
    if info.get("best_val_top1") is not None:
        trained.append(f"training's best val top-1 {info['best_val_top1']:.4f} at epoch "
                       f"{info.get('best_epoch')}")
    what = f"model `{info.get('model', '?')}`" + (f", {'; '.join(trained)}" if trained else "")
    return [f"- checkpoint: `{info['checkpoint']}` ({what})" if info.get("checkpoint")
            else f"- {what}",
            f"- data: `{info['data']}`, split `{info['split']}`: {result.num_samples} images, "
            f"{len(result.classes)} classes"
            + (f", {len(result.skipped)} unreadable (skipped)" if result.skipped else ""),
            f"- views: {info.get('img_size', '')} px crops from images resized to a "
            f"{info.get('short_side', '')} px short side; `resize` squashes the whole image",
            f"- device: {info['device']}, batch size {info['batch_size']}", ""]


def _md_modes(result: EvalResult) -> list[str]:
    lines = ["## Test-time modes", "",
             "| mode | views | top-1 | top-5 | class-mean top-1 | images/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in result.table():
        name = f"**{row['mode']}**" if row["mode"] == result.primary else row["mode"]
        lines.append(f"| {name} | {row['views']} | {row['top1']:.4f} | {row['top5']:.4f} | "
                     f"{row['class_mean_top1']:.4f} | {row['images_per_s']:.1f} |")
    lines += ["", "class-mean top-1 is the mean of the per-class top-1 (balanced accuracy). "
              "images/s counts decoding plus the mode's own views and forward passes. "
              f"The sections below describe **{result.primary}** ({result.primary_reason}).", ""]
    return lines


def _md_per_class(result: EvalResult) -> list[str]:
    lines = ["## Per class", "", "| class | support | top-1 | precision | most confused with |",
             "| --- | ---: | ---: | ---: | --- |"]
    for r in per_class_rows(result):
        confused = f"{_md(r['most_confused_with'])} ({r['confused_count']})" \
            if r["most_confused_with"] else ""
        lines.append(f"| {_md(r['class'])} | {r['support']} | {_pct(r['top1'])} | "
                     f"{_pct(r['precision'])} | {confused} |")
    return lines


def _md_misclassified(result: EvalResult, per_class_sheet: int) -> list[str]:
    """How many are wrong, the contact sheet, and the ten most confident errors."""
    wrong = misclassified_rows(result)
    share = len(wrong) / max(result.num_samples, 1)
    lines = ["## Misclassified images", "",
             f"{len(wrong)} of {result.num_samples} images ({100 * share:.1f}%) are "
             f"misclassified. The sheet shows up to {per_class_sheet} per true class, most "
             "confident error first; [misclassified.csv](misclassified.csv) lists them all.",
             "", "![misclassified images](misclassified.png)", ""]
    if wrong:
        lines += ["Most confident errors:", "", "| key | true | predicted | probability |",
                  "| --- | --- | --- | ---: |"]
        for r in sorted(wrong, key=lambda r: -r["confidence"])[:10]:
            lines.append(f"| {_md(r['key'])} | {_md(r['true'])} | {_md(r['predicted'])} | "
                         f"{r['confidence']:.3f} |")
        lines.append("")
    return lines


def write_report(result: EvalResult, out: str | Path, thumbs: dict[str, Image.Image],
                 per_class_sheet: int = 8) -> list[str]:
    """Write every report file into ``out``; returns their names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    primary = result.modes[result.primary]
    cm = confusion_matrix(result.labels, primary.pred, len(result.classes))
    files = ["report.md", "metrics.json", "confusion.csv", "confusion_normalized.csv",
             "confusion.png", "per_class.csv", "misclassified.csv", "misclassified.png"]
    write_matrix(out / "confusion.csv", cm, result.classes)
    write_matrix(out / "confusion_normalized.csv", row_normalized(cm), result.classes)
    plot_confusion(cm, result.classes, out / "confusion.png",
                   title=f"{result.info.get('model', '')} — {result.primary}, "
                         f"top-1 {primary.top1(result.labels):.4f} on {result.num_samples}")
    write_csv(out / "per_class.csv", per_class_rows(result),
              ["class", "support", "correct", "top1", "precision", "most_confused_with",
               "confused_count"])
    wrong = misclassified_rows(result)
    write_csv(out / "misclassified.csv", wrong,
              ["key", "path", "true", "predicted", "confidence", "true_prob"])
    plot_misclassified(wrong, thumbs, out / "misclassified.png", per_class_sheet)
    tag_rows = per_tag_rows(result)
    if tag_rows:
        write_csv(out / "per_tag.csv", tag_rows,
                  ["tag", "samples", "correct", "top1", *[f"top1_{m}" for m in result.modes]])
        files.append("per_tag.csv")
    metrics = json.dumps(metrics_dict(result), indent=2) + "\n"
    (out / "metrics.json").write_text(metrics, encoding="utf-8")
    (out / "report.md").write_text(report_markdown(result, files, per_class_sheet),
                                   encoding="utf-8")
    return files
