"""What ``predict`` found (:class:`PredictResult`: each image's top-k classes and
probabilities, and with labels the accuracy table ``dataprep evaluate`` prints) and the files it
is written to: ``predictions.csv``, the contact sheet ``predictions.png``, ``errors.csv`` and
``predict.json`` (written last: it marks a complete folder).

The contact sheet is built from :mod:`dataprep.jobs.preview`'s layout constants and fonts:
each thumbnail with its top-1 class and probability, green when right, red (with the true
class) when wrong.
"""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

SHEET_COLUMNS = 8
CORRECT = (20, 120, 40)
WRONG = (180, 30, 30)


@dataclass
class PredictResult:
    classes: list[str]  # the model's
    mode: str
    paths: list[str]
    keys: list[str]
    labels: np.ndarray  # int64 model label; -1 when the image has none
    top_idx: np.ndarray  # (N, k) int64 classes, most probable first
    top_prob: np.ndarray  # (N, k) float32 their probabilities
    true_prob: np.ndarray  # float32 probability of the true class (nan without a label)
    top5_hit: np.ndarray  # bool (False without a label)
    seconds: float
    skipped: list[dict[str, str]] = field(default_factory=list)  # path, reason
    sheet: dict[str, Any] = field(default_factory=dict)  # path, shown, total
    info: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # how labels were read (or why not)

    @property
    def num_images(self) -> int:
        return len(self.keys)

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0

    def evaluation(self) -> Any:
        """The labelled images as an :class:`~dataprep.train.eval_result.EvalResult` of this one
        mode (None without labels): its ``lines()`` are ``evaluate``'s table."""
        from dataprep.train.eval_result import EvalResult, ModeResult
        from dataprep.train.tta import VIEWS

        mask = self.labelled
        if not mask.any():
            return None
        share = mask.sum() / max(len(mask), 1)
        mode = ModeResult(VIEWS[self.mode], self.top_idx[mask, 0],
                          self.top_prob[mask, 0], self.true_prob[mask], self.top5_hit[mask],
                          self.seconds * float(share))
        keys = [k for k, m in zip(self.keys, mask, strict=True) if m]
        paths = [p for p, m in zip(self.paths, mask, strict=True) if m]
        return EvalResult(list(self.classes), keys, paths, self.labels[mask],
                          [()] * len(keys), {self.mode: mode}, self.mode, "--tta", [],
                          dict(self.info))

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i in range(self.num_images):
            row: dict[str, Any] = {"path": self.paths[i], "key": self.keys[i],
                                   "true": self.classes[self.labels[i]]
                                   if self.labels[i] >= 0 else ""}
            for j in range(self.top_idx.shape[1]):
                row[f"class_{j + 1}"] = self.classes[int(self.top_idx[i, j])]
                row[f"prob_{j + 1}"] = float(self.top_prob[i, j])
            out.append(row)
        return out

    def lines(self) -> list[str]:
        out = [f"{self.num_images} images, {len(self.classes)} classes, "
               f"{self.info.get('model', '?')} on {self.info.get('device', '?')}, "
               f"--tta {self.mode}, {self.num_images / self.seconds if self.seconds else 0:.1f} "
               "images/s"]
        if self.note:
            out.append(self.note)
        result = self.evaluation()
        if result is not None:
            out += result.lines()
            wrong = int((result.modes[self.mode].pred != result.labels).sum())
            out.append(f"{result.num_samples} labelled images; {wrong} misclassified")
        if self.skipped:
            out.append(f"{len(self.skipped)} unreadable image(s) skipped (listed in "
                       f"errors.csv), e.g. {self.skipped[0]['reason']}")
        if self.sheet:
            capped = (f" (capped: {self.sheet['shown']} of {self.sheet['total']}; "
                      "--sheet-count)") if self.sheet["shown"] < self.sheet["total"] else ""
            out.append(f"contact sheet: {self.sheet['path']}, {self.sheet['shown']} images"
                       + capped)
        return out


def predictions_csv(result: PredictResult) -> bytes:
    """``path,key,true,class_1,prob_1,...,class_k,prob_k`` (``true`` empty when unknown;
    probabilities with 6 decimals)."""
    k = result.top_idx.shape[1]
    columns = ["path", "key", "true"] + [f"{c}_{j + 1}" for j in range(k)
                                         for c in ("class", "prob")]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in result.rows():
        w.writerow([f"{row[c]:.6f}" if isinstance(row[c], float) else row[c] for c in columns])
    return buf.getvalue().encode("utf-8")


def _printable(text: str) -> str:
    """``text`` with control characters (a newline in a file name) shown as ``?``: a caption
    is one line."""
    return "".join("?" if unicodedata.category(c) == "Cc" or c in "\u2028\u2029" else c
                   for c in text)


def contact_sheet(result: PredictResult, thumbs: dict[int, Image.Image], cell: int = 128,
                  columns: int = SHEET_COLUMNS, caption: str = "") -> Image.Image:
    """A grid of the thumbnails in prediction order, each with its top-1 class and
    probability below it; with a label, green when right and red (with the true class) when
    wrong. Built from :mod:`dataprep.jobs.preview`'s layout constants and fonts."""
    from dataprep.jobs.preview import BACKGROUND, CELL_BACKGROUND, GAP, INK, LINE, MARGIN, _font
    from dataprep.jobs.preview import _fit as fit_text

    order = [i for i in range(result.num_images) if i in thumbs]
    columns = max(1, min(columns, len(order)))
    rows = -(-len(order) // columns)
    text_lines = 2
    width = 2 * MARGIN + columns * cell + (columns - 1) * GAP
    height = 2 * MARGIN + LINE + rows * (cell + text_lines * LINE + GAP)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    draw.text((MARGIN, MARGIN + 1), fit_text(_printable(caption), draw, font, width - 2 * MARGIN),
              fill=INK, font=font)
    for n, i in enumerate(order):
        x = MARGIN + (n % columns) * (cell + GAP)
        y = MARGIN + LINE + (n // columns) * (cell + text_lines * LINE + GAP)
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=CELL_BACKGROUND)
        thumb = ImageOps.contain(thumbs[i], (cell, cell),
                                 Image.Resampling.BILINEAR)
        sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        pred = result.classes[int(result.top_idx[i, 0])]
        label = int(result.labels[i])
        color = INK if label < 0 else CORRECT if label == result.top_idx[i, 0] else WRONG
        first = _printable(f"{pred} {result.top_prob[i, 0]:.2f}")
        second = _printable(os.path.basename(result.paths[i]) if label < 0 or color == CORRECT
                            else f"true: {result.classes[label]}")
        draw.text((x, y + cell + 1), fit_text(first, draw, font, cell), fill=color, font=font)
        draw.text((x, y + cell + LINE + 1), fit_text(second, draw, font, cell),
                  fill=INK if color != WRONG else WRONG, font=font)
    return sheet


def errors_csv(skipped: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "reason"])
    for e in skipped:
        w.writerow([e["path"], e["reason"]])
    return buf.getvalue().encode("utf-8")


def write_outputs(result: PredictResult, thumbs: dict[int, Image.Image], out: Path,
                  total: int, cell: int = 128) -> None:
    """``predict.json`` marks a complete folder: an earlier run's is removed first and this
    run's written last; an earlier run's ``predictions.png``/``errors.csv`` that this run does
    not write are removed, so the folder never mixes two runs."""
    from dataprep.io.durable import unlink, write_atomic

    unlink(out / "predict.json")
    write_atomic(out / "predictions.csv", predictions_csv(result))
    shown = len(thumbs)
    if shown:
        capped = f"; {shown} of {total} images shown (--sheet-count)" if shown < total else ""
        caption = (f"{result.info.get('model', '')}, --tta {result.mode}: top-1 and its "
                   f"probability{capped}")
        buf = io.BytesIO()
        contact_sheet(result, thumbs, cell, caption=caption).save(buf, "PNG", optimize=True)
        write_atomic(out / "predictions.png", buf.getvalue())
        result.sheet = {"path": str(out / "predictions.png"), "shown": shown, "total": total}
    else:
        unlink(out / "predictions.png")  # from an earlier run into the same folder
    if result.skipped:
        write_atomic(out / "errors.csv", errors_csv(result.skipped))
    else:
        unlink(out / "errors.csv")  # from an earlier run into the same folder
    evaluation = result.evaluation()
    summary = {"checkpoint": result.info.get("checkpoint"), "src": result.info.get("src"),
               "mode": result.mode, "top_k": result.info.get("top_k"),
               "images": result.num_images, "labelled": int(result.labelled.sum()),
               "skipped": len(result.skipped), "seconds": result.seconds,
               "accuracy": evaluation.table() if evaluation is not None else None,
               "note": result.note, "sheet": result.sheet, "info": result.info}
    write_atomic(out / "predict.json", (json.dumps(summary, indent=2, default=str) + "\n"
                                        ).encode("utf-8"))
