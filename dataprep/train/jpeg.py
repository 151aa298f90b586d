"""Fast JPEG decoding straight into arrays (simplejpeg or torchvision's libjpeg-turbo), for
the loader's array path; anything it cannot take is left to Pillow.

The decoders are looked up once, on first use, and remembered in module globals
(``_simplejpeg``, ``_decode_jpeg``; False: not usable), so a worker pays the import once.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from dataprep.io.decode import DEFAULT_MAX_PIXELS

_SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF))


def _jpeg_header(data: bytes) -> tuple[int, int, int, bool] | None:
    """(width, height, components, has Exif) of a JPEG, from its markers up to the start of
    scan (an APP1 Exif segment may follow the frame header); None if there is no frame
    header."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, end, exif = 2, len(data), False
    frame: tuple[int, int, int] | None = None
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: no more headers
            break
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in _SOF_MARKERS and frame is None and pos + 10 <= end:
            frame = (int.from_bytes(data[pos + 7:pos + 9], "big"),
                     int.from_bytes(data[pos + 5:pos + 7], "big"), data[pos + 9])
        elif marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            exif = True
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None if frame is None else (*frame, exif)


_decode_jpeg: Any = None  # torchvision's decoder; False: not usable (not installed)
_simplejpeg: Any = None  # the simplejpeg module; False: not installed


def decode_jpeg_array(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """HWC uint8 RGB pixels of a JPEG, decoded by libjpeg-turbo straight into an array (no
    Pillow image: no RGB->RGBX->RGB round trip), EXIF orientation applied.

    Decoders: simplejpeg (the ``train`` extra; about a fifth faster than torchvision's) for
    grey and colour JPEGs without Exif data, else torchvision's ``decode_jpeg``, which applies
    the Exif orientation. Both give the pixels of :func:`dataprep.io.decode.open_image` (all run
    libjpeg-turbo's accurate IDCT and fancy upsampling). Returns None where no fast path
    applies (not a JPEG, over ``max_pixels``, a decode error, neither decoder installed): the
    caller then uses ``open_image``, which also gives the clear error for a bad file.
    """
    global _decode_jpeg, _simplejpeg
    head = _jpeg_header(data)
    if head is None or head[0] * head[1] > max_pixels or head[0] * head[1] == 0:
        return None
    if head[2] in (1, 3) and not head[3]:
        if _simplejpeg is None:
            try:
                import simplejpeg as _simplejpeg
            except ImportError:
                _simplejpeg = False
        if _simplejpeg is not False:
            try:
                return _simplejpeg.decode_jpeg(data, colorspace="RGB")  # type: ignore[no-any-return]
            except ValueError:  # damaged or unusual: torchvision, then Pillow, decide
                pass
    if _decode_jpeg is False:
        return None
    if _decode_jpeg is None:
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except ImportError:  # no torchvision, or one without image decoding: Pillow it is
            _decode_jpeg = False
            return None
        def _decode_jpeg(buf: torch.Tensor) -> torch.Tensor:  # noqa: E306
            # torchvision 0.29 announces that a later release drops its image decoders (the
            # import above then fails and Pillow decodes): not a notice for our users
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_jpeg(buf, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    try:
        chw = _decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    except (RuntimeError, ValueError):
        return None
    return chw.permute(1, 2, 0).numpy()  # a view: torchvision decodes into HWC memory
