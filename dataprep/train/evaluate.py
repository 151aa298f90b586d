"""``evaluate(checkpoint, data, out) -> EvalResult``: test-time modes on shards, then a report.

Stages: :func:`load_model` rebuilds the network from the configuration saved in the checkpoint
(``weights_only=True``); :func:`evaluate_model` streams DATA once (WebDataset directory, brace
pattern, ``http(s)://`` / ``pipe:`` URL or LMDB, read by the trainer's own source code), decodes
each chunk of ``batch_size`` images once and runs every asked mode of :mod:`dataprep.train.tta`
on it; :mod:`dataprep.train.eval_report` turns the predictions into tables, figures and
``report.md``.

images/s of a mode counts the shared decoding plus that mode's own cropping and forward passes:
about what a run of that mode alone would see. Per sample only the predicted class, its
probability, the true class's probability and the top-5 hit are kept, so memory stays
``O(samples)`` whatever the number of classes.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dataprep.errors import ImageError, ShardError, UsageError
from dataprep.io.decode import open_image
from dataprep.records import Sample
from dataprep.train.eval_result import EvalResult, ModeResult, pick_primary
from dataprep.train.tta import MODES, VIEWS, ViewSpec, parse_modes, predict

log = logging.getLogger("dataprep.train")

SPLIT_ORDER = ("val", "test", "train")  # the split read when --split is not given


@dataclass
class LoadedModel:
    model: torch.nn.Module
    classes: list[str]
    spec: ViewSpec
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    info: dict[str, Any] = field(default_factory=dict)  # model name, epochs, best val top-1


# -- model --------------------------------------------------------------------------------------


def load_model(checkpoint: str | Path) -> LoadedModel:
    """The network of a ``dataprep train`` checkpoint, with its classes and pixel settings.

    Model name, classes, ``img_size``, ``short_side`` and normalization come from the
    configuration saved in the checkpoint. Raises :class:`UsageError` for files that are not
    dataprep checkpoints or whose weights do not fit the saved model.
    """
    from dataprep.train.checkpoint import load_checkpoint
    from dataprep.train.config import TrainConfig
    from dataprep.train.models import build_model

    path = Path(checkpoint)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist; pass RUN/best.pt or RUN/last.pt "
                         "of a `dataprep train` run")
    state = load_checkpoint(path)
    if not isinstance(state.get("config"), dict) or not isinstance(state.get("model"), dict):
        raise UsageError(f"{path} has no saved config/model; it was not written by "
                         "`dataprep train`")
    cfg = TrainConfig.from_dict(state["config"])
    classes = [str(c) for c in (state.get("classes") or cfg.classes)]
    num_classes = cfg.num_classes or len(classes)
    if not num_classes:
        raise UsageError(f"{path}: its config names no classes and no --num-classes")
    if not classes:
        classes = [str(i) for i in range(num_classes)]
    built = build_model(cfg.model, num_classes)
    weights = {k.removeprefix("module."): v for k, v in state["model"].items()}
    try:
        built.model.load_state_dict(weights)
    except RuntimeError as exc:
        raise UsageError(f"{path}: the weights do not fit model {cfg.model} with "
                         f"{num_classes} classes: {exc}") from exc
    info = {"checkpoint": str(path), "model": cfg.model, "img_size": cfg.img_size,
            "short_side": cfg.crop_short_side, "epochs": state.get("epoch"),
            "best_epoch": state.get("best_epoch"), "best_val_top1": state.get("best_top1"),
            "trained_on": cfg.data}
    return LoadedModel(built.model, classes, ViewSpec(cfg.img_size, cfg.crop_short_side),
                       cfg.mean, cfg.std, info)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device {device!r}: expected auto, cpu or cuda")
    return torch.device(device)


# -- data ---------------------------------------------------------------------------------------


def pick_split(data: str, split: str | None) -> str:
    """``split`` when given; else the first of val, test, train that DATA holds (``val`` for
    sources without split names: patterns, single tars, URLs of tars)."""
    if split:
        return split
    from dataprep.train.sources import has_split

    return next((s for s in SPLIT_ORDER if has_split(data, s)), "val")


@contextlib.contextmanager
def open_source(data: str, split: str, cache_dir: str | None = None) -> Iterator[tuple]:
    """(source, samples iterator) of DATA's ``split``; remote shards go through a shard cache
    (a temporary one unless ``cache_dir``)."""
    from dataprep.train.cache import ShardCache
    from dataprep.train.reading import iter_part
    from dataprep.train.sources import resolve_source

    source = resolve_source(data, split)
    with contextlib.ExitStack() as stack:
        cache = None
        if source.remote:
            folder = cache_dir or stack.enter_context(tempfile.TemporaryDirectory())
            cache = ShardCache(folder, 4 * 1000**3)
        yield source, (s for part in source.parts for s in iter_part(part, cache))


def read_tags(path: str | Path) -> dict[str, tuple[str, ...]]:
    """``key,tag`` rows (a header row ``key,tag`` is skipped; a key may have several rows).

    The first column is matched against a sample's key or its source path.
    """
    import csv

    tags: dict[str, list[str]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f)):
                if not row or not row[0].strip() or row[0].startswith("#"):
                    continue
                if len(row) < 2:
                    raise UsageError(f"--tags {path}: line {i + 1} has no tag column; expected "
                                     "rows of key,tag")
                if i == 0 and row[0].strip().lower() == "key":
                    continue
                tags.setdefault(row[0].strip(), []).append(row[1].strip())
    except OSError as exc:
        raise UsageError(f"--tags {path}: cannot read it ({exc})") from exc
    return {k: tuple(dict.fromkeys(v)) for k, v in tags.items()}


def sample_tags(meta: dict[str, Any]) -> tuple[str, ...]:
    """Tags a sample's json carries: ``tags`` (list or comma-separated text) or ``tag``."""
    value = meta.get("tags", meta.get("tag"))
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value) \
        if isinstance(value, (list, tuple)) else [value]
    return tuple(dict.fromkeys(str(t).strip() for t in items if str(t).strip()))


def label_map(data_classes: list[str], model_classes: list[str]) -> list[int] | None:
    """Data label -> model label when both name their classes in different orders; None when
    they agree (or the data names none). Raises :class:`UsageError` for unknown classes."""
    if not data_classes or data_classes == model_classes:
        return None
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise UsageError(f"DATA has classes the model was not trained on: {unknown[:5]}; "
                         f"the checkpoint knows {model_classes[:10]}")
    return [model_classes.index(c) for c in data_classes]


def _chunks(samples: Iterator[Sample], size: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for s in samples:
        chunk.append(s)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_stored(sample: Sample) -> None:
    if "view" in sample.meta and "source" in sample.meta:
        raise UsageError(
            f"sample {sample.key} is one materialized view of {sample.meta['source']}; evaluate "
            "needs one stored image per record to cut its own views: pass shards written by "
            "`dataprep resize` (or `dataprep tencrop --views lazy`)")


# -- evaluation ---------------------------------------------------------------------------------


def evaluate_model(loaded: LoadedModel, data: str, *, modes: tuple[str, ...] = MODES,
                   primary: str | None = None, split: str | None = None, batch_size: int = 64,
                   device: str = "auto", tags: str | Path | None = None,
                   max_samples: int | None = None, progress: bool = False) -> EvalResult:
    """Run every mode of ``modes`` over DATA's ``split`` (see :func:`pick_split`).

    ``loaded`` may wrap any ``nn.Module`` that maps ``(N, 3, crop, crop)`` normalized images
    to ``(N, len(classes))`` logits. ``primary`` (one of ``modes``) is the mode the report
    details; default: the best top-1. ``tags``: a ``key,tag`` CSV (:func:`read_tags`), added
    to the tags samples carry in their json.
    """
    modes = _checked_modes(modes, primary, batch_size)
    dev = resolve_device(device)
    run = _Pass(loaded, loaded.model.to(dev).eval(), dev, modes, batch_size,
                read_tags(tags) if tags else {})
    split = pick_split(data, split)
    with open_source(data, split) as (source, samples):
        run.mapping = label_map(source.classes, loaded.classes)
        if max_samples is not None:
            from itertools import islice

            samples = islice(samples, max_samples)
        bar = _bar(source.num_samples if max_samples is None else max_samples, progress)
        for chunk in _chunks(samples, batch_size):
            run.add_chunk(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    if not run.keys:
        raise UsageError(f"{data} (split {split!r}) holds no readable samples to evaluate")
    info = dict(loaded.info, img_size=loaded.spec.crop, short_side=loaded.spec.short_side,
                data=str(data), split=split, device=str(dev),
                batch_size=batch_size, tags_file=str(tags) if tags else None)
    return run.result(primary, info)


def _checked_modes(modes: tuple[str, ...], primary: str | None, batch_size: int,
                   ) -> tuple[str, ...]:
    """``modes`` parsed; raises :class:`UsageError` for a ``primary`` outside them or a batch
    size below 1, before any data is read."""
    modes = parse_modes(modes)
    if primary is not None and primary not in modes:
        raise UsageError(f"--primary {primary} is not among the evaluated modes "
                         f"{', '.join(modes)}; add it to --tta")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    return modes


@dataclass
class _Pass:
    """One pass of :func:`evaluate_model` over DATA: what it runs on each chunk, and what it
    keeps of each sample (key, path, label, tags) and of each mode (see :func:`_keep`)."""

    loaded: LoadedModel
    model: torch.nn.Module  # ``loaded.model`` on the device, in eval mode
    device: torch.device
    modes: tuple[str, ...]
    batch_size: int
    extra_tags: dict[str, tuple[str, ...]]  # of --tags, by key or source path
    mapping: list[int] | None = None  # data label -> model label (see :func:`label_map`)
    keys: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    tags: list[tuple[str, ...]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    per_mode: dict[str, dict[str, list]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.per_mode = {m: {"pred": [], "conf": [], "true": [], "top5": []} for m in self.modes}
        self.seconds = dict.fromkeys(self.modes, 0.0)

    def add_chunk(self, chunk: list[Sample]) -> None:
        """Decode ``chunk`` once, then run every mode on it; each mode's time includes the
        shared decoding."""
        t0 = time.perf_counter()
        images, kept = self._decode(chunk)
        decode_s = time.perf_counter() - t0
        y = [_label(s, self.mapping, len(self.loaded.classes)) for s in kept]
        for mode in self.modes:
            t1 = time.perf_counter()
            probs = predict(self.model, images, mode, self.loaded.spec, mean=self.loaded.mean,
                            std=self.loaded.std, device=self.device, batch_size=self.batch_size)
            self.seconds[mode] += decode_s + time.perf_counter() - t1
            _keep(self.per_mode[mode], probs, torch.tensor(y, dtype=torch.int64))
        for s, label in zip(kept, y, strict=True):
            self.keys.append(s.key)
            self.paths.append(str(s.meta.get("path", "")))
            self.labels.append(label)
            found = sample_tags(s.meta) + self.extra_tags.get(s.key, ()) + \
                self.extra_tags.get(str(s.meta.get("path", "")), ())
            self.tags.append(tuple(dict.fromkeys(found)))

    def _decode(self, chunk: list[Sample]) -> tuple[list[Image.Image], list[Sample]]:
        """The decodable images of ``chunk`` and their samples; the others are recorded as
        skipped."""
        images: list[Image.Image] = []
        kept: list[Sample] = []
        for s in chunk:
            _check_stored(s)
            try:
                images.append(open_image(s.image))
            except ImageError as exc:
                self.skipped.append({"key": s.key, "reason": str(exc)})
                continue
            kept.append(s)
        return images, kept

    def result(self, primary: str | None, info: dict[str, Any]) -> EvalResult:
        """The :class:`EvalResult` of everything kept; ``primary`` None picks the best top-1."""
        y_all = np.asarray(self.labels, dtype=np.int64)
        results = {m: ModeResult(VIEWS[m], np.concatenate(v["pred"]), np.concatenate(v["conf"]),
                                 np.concatenate(v["true"]), np.concatenate(v["top5"]),
                                 self.seconds[m])
                   for m, v in self.per_mode.items()}
        chosen = primary or pick_primary(results, y_all)
        skipped = self.skipped
        if skipped:
            log.warning("%d sample(s) could not be decoded and were skipped (first: %s: %s)",
                        len(skipped), skipped[0]["key"], skipped[0]["reason"])
        return EvalResult(list(self.loaded.classes), self.keys, self.paths, y_all, self.tags,
                          results, chosen, "--primary" if primary else "best top-1", skipped,
                          info)


def _label(sample: Sample, mapping: list[int] | None, num_classes: int) -> int:
    label = sample.cls
    if label < 0:
        raise ShardError(f"sample {sample.key} has no label (.cls or json label)")
    if mapping is not None:
        if label >= len(mapping):
            raise ShardError(f"sample {sample.key} has label {label}, beyond DATA's "
                             f"{len(mapping)} classes")
        label = mapping[label]
    if label >= num_classes:
        raise UsageError(f"sample {sample.key} has label {label} but the model has "
                         f"{num_classes} classes; is DATA the dataset the model was trained on?")
    return label


def _keep(store: dict[str, list], probs: torch.Tensor, y: torch.Tensor) -> None:
    conf, pred = probs.max(dim=1)
    k = min(5, probs.shape[1])
    store["pred"].append(pred.numpy().astype(np.int64))
    store["conf"].append(conf.numpy().astype(np.float32))
    store["true"].append(probs.gather(1, y[:, None])[:, 0].numpy().astype(np.float32))
    store["top5"].append((probs.topk(k, dim=1).indices == y[:, None]).any(dim=1).numpy())


def _bar(total: int | None, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluate", unit="img", dynamic_ncols=True, leave=False)


def load_thumbnails(data: str, split: str, keys: set[str], size: int = 112,
                    ) -> dict[str, Image.Image]:
    """Thumbnails (longer side ``size``) of the samples named in ``keys`` (a second read)."""
    thumbs: dict[str, Image.Image] = {}
    if not keys:
        return thumbs
    with open_source(data, split) as (_, samples):
        for s in samples:
            if s.key in keys and s.key not in thumbs:
                img = open_image(s.image)
                img.thumbnail((size, size))
                thumbs[s.key] = img
                if len(thumbs) == len(keys):
                    break
    return thumbs


def evaluate(checkpoint: str | Path, data: str, out: str | Path | None, *,
             modes: tuple[str, ...] | str = MODES, primary: str | None = None,
             split: str | None = None, batch_size: int = 64, device: str = "auto",
             tags: str | Path | None = None, max_samples: int | None = None,
             progress: bool = False, per_class_sheet: int = 8) -> EvalResult:
    """Evaluate a ``dataprep train`` checkpoint on DATA and, when ``out`` is given, write the
    report there (see :func:`dataprep.train.eval_report.write_report`)."""
    loaded = load_model(checkpoint)
    result = evaluate_model(loaded, data, modes=parse_modes(modes), primary=primary,
                            split=split, batch_size=batch_size, device=device, tags=tags,
                            max_samples=max_samples, progress=progress)
    if out is not None:
        from dataprep.train.eval_report import sheet_keys, write_report

        thumbs = load_thumbnails(data, result.info["split"],
                                 sheet_keys(result, per_class_sheet))
        write_report(result, out, thumbs, per_class_sheet=per_class_sheet)
    return result
