"""``preview``: a labelled contact sheet of what tencrop and augment do to a few images.

One row per picked record: the original, its ten (or five) views exactly as ``tencrop`` writes
them (with ``--color-jitter`` / ``--pca-lighting`` when given), then ``copies`` augmented
copies exactly as ``augment`` writes them (same generators: ``sample_rng(seed, key, view)``).
Pixels come from the same tasks the jobs run, encoded losslessly (PNG) and decoded again, so
the sheet shows the output before its JPEG encoding. Pillow only; text with ``ImageDraw``.

Layout (pixels): ``MARGIN`` around everything; a caption of ``len(caption)`` lines of
``LINE`` each; then per row a label line (``LINE``) and a row of ``cell`` x ``cell`` thumbnails
``GAP`` apart, with ``GROUP_GAP`` between the groups (original | views | copies); a header line
(``LINE``) over the first row names the columns. :func:`sheet_size` computes the size.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

from dataprep.errors import ImageError, UsageError
from dataprep.io.decode import DEFAULT_MAX_PIXELS, open_image
from dataprep.io.scan import scan
from dataprep.jobs.augment import AugmentTask
from dataprep.jobs.jitter import build_augment
from dataprep.jobs.tencrop import TencropTask
from dataprep.ops.augment import Augment
from dataprep.records import Record

MARGIN = 8
GAP = 4
GROUP_GAP = 12
LINE = 16
BACKGROUND = (250, 250, 250)
CELL_BACKGROUND = (224, 224, 224)
INK = (20, 20, 20)
VIEW_LABELS = ("TL", "TR", "BL", "BR", "C", "flip TL", "flip TR", "flip BL", "flip BR",
               "flip C")


@dataclass
class PreviewResult:
    path: str
    size: tuple[int, int]
    rows: list[str]
    columns: int
    skipped: list[str]
    seconds: float

    def lines(self) -> list[str]:
        out = [f"preview: {len(self.rows)} images x {self.columns} columns -> {self.path} "
               f"({self.size[0]}x{self.size[1]}) in {self.seconds:.1f} s"]
        out += [f"  skipped {reason}" for reason in self.skipped]
        return out


def sheet_size(rows: int, groups: Sequence[int], cell: int, caption_lines: int) -> tuple[int, int]:
    """(width, height) of a sheet with ``rows`` rows and column groups of the given sizes."""
    groups = [g for g in groups if g]
    columns = sum(groups)
    width = 2 * MARGIN + columns * cell + (columns - len(groups)) * GAP \
        + (len(groups) - 1) * GROUP_GAP
    height = 2 * MARGIN + caption_lines * LINE + LINE + rows * (LINE + cell + GAP)
    return width, height


def _font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the bitmap font
        return ImageFont.load_default()


def _fit(text: str, draw: ImageDraw.ImageDraw, font: Any, width: int) -> str:
    """``text`` cut with an ellipsis so it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(rows: list[tuple[str, list[list[Image.Image]]]], headers: list[list[str]],
                  cell: int, caption: list[str]) -> Image.Image:
    """Draw the sheet. ``rows``: (label, groups of images); ``headers``: a label per column,
    grouped the same way. Each image is scaled to fit a ``cell`` square (aspect kept)."""
    groups = [len(g) for g in headers]
    size = sheet_size(len(rows), groups, cell, len(caption))
    sheet = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    y = MARGIN
    for line in caption:
        draw.text((MARGIN, y + 1), _fit(line, draw, font, size[0] - 2 * MARGIN), fill=INK,
                  font=font)
        y += LINE

    def columns():  # x of every column, group by group
        x = MARGIN
        for n in groups:
            if not n:
                continue
            for _ in range(n):
                yield x
                x += cell + GAP
            x += GROUP_GAP - GAP

    xs = list(columns())
    names = [name for group in headers for name in group]
    for x, name in zip(xs, names, strict=True):
        draw.text((x, y + 1), _fit(name, draw, font, cell), fill=INK, font=font)
    y += LINE
    for label, image_groups in rows:
        draw.text((MARGIN, y + 1), _fit(label, draw, font, size[0] - 2 * MARGIN), fill=INK,
                  font=font)
        y += LINE
        images = [img for group in image_groups for img in group]
        for x, img in zip(xs, images, strict=False):
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=CELL_BACKGROUND)
            thumb = ImageOps.contain(img, (cell, cell), Image.Resampling.BILINEAR)
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        y += cell + GAP
    return sheet


def pick_records(records: list[Record], count: int) -> list[Record]:
    """``count`` records spread over the classes: the first of each class in turn, then the
    second of each, ... (classes in label order, records in source order)."""
    by_class: dict[int, list[Record]] = {}
    for r in records:
        by_class.setdefault(r.label, []).append(r)
    picked: list[Record] = []
    depth = 0
    while len(picked) < count and any(len(v) > depth for v in by_class.values()):
        for label in sorted(by_class):
            if len(by_class[label]) > depth and len(picked) < count:
                picked.append(by_class[label][depth])
        depth += 1
    return picked


def _decoded(samples) -> list[Image.Image]:
    return [Image.open(io.BytesIO(s.image)).convert("RGB") for s in samples]


def _describe(augment: Augment | None) -> str:
    if augment is None:
        return "none"
    parts = []
    for name, op in augment.ops:
        fields = {k: v for k, v in vars(op).items() if not k.startswith("_")}
        parts.append(f"{name}({', '.join(f'{k}={_short(v)}' for k, v in fields.items())})")
    return "; ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return "[...]"  # eigenvectors: too long for a caption
    if isinstance(value, tuple):
        return "(" + ",".join(_short(v) for v in value) + ")"
    return str(value)


def preview(src: str | Path, out: str | Path, *, count: int = 4, copies: int = 4,
            views: bool = True, five: bool = False, cell: int = 112, seed: int = 0,
            short_side: int | None = None, crop: int | None = None,
            color_jitter: str | Sequence[float] | None = None, pca_lighting: float = 0.0,
            stats: str | Path | dict[str, Any] | None = None,
            scale_jitter: str | Sequence[int] | None = None,
            random_resized_crop: bool | Sequence[float] | None = False, hflip: bool = False,
            rotate: float = 0.0, shift: float = 0.0, blur: bool = False, noise: float = 0.0,
            interpolation: str = "bilinear", exact: bool = False, upscale: bool = False,
            max_pixels: int = DEFAULT_MAX_PIXELS, root: str | Path | None = None,
            split: str | None = None, colors: int | None = None) -> PreviewResult:
    """Write a contact sheet of ``count`` images of ``src`` to ``out`` (PNG, or JPEG/WebP by
    the suffix): each original, its views (``tencrop --short-side S --crop C`` with the color
    flags; S defaults to 256 and C to 224 as in tencrop) and ``copies`` copies made by
    ``augment`` with all the flags (its ``--short-side``/``--crop``, unset by default).
    ``colors``: store a palette PNG of that many colors (2..256; a 3-4x smaller file, for
    documentation) instead of full RGB.
    """
    start = time.perf_counter()
    out = _check_flags(Path(out), count, copies, cell, colors)
    color = build_augment(color_jitter=color_jitter, pca_lighting=pca_lighting, stats=stats)
    full = build_augment(color_jitter=color_jitter, pca_lighting=pca_lighting, stats=stats,
                         scale_jitter=scale_jitter, crop=crop,
                         random_resized_crop=random_resized_crop, hflip=hflip, rotate=rotate,
                         shift=shift, blur=blur, noise=noise, interpolation=interpolation)
    copies = copies if full is not None else 0
    view_short, view_crop = short_side or 256, crop or 224
    if views and view_crop > view_short:
        raise UsageError(f"--crop {view_crop} is larger than --short-side {view_short}; every "
                         "view would fall outside the resized image")
    tencrop_task = TencropTask(view_short, interpolation, exact, True, "png", 90, max_pixels,
                               crop=view_crop, flip=not five, augment=color, seed=seed)
    augment_task = AugmentTask(short_side=short_side, interpolation=interpolation, exact=exact,
                               upscale=upscale, image_format="png", max_pixels=max_pixels,
                               augment=full or Augment(), copies=copies, seed=seed)
    rows, skipped = _rows(pick_records(_pool(src, root, split, count), count),
                          tencrop_task if views else None, augment_task if copies else None,
                          max_pixels)
    if not rows:
        raise UsageError(f"no image of {src} could be previewed: " + "; ".join(skipped[:3]))
    n_views = 5 if five else 10
    headers = [["original"], list(VIEW_LABELS[:n_views]) if views else [],
               [f"copy {k}" for k in range(copies)]]
    caption = [
        (f"views: tencrop --short-side {view_short} --crop {view_crop}"
         + (" --five" if five else "") + f"; jitter per view: {_describe(color)}")
        if views else "views: off",
        f"copies: augment (--short-side {short_side or 'off'}; seed {seed}): {_describe(full)}",
    ]
    sheet = _save(contact_sheet(rows, headers, cell, caption), out, colors)
    return PreviewResult(str(out), sheet.size, [label for label, _ in rows],
                         sum(len(h) for h in headers), skipped, time.perf_counter() - start)


def _check_flags(out: Path, count: int, copies: int, cell: int, colors: int | None) -> Path:
    """Refuse, before any work, flags no sheet can be made with; ``out``, checked."""
    if count < 1 or copies < 0 or cell < 16:
        raise UsageError(f"--count {count} must be >= 1, --copies {copies} >= 0 and --cell "
                         f"{cell} >= 16")
    if colors is not None and not 2 <= colors <= 256:
        raise UsageError(f"--colors {colors} must be between 2 and 256 (a PNG palette)")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UsageError(f"-o {out}: expected a .png (or .jpg / .webp) file name")
    return out


def _pool(src: str | Path, root: str | Path | None, split: str | None, count: int,
          ) -> list[Record]:
    """The records to pick from: all of a listed source (of ``split`` when given), else the
    first ``64 * count`` a scan yields."""
    source = scan(src, root=root, split=split)
    pool = source.records if source.records is not None else list(islice(source, 64 * count))
    if split and source.records is not None:
        pool = [r for r in pool if r.split == split]
    return pool


def _rows(records: list[Record], tencrop_task: TencropTask | None,
          augment_task: AugmentTask | None, max_pixels: int,
          ) -> tuple[list[tuple[str, list[list[Image.Image]]]], list[str]]:
    """Per record: its label and its groups of images (original, views, copies), made by the
    jobs' own tasks (None: that group is off); and the reasons of the records skipped."""
    rows: list[tuple[str, list[list[Image.Image]]]] = []
    skipped: list[str] = []
    for record in records:
        try:
            original = open_image(record.data if record.data is not None else record.path,
                                  max_pixels=max_pixels)
            groups = [[original]]
            groups.append(_decoded(tencrop_task(record)) if tencrop_task is not None else [])
            groups.append(_decoded(augment_task(record)) if augment_task is not None else [])
        except ImageError as exc:
            skipped.append(str(exc))
            continue
        label = f"{record.class_name} / {record.key}  ({original.width}x{original.height})"
        rows.append((label, groups))
    return rows, skipped


def _save(sheet: Image.Image, out: Path, colors: int | None) -> Image.Image:
    """Write the sheet to ``out`` atomically (``colors``: as a palette PNG); the image saved."""
    if colors is not None:
        if out.suffix.lower() != ".png":
            raise UsageError(f"--colors makes a palette PNG; -o {out} is not a .png")
        sheet = sheet.quantize(colors, method=Image.Quantize.MEDIANCUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    save = {".png": {"optimize": True}, ".webp": {"quality": 90}}.get(out.suffix.lower(),
                                                                       {"quality": 90})
    sheet.save(tmp, **save)
    tmp.replace(out)
    return sheet
