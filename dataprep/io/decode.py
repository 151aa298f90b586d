"""Decode any supported image into 8-bit RGB, safely.

EXIF orientation is applied; alpha is composited on white; 16-bit and float images are scaled
to 8 bits; CMYK, palette and grayscale are converted; images with more than ``max_pixels``
pixels, an aspect ratio over ``max_aspect``, or a resize target over ``max_pixels`` are
refused from the header, before any pixel is decoded.

Every input image is read through :func:`read_input` (:mod:`dataprep.io.files`: regular
files only, never a FIFO, device, socket or folder, so a read never blocks or runs forever;
size-capped), every record's image through :func:`record_bytes`.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dataprep.errors import ImageError, UsageError
from dataprep.io.files import MAX_TEXT_BYTES, open_regular, read_regular  # noqa: F401
from dataprep.ops.resize import short_side_size
from dataprep.records import NO_IMAGE, Record

_ORIENTATION = 0x0112  # EXIF tag
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own bomb threshold (2x its warning level / 2)
DEFAULT_MAX_ASPECT = 100.0  # longer side / shorter side; panoramas stay well under it
MAX_INPUT_BYTES = 1 << 30  # an input image file larger than this is refused unread

_DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError,
                  Image.DecompressionBombError, struct.error, MemoryError)


def read_input(path: str | Path, limit: int = MAX_INPUT_BYTES, name: str | None = None) -> bytes:
    """The bytes of one input image file; anything else is an :class:`ImageError` (a
    per-image skip) whose message starts with ``name`` (default: the path)."""
    return read_regular(path, limit=limit, error=ImageError, name=name)


def record_bytes(record: Record, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The encoded image of a record: its ``data`` (shard sources) or its file's bytes.

    Every task gets a record's bytes here. A shard sample without an image member comes as
    ``data=b""`` with its reason in ``meta[NO_IMAGE]``; it, and any empty image, is an
    :class:`ImageError` (the record is skipped and listed, the run goes on).
    """
    name = record.path or record.key
    if record.data is None:
        return read_input(record.path, limit, name=name)
    if not record.data:
        reason = (record.meta or {}).get(NO_IMAGE)
        raise ImageError(str(reason) if reason else f"{name}: empty image data (0 bytes)")
    return record.data


def check_geometry(name: str, size: tuple[int, int], *, max_pixels: int,
                   max_aspect: float | None = None,
                   target: tuple[int, int] | None = None) -> None:
    """Refuse, from the header, an image whose decode or resize would be a bomb.

    ``size``: the stored width and height; ``max_aspect``: the largest allowed ratio of the
    longer to the shorter side (None: any); ``target``: the size it will be resized to, which
    must not exceed ``max_pixels`` either (a 4x60000 image upscaled to a 256 short side would
    be 983 million pixels).
    """
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: empty image ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(
            f"{name}: {w}x{h} = {w * h:,} pixels exceeds --max-pixels {max_pixels:,} "
            "(decompression bomb guard); raise --max-pixels if the image is genuine"
        )
    if max_aspect is not None and max(w, h) > max_aspect * min(w, h):
        raise ImageError(
            f"{name}: {w}x{h} has an aspect ratio of {max(w, h) / min(w, h):,.1f}:1, over "
            f"--max-aspect {max_aspect:g} (bomb guard); raise --max-aspect if the image is "
            "genuine"
        )
    if target is not None and target[0] * target[1] > max_pixels:
        tw, th = target
        raise ImageError(
            f"{name}: {w}x{h} would be resized to {tw}x{th} = {tw * th:,} pixels, over "
            f"--max-pixels {max_pixels:,} (bomb guard); lower --short-side or raise "
            "--max-pixels if the image is genuine"
        )


def check_max_aspect(max_aspect: float) -> None:
    """``--max-aspect`` must be a finite ratio of at least 1 (a UsageError otherwise)."""
    if not 1 <= max_aspect < float("inf"):
        raise UsageError(f"--max-aspect must be a finite ratio of at least 1 (longer side / "
                         f"shorter side), got {max_aspect}")


def load_whole(img: Image.Image) -> None:
    """Decode all of ``img``'s data, as cheaply as possible, to prove the file is whole.

    A JPEG decodes at 1/8 scale (``draft``): libjpeg still parses every scan's entropy-coded
    data, so a truncated or corrupt file fails as in a full decode, at a fraction of the cost.
    Other formats decode in full. Call inside :func:`guarded` (errors become ImageError).
    """
    if img.format == "JPEG":
        img.draft(img.mode, (1, 1))
    img.load()


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0  # 65535 -> 255 exactly
        elif mode == "I":
            # 32-bit integer images from 16-bit PNGs hold 0..65535
            hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
            arr = arr * (255.0 / hi)
        else:  # float: assume 0..1 when it fits, else clip to 0..255
            arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode == "La":  # premultiplied: Pillow converts it only to LA
        img, mode = img.convert("LA"), "LA"
    if mode in ("RGBA", "LA", "PA", "RGBa") or (mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "L" and "transparency" in img.info:
        return _to_rgb(img.convert("LA"))
    return img.convert("RGB")


def open_image(
    src: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect: float | None = None,
    draft_short_side: int | None = None,
    resize_short_side: int | None = None,
    upscale: bool = False,
    name: str | None = None,
) -> Image.Image:
    """Open, guard, orient and convert an image to RGB (see :func:`open_image_sized`)."""
    return open_image_sized(src, max_pixels=max_pixels, max_aspect=max_aspect,
                            draft_short_side=draft_short_side,
                            resize_short_side=resize_short_side, upscale=upscale, name=name)[0]


def decode_reason(exc: BaseException) -> str:
    """Why an image could not be read, in words that do not change between runs (Pillow's
    "cannot identify image file <_io.BytesIO object at 0x...>" names an object address)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (cannot identify image file)"
    return str(exc) or type(exc).__name__


def orient_box(box: tuple[float, float, float, float], size: tuple[int, int],
               orientation: int) -> tuple[float, float, float, float]:
    """``box`` in an image of ``size``, moved to where EXIF ``orientation`` puts it."""
    x0, y0, x1, y1 = box
    w, h = size
    point = {
        2: lambda x, y: (w - x, y), 3: lambda x, y: (w - x, h - y), 4: lambda x, y: (x, h - y),
        5: lambda x, y: (y, x), 6: lambda x, y: (h - y, x), 7: lambda x, y: (h - y, w - x),
        8: lambda x, y: (y, w - x),
    }.get(orientation)
    if point is None:
        return box
    (ax, ay), (bx, by) = point(x0, y0), point(x1, y1)
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def open_image_sized(
    src: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect: float | None = None,
    draft_short_side: int | None = None,
    resize_short_side: int | None = None,
    upscale: bool = False,
    name: str | None = None,
) -> tuple[Image.Image, tuple[int, int], tuple[float, float, float, float] | None]:
    """Open, guard, orient and convert an image to RGB; also return its full oriented size and,
    after a draft decode, the box of the drafted image that the full image covers.

    The size is that of the full-resolution image after EXIF orientation, which a draft decode
    hides: resizing must be sized from it so drafting never changes the output size. A drafted
    image is rounded up to whole 8x8 blocks, so its last row and column cover only part of a
    source block; resizing from the box (Pillow's ``resize(box=...)``, as ``thumbnail`` does)
    keeps the geometry exact instead of stretching by that fraction.

    ``draft_short_side``: when set and the input is a JPEG, use ``Image.draft`` (DCT-domain
    downscale by 1/2, 1/4 or 1/8) as long as the decoded size stays >= the size a short-side
    resize to that value would produce. Pixels then differ slightly from a full decode.

    Guards (:func:`check_geometry`), from the header: more than ``max_pixels`` pixels, an
    aspect ratio over ``max_aspect``, and (with ``resize_short_side``, default
    ``draft_short_side``) a short-side resize target over ``max_pixels``. A path is read
    through :func:`read_input` (regular files only, size-capped).

    Raises :class:`ImageError` for anything that is not a usable image; its message starts with
    ``name`` (default: the path, or ``<bytes>``).
    """
    name = name or ("<bytes>" if isinstance(src, bytes) else str(src))
    data = src if isinstance(src, bytes) else read_input(src, name=name)
    short_side = resize_short_side or draft_short_side
    with guarded(name, max_pixels):
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        target = short_side_size(w, h, short_side, upscale=upscale) if short_side else None
        check_geometry(name, (w, h), max_pixels=max_pixels, max_aspect=max_aspect,
                       target=target)
        box = None
        if draft_short_side and img.format == "JPEG":
            target = short_side_size(w, h, draft_short_side, upscale=upscale)
            drafted = img.draft("RGB", target)
            if drafted is not None and img.size != (w, h):
                box = drafted[1]
        img.load()
        orientation = img.getexif().get(_ORIENTATION, 1)
        if box is not None:
            box = orient_box(box, img.size, orientation)
        if orientation in (2, 3, 4, 5, 6, 7, 8):  # else exif_transpose only copies
            img = ImageOps.exif_transpose(img)
        size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        return _to_rgb(img), size, box
    raise AssertionError("unreachable")  # pragma: no cover  (guarded re-raises)


@contextmanager
def guarded(name: str, max_pixels: int) -> Iterator[None]:
    """Decode inside: Pillow's bomb limit is ``max_pixels`` and every decoding failure
    (truncated, corrupt, not an image, bomb) becomes an :class:`ImageError` naming ``name``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # e.g. truncated EXIF, palette transparency: not worth a line per image
            warnings.simplefilter("ignore", UserWarning)
            # Pillow refuses at 2x its limit and warns (an error here) above it: make that
            # limit --max-pixels
            Image.MAX_IMAGE_PIXELS = max_pixels
            yield
    except ImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: decompression bomb refused, over --max-pixels "
                         f"{max_pixels:,} ({exc})") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name}: {decode_reason(exc)}") from exc


def encode_image(img: Image.Image, fmt: str = "jpg", quality: int = 90) -> bytes:
    """Encode RGB pixels; deterministic for equal inputs. ``fmt``: jpg, png or webp."""
    buf = io.BytesIO()
    if fmt in ("jpg", "jpeg"):
        img.save(buf, "JPEG", quality=quality)
    elif fmt == "png":
        img.save(buf, "PNG", compress_level=6)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=4)
    else:
        raise ValueError(f"unknown image format {fmt!r}; expected jpg, png or webp")
    return buf.getvalue()
