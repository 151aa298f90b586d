"""``predict(checkpoint, src, out) -> PredictResult``: a trained model on any images.

SRC is what a user has at hand, labelled or not:

* an image folder: ``root/<class>/<image>`` (labelled when the folder names are classes of
  the model), or a flat folder of photos (unlabelled); images directly in ``root`` beside
  class folders are read as unlabelled;
* a list file: ``path label`` lines (:func:`dataprep.io.scan.scan_list`), or one image path per
  line (unlabelled); a ``.jsonl`` manifest; WebDataset / LMDB shards (``--split``).

Every image is decoded by the project's rules (:func:`dataprep.io.decode.open_image`: EXIF
orientation, alpha composited on white, 16-bit and palette images converted) and turned into
views exactly as ``dataprep evaluate`` does, with the checkpoint's own crop size, short side and
normalization (:func:`dataprep.train.evaluate.load_model`, :func:`dataprep.train.tta.predict`):
the probabilities of a mode are those ``evaluate`` computes for the same image bytes. An image
that cannot be read is listed (``errors.csv``) and skipped, never fatal.

Writes into ``out`` (through :func:`dataprep.io.durable.write_atomic`: whole files or none):
``predictions.csv`` (one row per image: path, key, true class when known, the ``top_k`` classes
and probabilities), ``predictions.png`` (a contact sheet of at most ``sheet_count`` images with
their top-1 and confidence), ``predict.json`` (settings, counts, accuracy) and ``errors.csv``
when images were skipped. With labels, accuracy is the table ``dataprep evaluate`` prints.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from dataprep.errors import ImageError, SourceError, UsageError
from dataprep.io.scan import IMAGE_EXTENSIONS, LIST_SUFFIXES, natural_key
from dataprep.records import Record, make_key

SHEET_COUNT = 48  # images on the contact sheet unless told
SHEET_COLUMNS = 8
CORRECT = (20, 120, 40)
WRONG = (180, 30, 30)


@dataclass
class Inputs:
    """What SRC holds: records (``label`` -1 when unknown), the data's class names, the
    entries that could not be listed, and whether labels are used."""

    records: list[Record] | Iterator[Record]
    classes: list[str]
    errors: list[dict[str, str]]
    count: int | None
    eager: bool


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


# -- inputs -------------------------------------------------------------------------------------


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _top_images(root: Path) -> list[str]:
    """Image files directly in ``root`` (natural order)."""
    with os.scandir(root) as entries:
        found = [e.path for e in entries if _is_image_name(e.name) and e.is_file()]
    return sorted(found, key=lambda p: natural_key(os.path.basename(p)))


def _has_subfolders(root: Path) -> bool:
    with os.scandir(root) as entries:
        return any(e.is_dir() and not e.name.startswith(".") for e in entries)


def _unlabelled(paths: list[str], base: Path) -> list[Record]:
    return [Record(make_key(os.path.relpath(p, base)), os.path.abspath(p), -1, "")
            for p in paths]


def _path_list(list_file: Path) -> list[str] | None:
    """The paths of a list file holding one existing image path per line; None when its lines
    are not that (then it is a ``path label`` list)."""
    base = list_file.parent
    paths = []
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line) if os.path.isabs(line) else base / line
        if not path.name.lower().endswith(IMAGE_EXTENSIONS) or not path.is_file():
            return None
        paths.append(str(path))
    return paths or None


def read_inputs(src: str | Path, split: str | None = None) -> Inputs:
    """Records of SRC (see the module docstring); labels as the source has them."""
    from dataprep.io.scan import scan, scan_folder

    path = Path(src)
    if path.is_dir() and not any(path.glob("*.tar")) and not any(path.glob("*.lmdb")) \
            and not (path / "data.mdb").exists():
        top = _top_images(path)
        if top and not _has_subfolders(path):
            return Inputs(_unlabelled(top, path), [], [], len(top), True)
        try:
            source = scan_folder(path, packed=False)
        except SourceError:
            if not top:
                raise
            return Inputs(_unlabelled(top, path), [], [], len(top), True)
        records = list(source.records or []) + _unlabelled(top, path)
        return Inputs(records, list(source.classes), list(source.errors), len(records), True)
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        paths = _path_list(path)
        if paths is not None:
            return Inputs(_unlabelled(paths, path.parent), [], [], len(paths), True)
    source = scan(src, split=split, packed=False)
    if source.records is not None:
        return Inputs(list(source.records), list(source.classes), list(source.errors),
                      len(source.records), True)
    count = source.num_records
    return Inputs(iter(source), list(source.classes), list(source.errors), count, False)


def model_labels(data_classes: list[str], model_classes: list[str], use_labels: bool,
                 ) -> tuple[list[int] | None, str]:
    """Data label -> model label (None: no labels are used) and a note saying why.

    Labels are used when every class SRC names is a class of the model (in any order). When
    none is, SRC is read as unlabelled photos (a folder of albums, say); when only some are,
    that is an error naming them: the labels would be half wrong.
    """
    if not data_classes:
        return None, ""
    if not use_labels:
        return None, "labels ignored (--no-labels)"
    known = [c for c in data_classes if c in model_classes]
    if not known:
        return None, (f"SRC's class names ({', '.join(data_classes[:5])}"
                      f"{', ...' if len(data_classes) > 5 else ''}) are none of the model's "
                      "classes: read as unlabelled")
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise UsageError(f"SRC has classes the model was not trained on: {unknown[:5]}; the "
                         f"checkpoint knows {model_classes[:10]}; pass --no-labels to predict "
                         "without accuracy")
    return [model_classes.index(c) for c in data_classes], ""


def _chunks(records: Any, size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for r in records:
        chunk.append(r)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _display_path(r: Record) -> str:
    return r.path or r.key


# -- prediction ---------------------------------------------------------------------------------


def predict_images(loaded: Any, inputs: Inputs, *, mode: str = "center", top_k: int = 5,
                   batch_size: int = 64, device: str = "auto", use_labels: bool = True,
                   sheet_count: int = SHEET_COUNT, thumb_size: int = 160,
                   progress: bool = False) -> tuple[PredictResult, dict[str, Image.Image]]:
    """Run ``loaded`` (a :class:`~dataprep.train.evaluate.LoadedModel`) in test-time ``mode``
    over every record of ``inputs``; returns the result and thumbnails of the images the
    contact sheet shows (labelled sources: spread over the classes; others: the first)."""
    import torch

    from dataprep.io.decode import open_image
    from dataprep.jobs.preview import pick_records
    from dataprep.train.evaluate import resolve_device
    from dataprep.train.tta import parse_modes
    from dataprep.train.tta import predict as tta_predict

    modes = parse_modes(mode)
    if len(modes) != 1:
        raise UsageError(f"--tta {mode!r}: predict writes one mode's probabilities; pass one "
                         "of resize, center, five, ten, flip, mix")
    mode = modes[0]
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    mapping, note = model_labels(inputs.classes, loaded.classes, use_labels)
    dev = resolve_device(device)
    model = loaded.model.to(dev).eval()
    num_classes = len(loaded.classes)
    k = min(top_k, num_classes)
    if inputs.eager:
        records = list(inputs.records)
        labelled = [r for r in records if r.label >= 0] if mapping else []
        # labelled: spread over the classes; else the first readable images
        # by identity: sample keys are not unique ("a,b.jpg" and "a_b.jpg" share one)
        sheet_ids: set[int] | None = \
            {id(r) for r in pick_records(labelled, sheet_count)} if labelled else None
    else:
        records, sheet_ids = inputs.records, None
    thumbs: dict[int, Image.Image] = {}  # index of the image in the result -> thumbnail
    paths: list[str] = []
    keys: list[str] = []
    labels: list[int] = []
    top_idx: list[np.ndarray] = []
    top_prob: list[np.ndarray] = []
    true_prob: list[np.ndarray] = []
    top5: list[np.ndarray] = []
    skipped = [{"path": e["path"], "reason": e["reason"]} for e in inputs.errors]
    bar = _bar(inputs.count, progress)
    start = time.perf_counter()
    for chunk in _chunks(records, batch_size):
        images: list[Image.Image] = []
        kept: list[Record] = []
        for r in chunk:
            try:
                images.append(open_image(r.data if r.data is not None else r.path,
                                         name=_display_path(r)))
            except ImageError as exc:
                skipped.append({"path": _display_path(r), "reason": str(exc)})
                continue
            kept.append(r)
            want = id(r) in sheet_ids if sheet_ids is not None else len(thumbs) < sheet_count
            if want:
                thumb = images[-1].copy()
                thumb.thumbnail((thumb_size, thumb_size))
                thumbs[len(keys) + len(kept) - 1] = thumb
        if kept:
            probs = tta_predict(model, images, mode, loaded.spec, mean=loaded.mean,
                                std=loaded.std, device=dev, batch_size=batch_size)
            y = np.asarray([_model_label(r, mapping, num_classes) for r in kept],
                           dtype=np.int64)
            p, idx = probs.topk(k, dim=1)
            top_idx.append(idx.numpy().astype(np.int64))
            top_prob.append(p.numpy().astype(np.float32))
            safe = torch.from_numpy(np.where(y >= 0, y, 0))
            tp = probs.gather(1, safe[:, None])[:, 0].numpy().astype(np.float32)
            true_prob.append(np.where(y >= 0, tp, np.nan).astype(np.float32))
            hit = (probs.topk(min(5, num_classes), dim=1).indices == safe[:, None]).any(dim=1)
            top5.append(hit.numpy() & (y >= 0))
            labels.extend(int(v) for v in y)
            paths.extend(_display_path(r) for r in kept)
            keys.extend(r.key for r in kept)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    if not keys:
        first = f": {skipped[0]['reason']}" if skipped else ""
        raise UsageError(f"no image of SRC could be read{first}")
    info = dict(loaded.info, img_size=loaded.spec.crop, short_side=loaded.spec.short_side,
                device=str(dev), batch_size=batch_size, top_k=k)
    result = PredictResult(list(loaded.classes), mode, paths, keys,
                           np.asarray(labels, dtype=np.int64), np.concatenate(top_idx),
                           np.concatenate(top_prob), np.concatenate(true_prob),
                           np.concatenate(top5), seconds, skipped, info=info, note=note)
    return result, thumbs


def _model_label(r: Record, mapping: list[int] | None, num_classes: int) -> int:
    if mapping is None or r.label < 0:
        return -1
    if r.label >= len(mapping):
        raise UsageError(f"{_display_path(r)} has label {r.label}, beyond SRC's "
                         f"{len(mapping)} classes")
    label = mapping[r.label]
    return label if label < num_classes else -1


def _bar(total: int | None, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predict", unit="img", dynamic_ncols=True, leave=False)


# -- outputs ------------------------------------------------------------------------------------


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


def predict(checkpoint: str | Path, src: str | Path, out: str | Path, *, mode: str = "center",
            top_k: int = 5, batch_size: int = 64, device: str = "auto",
            use_labels: bool = True, split: str | None = None,
            sheet_count: int = SHEET_COUNT, cell: int = 128,
            progress: bool = False) -> PredictResult:
    """Predict every image of ``src`` with the checkpoint and write ``out`` (see the module
    docstring). Raises :class:`UsageError` for a bad checkpoint, bad flags, an ``out`` inside
    ``src``, or when no image can be read."""
    from dataprep.jobs.output import OutputFolder
    from dataprep.train.evaluate import load_model

    if sheet_count < 0:
        raise UsageError(f"--sheet-count must be at least 0, got {sheet_count}")
    loaded = load_model(checkpoint)
    inputs = read_inputs(src, split)
    folder = OutputFolder(out)
    folder.check_target()
    folder.check_inputs([str(src)], inputs.records if inputs.eager else ())  # type: ignore
    result, thumbs = predict_images(loaded, inputs, mode=mode, top_k=top_k,
                                    batch_size=batch_size, device=device,
                                    use_labels=use_labels, sheet_count=sheet_count,
                                    thumb_size=cell, progress=progress)
    result.info["src"] = str(src)
    with folder.locked():
        write_outputs(result, thumbs, Path(out), result.num_images, cell)
    return result
