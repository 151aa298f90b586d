"""Short-side resize."""

from __future__ import annotations

from PIL import Image

INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def short_side_size(width: int, height: int, short_side: int,
                    upscale: bool = False) -> tuple[int, int]:
    """Output (width, height) when the shorter side becomes ``short_side``.

    The longer side is ``int(long * short_side / short)`` (truncation, as torchvision
    ``Resize(int)``). Without ``upscale``, an image whose shorter side is already
    ``<= short_side`` keeps its size. 1000x667 -> (383, 256) at 256.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if short_side <= 0:
        raise ValueError(f"short_side must be positive, got {short_side}")
    short, long = (width, height) if width <= height else (height, width)
    if short <= short_side and not upscale:
        return width, height
    new_short, new_long = short_side, int(long * short_side / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize_short_side(
    img: Image.Image,
    short_side: int,
    interpolation: str = "bilinear",
    upscale: bool = False,
    source_size: tuple[int, int] | None = None,
    box: tuple[float, float, float, float] | None = None,
) -> Image.Image:
    """Resize so the shorter side is ``short_side`` (see :func:`short_side_size`).

    Uses Pillow's ``resize`` with antialiasing, the same call torchvision makes on PIL images,
    so the pixels match ``torchvision.transforms.v2.Resize(short_side)`` exactly.

    ``source_size``: the full-resolution (width, height) when ``img`` was decoded at a reduced
    scale (JPEG draft). The output size is computed from it, so drafting never changes the
    output size (a 1024x819 JPEG drafted to 256x205 still gives 160x128 at 128, not 159x128).
    ``box``: the region of ``img`` to resample (see ``open_image_sized``), default the whole.
    """
    try:
        resample = INTERPOLATIONS[interpolation]
    except KeyError:
        raise ValueError(
            f"unknown interpolation {interpolation!r}; expected one of {sorted(INTERPOLATIONS)}"
        ) from None
    width, height = source_size or img.size
    size = short_side_size(width, height, short_side, upscale=upscale)
    if size == img.size and box is None:
        return img
    return img.resize(size, resample, box=box)
