"""``open_dataset``: iterate decoded items of any sink, expanding lazy views.

A lazy record stores the short-side-resized image once with ``json.views = {"kind":
"tencrop"|"fivecrop", "crop": C, "flip": bool}``; expanding it cuts the same views, in the same
order and with the same keys and metadata, that ``tencrop --views materialize`` writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from dataprep.io.decode import open_image
from dataprep.io.readers import iter_samples
from dataprep.ops.crop import VIEW_NAMES, ten_crop
from dataprep.records import Sample

VIEW_KINDS = ("tencrop", "fivecrop")


@dataclass
class Item:
    """One decoded sample: RGB image, label, metadata."""

    key: str
    image: Image.Image
    label: int
    meta: dict[str, Any]


def view_spec(meta: dict[str, Any]) -> dict[str, Any] | None:
    spec = meta.get("views")
    if not isinstance(spec, dict) or spec.get("kind") not in VIEW_KINDS:
        return None
    return spec


def view_meta(meta: dict[str, Any], key: str, view: int) -> dict[str, Any]:
    """Metadata of view ``view`` of record ``key`` (what materialized views carry)."""
    out = {k: v for k, v in meta.items() if k not in ("views", "size", "key_full")}
    out.update(key=f"{key}_v{view}", source=key, view=view, view_name=VIEW_NAMES[view])
    crop = (meta.get("views") or {}).get("crop")
    if isinstance(crop, int):
        out["size"] = [crop, crop]  # as a materialized view's json says
    return out


def expand_image(img: Image.Image, spec: dict[str, Any]) -> list[Image.Image]:
    """The views a lazy spec describes, in ten-crop order."""
    flip = bool(spec.get("flip", True)) and spec["kind"] == "tencrop"
    return ten_crop(img, int(spec["crop"]), flip=flip)


def expand(sample: Sample, expand_views: bool = True) -> list[Item]:
    """Decode ``sample``; a lazy record becomes its views (keys ``{key}_v{i}``)."""
    img = open_image(sample.image)
    spec = view_spec(sample.meta) if expand_views else None
    if spec is None:
        return [Item(sample.key, img, sample.cls, sample.meta)]
    return [Item(f"{sample.key}_v{i}", view, sample.cls, view_meta(sample.meta, sample.key, i))
            for i, view in enumerate(expand_image(img, spec))]


def open_dataset(src: str | Path, split: str | None = None,
                 expand_views: bool = True) -> Iterator[Item]:
    """Decoded items of a WebDataset directory / pattern or an LMDB, in stored order."""
    for sample in iter_samples(src, split):
        yield from expand(sample, expand_views)
