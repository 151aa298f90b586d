"""Test-time views and their averaged probabilities (``dataprep evaluate``).

A *mode* turns one stored image into groups of views; its probabilities are the mean over
groups of the mean softmax over the group's views (so ``mix`` weighs the squashed image and
the five-crop mean equally, not 1 : 5):

=======  ==========================================================  =====
mode     groups of views                                             views
=======  ==========================================================  =====
resize   [the image squashed to crop x crop]                          1
center   [center crop]                                                1
flip     [center crop, its mirror]                                    2
five     [five crops] (ten-crop order)                                5
ten      [five crops, five crops of the mirrored image]              10
mix      [squashed image], [five crops]                               6
=======  ==========================================================  =====

Crops are cut from the image resized so its shorter side is ``short_side`` (upscaling when
needed), exactly as the trainer's validation does, so ``center`` here is the trainer's
``val_top1``. ``resize`` squashes the stored image itself (aspect ratio not kept).
Crops come from :mod:`dataprep.ops.crop`; nothing here reimplements their geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from dataprep.errors import UsageError
from dataprep.ops.crop import center_crop, five_crop, ten_crop
from dataprep.ops.resize import INTERPOLATIONS, resize_short_side

MODES = ("resize", "center", "five", "ten", "flip", "mix")
VIEWS = {"resize": 1, "center": 1, "flip": 2, "five": 5, "ten": 10, "mix": 6}
# groups of ``mode_views`` as (start, stop) slices of its flat view list
GROUPS = {"resize": ((0, 1),), "center": ((0, 1),), "flip": ((0, 2),), "five": ((0, 5),),
          "ten": ((0, 10),), "mix": ((0, 1), (1, 6))}


@dataclass(frozen=True)
class ViewSpec:
    """How a stored image becomes views: ``crop`` is the model's input side."""

    crop: int
    short_side: int
    interpolation: str = "bilinear"


def parse_modes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"ten,center"`` -> ("ten", "center"); ``"all"`` -> every mode. Order kept, no repeats."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [m.strip().lower() for m in items if m.strip()]
    if names == ["all"]:
        return MODES
    bad = [m for m in names if m not in MODES]
    if bad or not names:
        raise UsageError(f"--tta {text!r}: expected a comma-separated list of "
                         f"{', '.join(MODES)} (or all)")
    return tuple(dict.fromkeys(names))


def squash(img: Image.Image, crop: int, interpolation: str = "bilinear") -> Image.Image:
    """The whole image resized to ``crop`` x ``crop`` (aspect ratio not kept)."""
    if img.size == (crop, crop):
        return img
    return img.resize((crop, crop), INTERPOLATIONS[interpolation])


def fit(img: Image.Image, spec: ViewSpec) -> Image.Image:
    """Shorter side to ``spec.short_side`` (up or down), as the trainer's validation."""
    if min(img.size) == spec.short_side:
        return img
    return resize_short_side(img, spec.short_side, spec.interpolation, upscale=True)


def mode_views(img: Image.Image, mode: str, spec: ViewSpec) -> list[Image.Image]:
    """The ``VIEWS[mode]`` views of ``img`` for ``mode``, in the order of the table above."""
    if mode == "resize":
        return [squash(img, spec.crop, spec.interpolation)]
    fitted = fit(img, spec)
    if mode == "center":
        return [center_crop(fitted, spec.crop)]
    if mode == "flip":
        crop = center_crop(fitted, spec.crop)
        return [crop, crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    if mode == "five":
        return five_crop(fitted, spec.crop)
    if mode == "ten":
        return ten_crop(fitted, spec.crop)
    if mode == "mix":
        return [squash(img, spec.crop, spec.interpolation)] + five_crop(fitted, spec.crop)
    raise UsageError(f"unknown test-time mode {mode!r}; expected one of {', '.join(MODES)}")


def to_tensor(views: list[Image.Image]) -> torch.Tensor:
    """uint8 NCHW tensor of equally sized RGB views."""
    return torch.from_numpy(np.stack([np.asarray(v, dtype=np.uint8) for v in views])
                            ).permute(0, 3, 1, 2)


def combine(probs: torch.Tensor, mode: str) -> torch.Tensor:
    """(N, VIEWS[mode], C) per-view probabilities -> (N, C): mean over groups of group means."""
    groups = [probs[:, a:b].mean(dim=1) for a, b in GROUPS[mode]]
    return torch.stack(groups).mean(dim=0)


@torch.no_grad()
def predict(model: torch.nn.Module, images: list[Image.Image], mode: str, spec: ViewSpec, *,
            mean: tuple[float, float, float], std: tuple[float, float, float],
            device: torch.device | str = "cpu", batch_size: int = 64) -> torch.Tensor:
    """(len(images), C) float32 probabilities of ``mode`` on CPU; the model runs in eval mode,
    ``batch_size`` views per forward pass. Pixels are normalized as in training:
    ``(x / 255 - mean) / std``."""
    from dataprep.train.pixels import normalize

    device = torch.device(device)
    model.eval()
    x = to_tensor([v for img in images for v in mode_views(img, mode, spec)])
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(x), batch_size):
        batch = normalize(x[start:start + batch_size].to(device), m, s)
        out.append(torch.softmax(model(batch).float(), dim=1).cpu())
    probs = torch.cat(out).view(len(images), VIEWS[mode], -1)
    return combine(probs, mode)
