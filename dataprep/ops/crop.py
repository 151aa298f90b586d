"""Center / five / ten crops, the order of torchvision ``TenCrop``."""

from __future__ import annotations

from PIL import Image

Box = tuple[int, int, int, int]  # left, top, right, bottom (Pillow's crop box)

VIEW_NAMES = (
    "top_left",
    "top_right",
    "bottom_left",
    "bottom_right",
    "center",
    "flip_top_left",
    "flip_top_right",
    "flip_bottom_left",
    "flip_bottom_right",
    "flip_center",
)


def _check(width: int, height: int, crop: int) -> None:
    if crop <= 0:
        raise ValueError(f"crop must be positive, got {crop}")
    if crop > width or crop > height:
        raise ValueError(
            f"crop {crop}x{crop} is larger than the image {width}x{height}; "
            "resize first (a larger --short-side) or use a smaller --crop"
        )


def center_box(width: int, height: int, crop: int) -> Box:
    """Box of the centered ``crop`` square; anchor ``int(round((m - crop) / 2))`` per axis.

    Python's ``round`` halves to even, exactly as torchvision: a 259-wide image gives left=18.
    """
    _check(width, height, crop)
    left = int(round((width - crop) / 2.0))
    top = int(round((height - crop) / 2.0))
    return left, top, left + crop, top + crop


def five_boxes(width: int, height: int, crop: int) -> list[Box]:
    """Boxes in the fixed order: top-left, top-right, bottom-left, bottom-right, center."""
    _check(width, height, crop)
    w, h, c = width, height, crop
    return [
        (0, 0, c, c),
        (w - c, 0, w, c),
        (0, h - c, c, h),
        (w - c, h - c, w, h),
        center_box(w, h, c),
    ]


def center_crop(img: Image.Image, crop: int) -> Image.Image:
    return img.crop(center_box(img.width, img.height, crop))


def five_crop(img: Image.Image, crop: int) -> list[Image.Image]:
    """The five views of :func:`five_boxes`."""
    return [img.crop(box) for box in five_boxes(img.width, img.height, crop)]


def ten_crop(img: Image.Image, crop: int, flip: bool = True) -> list[Image.Image]:
    """Five crops of the image, then the five crops of its horizontal mirror.

    With ``flip=False`` only the first five are returned (five-crop).
    """
    views = five_crop(img, crop)
    if flip:
        views += five_crop(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), crop)
    return views
