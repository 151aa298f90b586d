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

This module reads SRC and runs the model; :mod:`~dataprep.train.predict_output` holds the
result and writes the files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataprep.errors import ImageError, SourceError, UsageError
from dataprep.io.scan import IMAGE_EXTENSIONS, LIST_SUFFIXES, natural_key
from dataprep.records import Record, make_key
from dataprep.train.predict_output import PredictResult, write_outputs

SHEET_COUNT = 48  # images on the contact sheet unless told


@dataclass
class Inputs:
    """What SRC holds: records (``label`` -1 when unknown), the data's class names, the
    entries that could not be listed, and whether labels are used."""

    records: list[Record] | Iterator[Record]
    classes: list[str]
    errors: list[dict[str, str]]
    count: int | None
    eager: bool


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
    from dataprep.train.evaluate import resolve_device
    from dataprep.train.tta import predict as tta_predict

    mode = _check_flags(mode, top_k, batch_size)
    mapping, note = model_labels(inputs.classes, loaded.classes, use_labels)
    dev = resolve_device(device)
    model = loaded.model.to(dev).eval()
    scores = _Scores(mapping, len(loaded.classes), min(top_k, len(loaded.classes)))
    records, sheet = _sheet(inputs, mapping, sheet_count, thumb_size)
    skipped = [{"path": e["path"], "reason": e["reason"]} for e in inputs.errors]
    bar = _bar(inputs.count, progress)
    start = time.perf_counter()
    for chunk in _chunks(records, batch_size):
        images, kept = _decode(chunk, sheet, len(scores.keys), skipped)
        if kept:
            scores.add(kept, tta_predict(model, images, mode, loaded.spec, mean=loaded.mean,
                                         std=loaded.std, device=dev, batch_size=batch_size))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    if not scores.keys:
        first = f": {skipped[0]['reason']}" if skipped else ""
        raise UsageError(f"no image of SRC could be read{first}")
    info = dict(loaded.info, img_size=loaded.spec.crop, short_side=loaded.spec.short_side,
                device=str(dev), batch_size=batch_size, top_k=scores.k)
    return scores.result(list(loaded.classes), mode, seconds, skipped, info, note), sheet.thumbs


def _check_flags(mode: str, top_k: int, batch_size: int) -> str:
    """The one test-time mode ``mode`` names; refuses a bad ``--top-k`` / ``--batch-size``."""
    from dataprep.train.tta import parse_modes

    modes = parse_modes(mode)
    if len(modes) != 1:
        raise UsageError(f"--tta {mode!r}: predict writes one mode's probabilities; pass one "
                         "of resize, center, five, ten, flip, mix")
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    return modes[0]


@dataclass
class _Sheet:
    """The contact sheet's pick: the records chosen by identity (sample keys are not unique:
    "a,b.jpg" and "a_b.jpg" share one), or None for the first ``count`` readable images; and
    the thumbnails taken, by the image's index in the result."""

    ids: set[int] | None
    count: int
    size: int
    thumbs: dict[int, Image.Image] = field(default_factory=dict)

    def offer(self, r: Record, image: Image.Image, index: int) -> None:
        """Keep a thumbnail of ``image`` (result index ``index``) if the sheet shows it."""
        want = id(r) in self.ids if self.ids is not None else len(self.thumbs) < self.count
        if want:
            thumb = image.copy()
            thumb.thumbnail((self.size, self.size))
            self.thumbs[index] = thumb


def _sheet(inputs: Inputs, mapping: list[int] | None, count: int,
           size: int) -> tuple[Any, _Sheet]:
    """The records to predict and the sheet's pick: labelled sources spread over the
    classes, others (and sources read lazily) the first readable images."""
    from dataprep.jobs.preview import pick_records

    if not inputs.eager:
        return inputs.records, _Sheet(None, count, size)
    records = list(inputs.records)
    labelled = [r for r in records if r.label >= 0] if mapping else []
    ids = {id(r) for r in pick_records(labelled, count)} if labelled else None
    return records, _Sheet(ids, count, size)


def _decode(chunk: list[Record], sheet: _Sheet, first: int,
            skipped: list[dict[str, str]]) -> tuple[list[Image.Image], list[Record]]:
    """The chunk's images by the project's decoding rules, and their records; an image that
    cannot be read goes to ``skipped``. ``first``: the result index of the chunk's first
    image, for the sheet's thumbnails."""
    from dataprep.io.decode import open_image

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
        sheet.offer(r, images[-1], first + len(kept) - 1)
    return images, kept


@dataclass
class _Scores:
    """The chunks' predictions, gathered: top-k classes and probabilities, the probability
    of the true class and the top-5 hit (for labelled images)."""

    mapping: list[int] | None  # data label -> model label
    num_classes: int
    k: int
    paths: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    top_idx: list[np.ndarray] = field(default_factory=list)
    top_prob: list[np.ndarray] = field(default_factory=list)
    true_prob: list[np.ndarray] = field(default_factory=list)
    top5: list[np.ndarray] = field(default_factory=list)

    def add(self, kept: list[Record], probs: Any) -> None:
        import torch

        y = np.asarray([_model_label(r, self.mapping, self.num_classes) for r in kept],
                       dtype=np.int64)
        p, idx = probs.topk(self.k, dim=1)
        self.top_idx.append(idx.numpy().astype(np.int64))
        self.top_prob.append(p.numpy().astype(np.float32))
        safe = torch.from_numpy(np.where(y >= 0, y, 0))
        tp = probs.gather(1, safe[:, None])[:, 0].numpy().astype(np.float32)
        self.true_prob.append(np.where(y >= 0, tp, np.nan).astype(np.float32))
        hit = (probs.topk(min(5, self.num_classes), dim=1).indices == safe[:, None]).any(dim=1)
        self.top5.append(hit.numpy() & (y >= 0))
        self.labels.extend(int(v) for v in y)
        self.paths.extend(_display_path(r) for r in kept)
        self.keys.extend(r.key for r in kept)

    def result(self, classes: list[str], mode: str, seconds: float,
               skipped: list[dict[str, str]], info: dict[str, Any], note: str) -> PredictResult:
        return PredictResult(classes, mode, self.paths, self.keys,
                             np.asarray(self.labels, dtype=np.int64),
                             np.concatenate(self.top_idx), np.concatenate(self.top_prob),
                             np.concatenate(self.true_prob), np.concatenate(self.top5),
                             seconds, skipped, info=info, note=note)


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
