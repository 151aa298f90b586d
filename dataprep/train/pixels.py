"""What the loader does to pixels: the training :class:`Augment` (``dataprep augment``'s
pipeline for the same flags), its Pillow path (:func:`train_pixels`, :func:`eval_pixels`),
the equivalent array path for JPEGs decoded at the stored size (:func:`train_array`,
:func:`eval_array`) and the normalization that runs on the device (:func:`normalize`).

Both paths draw the same parameters from the same generator (:func:`draw_params`), so they
give the same pixels; the array path only skips Pillow where the pipeline allows it
(:func:`array_path_ok`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from dataprep.ops.crop import center_box, center_crop
from dataprep.ops.resize import resize_short_side


@dataclass(frozen=True)
class Augment:
    """What a worker does to pixels. Pure data: pickled into each worker.

    ``pipeline``: the :class:`dataprep.ops.augment.Augment` that ``dataprep augment`` runs
    for the same flags (its geometry crops ``img_size``); ``None`` means a random crop and
    a flip with probability 0.5 (``augment --crop IMG_SIZE --hflip``).
    ``resize_first``: stored images (not views) are resized so their shorter side is
    ``short_side`` before the pipeline (as ``augment --short-side``), views so it is
    ``img_size``; False for scale jitter and RandomResizedCrop, which take the stored image
    as it is. Validation: resize to ``short_side``, center crop ``img_size``.
    """

    img_size: int = 224
    short_side: int = 256
    pipeline: Any = None
    resize_first: bool = True

    def __post_init__(self) -> None:
        if self.pipeline is None:
            from dataprep.ops.augment import Augment as Pipeline

            object.__setattr__(self, "pipeline", Pipeline(crop=self.img_size, hflip=0.5))


# stages the array fast path does itself; any other stage goes through Pillow
_ARRAY_STAGES = frozenset({"geometry", "hflip", "pca_lighting"})


def online_augment(img_size: int, short_side: int, **flags: Any) -> Augment:
    """The training :class:`Augment` of ``dataprep augment``'s flags (the parameter names of
    :func:`dataprep.jobs.augment.build_augment`: ``hflip``, ``scale_jitter``,
    ``random_resized_crop``, ``rotate``, ``shift``, ``color_jitter``, ``pca_lighting``,
    ``stats``, ``blur``, ``noise``), with ``crop=img_size``."""
    from dataprep.jobs.jitter import build_augment

    pipeline = build_augment(crop=img_size, **flags)
    scaled = pipeline is not None and (pipeline.scale_jitter is not None
                                       or pipeline.random_resized_crop is not None)
    return Augment(img_size, short_side, pipeline, resize_first=not scaled)


def _fit(img: Image.Image, short_side: int) -> Image.Image:
    return resize_short_side(img, short_side, upscale=True) if min(img.size) != short_side else img


def draw_params(aug: Augment, rng: np.random.Generator, size: tuple[int, int]
                ) -> list[tuple[str, dict]]:
    """The pipeline's parameters for an input of ``size`` (width, height), after the resize
    of ``resize_first``: exactly ``dataprep augment``'s draw for the same generator."""
    return aug.pipeline.make_params(rng, size)


def train_pixels(img: Image.Image, is_view: bool, aug: Augment,
                 rng: np.random.Generator) -> np.ndarray:
    """The pipeline on ``img`` (resized first when ``aug.resize_first``); returns HWC uint8.

    The generator is the one ``dataprep augment`` gives copy ``k`` (``sample_rng(seed, key,
    view, epoch)``): same generator, same parameters (:func:`draw_params`), same pixels.
    """
    if aug.resize_first:
        img = _fit(img, aug.img_size if is_view else aug.short_side)
    params = draw_params(aug, rng, img.size)
    return np.asarray(aug.pipeline.apply_params(img, params), dtype=np.uint8)


def eval_pixels(img: Image.Image, is_view: bool, aug: Augment) -> np.ndarray:
    img = _fit(img, aug.img_size if is_view else aug.short_side)
    return np.asarray(center_crop(img, aug.img_size), dtype=np.uint8)


def array_path_ok(aug: Augment) -> bool:
    """Can :func:`train_array` do this pipeline on arrays (crop, flip, PCA lighting only)?"""
    return (aug.resize_first
            and all(name in _ARRAY_STAGES for name, _ in aug.pipeline.ops))


def train_array(arr: np.ndarray, aug: Augment, rng: np.random.Generator,
                out: np.ndarray | None = None) -> np.ndarray:
    """:func:`train_pixels` of a stored image (not a view) already at ``aug.short_side``, on an
    HWC array: the same parameters and pixels. Requires :func:`array_path_ok`. ``out``: a
    C-contiguous (crop, crop, 3) array to write the result into (a batch's slot)."""
    h, w = arr.shape[:2]
    params = dict(draw_params(aug, rng, (w, h)))
    box = params["geometry"]
    crop = arr[box["top"]:box["top"] + box["height"], box["left"]:box["left"] + box["width"]]
    flip = params.get("hflip", {}).get("flip", False)
    if "pca_lighting" in params:
        lighting = dict(aug.pipeline.ops)["pca_lighting"]
        crop = lighting.apply_params(crop[:, ::-1] if flip else crop, params["pca_lighting"])
    elif flip:  # torch's flip: 20x numpy's copy of a reversed view
        flipped = torch.from_numpy(crop).flip(1)
        if out is None:
            return flipped.numpy()
        torch.from_numpy(out).copy_(flipped)
        return out
    if out is None:
        return np.ascontiguousarray(crop)
    out[...] = crop
    return out


def eval_array(arr: np.ndarray, aug: Augment, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`eval_pixels` of a stored image already at ``aug.short_side``, on an HWC array
    (written into ``out`` when given)."""
    h, w = arr.shape[:2]
    left, top, right, bottom = center_box(w, h, aug.img_size)
    if out is None:
        return np.ascontiguousarray(arr[top:bottom, left:right])
    out[...] = arr[top:bottom, left:right]
    return out


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              channels_last: bool = False) -> torch.Tensor:
    """uint8 NCHW on the device -> float ``(x / 255 - mean) / std``; mean, std: (1, 3, 1, 1)."""
    x = x.float().div_(255.0).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last if channels_last else
                        torch.contiguous_format)
