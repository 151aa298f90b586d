"""Caffe's LMDB layout: what ``convert_imageset --encoded`` writes, and how to read it back.

One environment per split (``DST/{split}.lmdb``). Its main (and only) database holds exactly
one entry per sample, in order::

    b"%08d_<key>"  ->  a serialized caffe.Datum

(Caffe's ``format_int(line_id, 8) + "_" + name``; the zero-padded index makes the keys' byte
order the insertion order, which is the order Caffe's and DALI's cursors read). Caffe's proto::

    message Datum {
      optional int32 channels = 1;  optional int32 height = 2;  optional int32 width = 3;
      optional bytes data = 4;      optional int32 label = 5;   repeated float float_data = 6;
      optional bool encoded = 7 [default = false];
    }

dataprep writes ``channels`` (3, or 1 for a grayscale image), ``height``, ``width``, ``data``
(the encoded image file's bytes), ``label`` (the class index) and ``encoded = true``, plus the
sample's json metadata in field :data:`META_FIELD` (a length-delimited field that Caffe's
Datum does not define: every protobuf parser, Caffe's and DALI's included, skips it). The
class names and the layout go to a sidecar file in the environment's folder,
:data:`SIDECAR` (``{"layout": "caffe", "num_samples": n, "classes": [...]}``), which Caffe
and DALI never open. An LMDB written by Caffe itself (no sidecar, no metadata field) reads too:
its keys' names become dataprep keys, raw-pixel Datums (``encoded = false``) become PNGs.

The encoder and decoder below are plain Python (varints and length-delimited fields), so
reading and writing need no ``protobuf`` package; a test checks them against ``protobuf``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

LAYOUT = "caffe"
VERSION = 1
SIDECAR = "dataprep-caffe.json"  # in the {split}.lmdb folder, beside data.mdb
META_FIELD = 1000  # dataprep's json metadata inside each Datum (unknown to Caffe: skipped)
MAX_SAMPLES = 10**8  # "%08d" keys sort in insertion order only below this
KEY = re.compile(rb"([0-9]{8})_(.*)", re.DOTALL)

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class DatumError(ValueError):
    """Bytes that are not a serialized Datum."""


@dataclass
class Datum:
    """caffe.Datum's fields (proto2 defaults when absent) and dataprep's metadata field."""

    channels: int = 0
    height: int = 0
    width: int = 0
    data: bytes = b""
    label: int = 0
    float_data: list[float] = field(default_factory=list)
    encoded: bool = False
    meta: bytes | None = None  # field META_FIELD, when present


MAX_KEY_BYTES = 511  # LMDB's default largest key


def caffe_key(index: int, key: str) -> bytes:
    """``caffe::format_int(index, 8) + "_" + key``, as bytes."""
    return f"{index:08d}_{key}".encode()


def split_key(raw: bytes) -> tuple[int, bytes] | None:
    """(index, name) of a Caffe-layout key, or None when it is not of that shape."""
    m = KEY.fullmatch(raw)
    return (int(m.group(1)), m.group(2)) if m else None


# -- encoding -------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    """Base-128 varint of an unsigned value (negative int32: its 64-bit two's complement, ten
    bytes, as protobuf writes it)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _int32(number: int, value: int) -> bytes:
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise DatumError(f"field {number} value {value} does not fit an int32")
    return _tag(number, _VARINT) + _varint(value)


def _bytes(number: int, value: bytes) -> bytes:
    return _tag(number, _BYTES) + _varint(len(value)) + value


def encode_datum(datum: Datum) -> bytes:
    """Serialize ``datum`` in field-number order, as protobuf does: fields 1, 2, 3, 4, 5 and 7
    always (a proto2 writer that sets them writes them even when zero), ``float_data`` unpacked
    (proto2's default), :data:`META_FIELD` last when set."""
    parts = [_int32(1, datum.channels), _int32(2, datum.height), _int32(3, datum.width),
             _bytes(4, datum.data), _int32(5, datum.label)]
    parts += [_tag(6, _FIXED32) + struct.pack("<f", v) for v in datum.float_data]
    parts.append(_tag(7, _VARINT) + _varint(int(bool(datum.encoded))))
    if datum.meta is not None:
        parts.append(_bytes(META_FIELD, datum.meta))
    return b"".join(parts)


# -- decoding -------------------------------------------------------------------------------


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(pos, min(pos + 10, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    raise DatumError(f"truncated or overlong varint at byte {pos}")


def _as_int32(value: int) -> int:
    """protobuf's reading of a varint as int32: its low 32 bits, signed."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def decode_datum(buf: bytes | memoryview) -> Datum:
    """Parse a serialized Datum (proto2 rules: the last value of a field wins, fields it does
    not know are skipped, ``float_data`` packed or not). Anything else is a :class:`DatumError`
    saying where."""
    d = Datum()
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DatumError(f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
            if number in (1, 2, 3, 5):
                setattr(d, ("channels", "height", "width", None, "label")[number - 1],
                        _as_int32(value))
            elif number == 7:
                d.encoded = value != 0
        elif wire == _BYTES:
            size, pos = _read_varint(buf, pos)
            if pos + size > end:
                raise DatumError(f"field {number} claims {size:,} bytes, {end - pos:,} are left")
            chunk = bytes(buf[pos:pos + size])
            pos += size
            if number == 4:
                d.data = chunk
            elif number == 6:
                if size % 4:
                    raise DatumError(f"packed float_data of {size} bytes is not whole floats")
                d.float_data += list(struct.unpack(f"<{size // 4}f", chunk))
            elif number == META_FIELD:
                d.meta = chunk
        elif wire == _FIXED32:
            if pos + 4 > end:
                raise DatumError(f"truncated 32-bit field {number}")
            if number == 6:
                d.float_data.append(struct.unpack_from("<f", buf, pos)[0])
            pos += 4
        elif wire == _FIXED64:
            if pos + 8 > end:
                raise DatumError(f"truncated 64-bit field {number}")
            pos += 8
        else:
            raise DatumError(f"field {number} has wire type {wire}, which a Datum never holds")
    return d


# -- samples ----------------------------------------------------------------------------------

_GRAY = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def image_shape(data: bytes) -> tuple[int, int, int]:
    """(channels, height, width) of an encoded image from its header (channels: 1 for a
    grayscale image, 3 otherwise: what Caffe decodes a colour image to)."""
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(data)) as img:
        return (1 if img.mode in _GRAY else 3), img.height, img.width


def sniff_ext(data: bytes) -> str | None:
    """The image field of encoded bytes from their magic number, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def raw_to_png(d: Datum) -> bytes:
    """A raw-pixel Datum (``encoded = false``: ``data`` is uint8 channels x height x width in
    OpenCV's BGR order, as Caffe's ``CVMatToDatum`` writes) as PNG bytes."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    c, h, w = d.channels, d.height, d.width
    if c not in (1, 3) or h <= 0 or w <= 0 or len(d.data) != c * h * w:
        raise DatumError(f"raw Datum of {len(d.data):,} bytes does not hold {c}x{h}x{w} "
                         "uint8 pixels (float_data Datums are not images dataprep reads)")
    pixels = np.frombuffer(d.data, np.uint8).reshape(c, h, w)
    img = (Image.fromarray(pixels[0]) if c == 1
           else Image.fromarray(np.ascontiguousarray(pixels[::-1].transpose(1, 2, 0))))
    out = BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def sidecar(num_samples: int, classes: list[str]) -> dict[str, Any]:
    """The sidecar's content for an environment of ``num_samples`` samples."""
    return {"layout": LAYOUT, "version": VERSION, "num_samples": num_samples,
            "classes": list(classes), "keys": "%08d_<key>", "meta_field": META_FIELD}
