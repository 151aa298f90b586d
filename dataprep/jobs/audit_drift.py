"""Drift between splits for ``dataprep audit --weights FILE`` (needs the ``train`` extra).

Every image is embedded by a torchvision model whose classifier is replaced by the identity
(MobileNetV2: the 1280 pooled features), from its short side resized to ``size * 8 / 7`` and
the center ``size`` crop, ImageNet-normalized; embeddings are L2-normalized. Each image of a
split other than ``reference`` gets its cosine distance to the nearest ``reference`` image;
the reference's own images get the distance to their nearest *other* reference image (the
baseline: how far a reference image is from the rest of its own split). Per split:

* ``score`` = median distance / baseline median (about 1: as close to the reference as the
  reference is to itself; a foreign domain scores well above);
* ``far_share``: the share of its images beyond the baseline's 95th percentile (5 % for a
  split drawn like the reference).

``farthest``: per class, the non-reference images farthest from the reference, farthest first
(the drift sheet).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.errors import ImageError, UsageError, require
from dataprep.records import Record

BATCH = 32
FARTHEST = 6  # images per class on the drift sheet
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def check_weights(path: str | Path) -> None:
    """Fail early, before any hashing, when torch is missing or the file is not there."""
    require("torch", "train")
    require("torchvision", "train")
    if not Path(path).is_file():
        raise UsageError(f"--weights {path} is not a file; expected a torchvision state_dict "
                         "such as mobilenet_v2-b0353104.pth")


def load_embedder(name: str, weights: str | Path) -> Any:
    """The model ``name`` with ``weights`` loaded and its classifier replaced by the identity,
    in eval mode."""
    torch = require("torch", "train")
    from dataprep.train.models import build_model, find_head, load_state_dict

    state = load_state_dict(weights)
    probe = build_model(name, 10)
    head, _ = find_head(probe.model)
    key = f"{head}.weight"
    if key not in state:
        raise UsageError(f"--weights {weights} has no {key}: it is not a --model {name} "
                         "state_dict")
    built = build_model(name, int(state[key].shape[0]), weights=weights)
    model = built.model
    parent, _, leaf = built.head.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, torch.nn.Identity())
    return model.eval()


def _tensor(img: Any, size: int) -> np.ndarray:
    from dataprep.ops.crop import center_crop
    from dataprep.ops.resize import resize_short_side

    img = resize_short_side(img, max(size, size * 8 // 7), upscale=True)
    arr = np.asarray(center_crop(img, size), dtype=np.float32) / 255.0
    arr = (arr - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return arr.transpose(2, 0, 1)


def embed(model: Any, records: Iterable[Record], wanted: Sequence[bool], size: int,
          max_pixels: int, jobs: int) -> tuple[np.ndarray, list[int]]:
    """Embeddings of the ``wanted`` records (in order), and their positions; an image that
    cannot be read now is left out."""
    torch = require("torch", "train")
    from tqdm import tqdm

    from dataprep.io.decode import open_image, record_bytes

    torch.set_num_threads(max(1, jobs))
    out: list[np.ndarray] = []
    kept: list[int] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            with torch.no_grad():
                e = model(torch.from_numpy(np.stack(batch))).float().numpy()
            out.append(e.reshape(len(batch), -1))
            batch.clear()

    bar = tqdm(total=sum(wanted), unit="img", desc="embed", leave=False)
    for pos, (record, want) in enumerate(zip(records, wanted, strict=False)):
        if not want:
            continue
        try:
            img = open_image(record_bytes(record), max_pixels=max_pixels,
                             draft_short_side=size * 8 // 7, name=record.path or record.key)
        except ImageError:
            continue
        batch.append(_tensor(img, size))
        kept.append(pos)
        bar.update(1)
        if len(batch) >= BATCH:
            flush()
    flush()
    bar.close()
    return (np.concatenate(out) if out else np.zeros((0, 1), np.float32)), kept


def normalize(e: np.ndarray) -> np.ndarray:
    """Rows L2-normalized (not centered first: on MobileNetV2 features, centering on the
    reference's mean brought solar-cell images as close to photos as other photos are)."""
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def nearest_distance(queries: np.ndarray, refs: np.ndarray, exclude_self: bool = False,
                     block: int = 2048) -> np.ndarray:
    """Cosine distance of each query to its nearest reference (rows L2-normalized); with
    ``exclude_self`` queries are the references and each skips itself."""
    out = np.empty(len(queries), dtype=np.float64)
    for lo in range(0, len(queries), block):
        sim = queries[lo:lo + block] @ refs.T
        if exclude_self:
            idx = np.arange(lo, min(lo + block, len(queries)))
            sim[idx - lo, idx] = -np.inf
        out[lo:lo + block] = 1.0 - sim.max(axis=1)
    return np.clip(out, 0.0, 2.0)


EMBEDDINGS_NAME = "embeddings.npz"


def _cache_key(weights: str | Path, model: str, size: int) -> str:
    import hashlib

    h = hashlib.sha256(f"{model}\t{size}\t".encode())
    with open(weights, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def load_cache(path: Path | None, key: str) -> dict[str, np.ndarray]:
    """identity -> embedding of an ``embeddings.npz`` made with the same weights, model and
    size ({} otherwise, or when it cannot be read)."""
    if path is None or not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return {}
            return dict(zip(data["ids"].tolist(), data["embeddings"], strict=True))
    except (OSError, ValueError, KeyError):
        return {}


def save_cache(path: Path, key: str, ids: list[str], e: np.ndarray) -> None:
    import io

    from dataprep.io import durable

    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), ids=np.array(ids, dtype=str),
             embeddings=e.astype(np.float32))
    durable.write_atomic(path, buf.getvalue())


@dataclass(frozen=True)
class Embedder:
    """How images are embedded: the torchvision ``model`` with ``weights``, at ``size``."""

    model: str
    weights: str | Path
    size: int
    max_pixels: int
    jobs: int | None


def drift(images: Sequence[Any], records: Callable[[], Iterable[Record]], weights: str | Path,
          *, model: str = "mobilenet_v2", size: int = 224, reference: str = "train",
          jobs: int | None = None, max_pixels: int = 178_956_970,
          log: Callable[[str], None] | None = None, ids: Sequence[str] | None = None,
          cache: Path | None = None) -> dict[str, Any]:
    """The drift of every split from ``reference`` (see the module docstring).
    ``records()``: a fresh stream of the audited records, in the order of ``images``.
    ``ids`` (their identities) and ``cache`` (an ``embeddings.npz``): embeddings of unchanged
    images made with the same weights are reused, and the file is rewritten."""
    names = sorted({i.split for i in images})
    n_ref = sum(i.split == reference and i.features is not None for i in images)
    base = {"model": model, "weights": str(weights), "size": size, "reference": reference}
    if n_ref < 2 or len(names) < 2:
        return {**base, "splits": {}, "note": (
            f"drift needs a {reference!r} split of two or more images and another split "
            f"(splits here: {', '.join(names)}); pass --reference NAME")}
    how = Embedder(model, weights, size, max_pixels, jobs)
    kept, e = _embeddings(images, records, how, ids, cache, log)
    if e is None:
        return {**base, "splits": {}, "note": "no image could be embedded"}
    split_of = [images[p].split for p in kept]
    ref = np.array([s == reference for s in split_of])
    if ref.sum() < 2:
        return {**base, "splits": {}, "note": f"fewer than two {reference} images embedded"}
    return {**base, **_distances(images, kept, normalize(e), ref, names, reference)}


def _embeddings(images: Sequence[Any], records: Callable[[], Iterable[Record]], how: Embedder,
                ids: Sequence[str] | None, cache: Path | None,
                log: Callable[[str], None] | None) -> tuple[list[int], np.ndarray | None]:
    """The positions of the usable ``images`` that have an embedding, and those embeddings
    (None: none could be made). Embeddings ``cache`` holds for the same identities and
    weights are reused; the others are computed, and the cache rewritten."""
    from dataprep.pool import resolve_jobs

    key = _cache_key(how.weights, how.model, how.size)
    known = load_cache(cache, key) if ids is not None else {}
    usable = [i.features is not None for i in images]
    todo = [u and (ids is None or ids[p] not in known) for p, u in enumerate(usable)]
    if log:
        log(f"drift: embedding {sum(todo):,} images with {how.model} ({how.weights}); "
            f"{sum(usable) - sum(todo):,} reused from {EMBEDDINGS_NAME}")
    new, new_kept = (embed(load_embedder(how.model, how.weights), records(), todo, how.size,
                           how.max_pixels, resolve_jobs(how.jobs)) if any(todo) else (None, []))
    fresh = dict(zip(new_kept, new if new is not None else [], strict=True))
    kept = [p for p, u in enumerate(usable)
            if u and (p in fresh or (ids is not None and ids[p] in known))]
    if not kept:
        return kept, None
    e = np.stack([fresh[p] if p in fresh else known[ids[p]] for p in kept])  # type: ignore[index]
    if cache is not None and ids is not None:
        save_cache(cache, key, [ids[p] for p in kept], e)
    return kept, e


def _distances(images: Sequence[Any], kept: list[int], e: np.ndarray, ref: np.ndarray,
               names: list[str], reference: str) -> dict[str, Any]:
    """The drift findings from the normalized embeddings ``e`` of the ``kept`` images
    (``ref``: which of them are of the reference split)."""
    refs = e[ref]
    baseline = nearest_distance(refs, refs, exclude_self=True)
    b_median, b_p95 = float(np.median(baseline)), float(np.percentile(baseline, 95))
    dist = np.zeros(len(kept))
    dist[ref] = baseline
    if (~ref).any():
        dist[~ref] = nearest_distance(e[~ref], refs)
    split_of = [images[p].split for p in kept]
    splits: dict[str, Any] = {}
    for name in names:
        if name == reference:
            continue
        mask = np.array([s == name for s in split_of])
        if not mask.any():
            continue
        d = dist[mask]
        splits[name] = {"images": int(mask.sum()), "median": round(float(np.median(d)), 5),
                        "mean": round(float(d.mean()), 5),
                        "score": round(float(np.median(d)) / max(b_median, 1e-9), 3),
                        "far_share": round(float((d > b_p95).mean()), 4)}
    farthest, ranking = _farthest(images, kept, dist, ref)
    return {"dim": int(e.shape[1]),
            "baseline": {"images": int(ref.sum()), "median": round(b_median, 5),
                         "p95": round(b_p95, 5)},
            "splits": splits, "farthest": farthest, "ranking": ranking}


def _farthest(images: Sequence[Any], kept: list[int], dist: np.ndarray, ref: np.ndarray,
              ) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Per class, the non-reference images farthest from the reference (the drift sheet), and
    all of them, farthest first."""
    by_class: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for k, p in enumerate(kept):
        if not ref[k]:
            by_class[images[p].class_name].append((float(dist[k]), p))
    farthest = {cls: [dict(images[p].describe(), index=p, distance=round(d, 5))
                      for d, p in sorted(items, key=lambda t: (-t[0], t[1]))[:FARTHEST]]
                for cls, items in sorted(by_class.items())}
    ranking = [dict(images[p].describe(), index=p, distance=round(float(dist[k]), 5))
               for k, p in sorted(((k, p) for k, p in enumerate(kept) if not ref[k]),
                                  key=lambda t: (-dist[t[0]], t[1]))]
    return farthest, ranking
