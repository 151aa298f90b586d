"""The :class:`Augment` pipeline and the parsers of its command-line flags.

:class:`Augment` composes the random ops of :mod:`dataprep.ops.random_ops` and
:mod:`dataprep.ops.color` from a spec, in a fixed stage order; it is what ``dataprep augment``,
``tencrop --color-jitter``, ``preview`` and the trainer call. ``parse_color_jitter`` and
``parse_range`` turn flag text into its arguments, with errors that name the flag.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from dataprep.errors import UsageError
from dataprep.ops.color import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    ColorJitter,
    PCALighting,
    check_rgb,
    pca_from_stats,
)
from dataprep.ops.geometry import Params, Size
from dataprep.ops.random_ops import (
    GaussianBlur,
    GaussianNoise,
    RandomCrop,
    RandomHFlip,
    RandomResizedCrop,
    RandomRotate,
    RandomShift,
    RandomVFlip,
    ScaleJitter,
)

# --- the pipeline -------------------------------------------------------------------------

# Fixed stage order. Every call draws one seed per stage, enabled or not, so turning a stage
# on or off never changes what the other stages draw (adding PCA lighting keeps the crops).
STAGES = ("geometry", "hflip", "vflip", "rotate", "shift", "color_jitter", "pca_lighting",
          "blur", "noise", "extra")


def _pair(value: Any, flag: str, kind: Callable[[Any], Any] = float) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise UsageError(f"{flag} {value!r} must be a (min, max) pair")
    return (kind(value[0]), kind(value[1]))


@dataclass(frozen=True)
class Augment:
    """A training-time augmentation pipeline, applied in this fixed order:

    1. geometry (at most one): ``scale_jitter=(lo, hi)`` + ``crop`` (:class:`ScaleJitter`);
       ``random_resized_crop=(min_scale, max_scale)`` + ``crop`` with ``ratio``
       (:class:`RandomResizedCrop`); or ``crop`` alone (:class:`RandomCrop`). Output
       ``crop`` x ``crop``.
    2. ``hflip`` / 3. ``vflip``: probabilities. 4. ``rotate``: max degrees.
       5. ``shift``: max fraction of the size.
    6. ``color_jitter=(brightness, contrast, saturation, hue)`` (:class:`ColorJitter`).
    7. ``pca_sigma`` > 0: PCA lighting with ``eigval``/``eigvec`` (ImageNet by default;
       :meth:`with_stats` takes them from ``stats.json``).
    8. ``blur=(min_sigma, max_sigma)`` with probability ``blur_p``. 9. ``noise``: sigma.
    10. ``extra``: further picklable ops (e.g. :class:`Albumentations`), in order.

    Zero / ``None`` disables a stage. Input and output: PIL ``"RGB"`` images.
    """

    crop: int | None = None
    scale_jitter: tuple[int, int] | None = None
    random_resized_crop: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.0
    vflip: float = 0.0
    rotate: float = 0.0
    shift: float = 0.0
    color_jitter: tuple[float, float, float, float] | None = None
    pca_sigma: float = 0.0
    eigval: tuple[float, ...] = IMAGENET_EIGVAL
    eigvec: tuple[tuple[float, ...], ...] = IMAGENET_EIGVEC
    blur: tuple[float, float] | None = None
    blur_p: float = 1.0
    noise: float = 0.0
    interpolation: str = "bilinear"
    extra: tuple[Any, ...] = ()
    _ops: tuple[tuple[str, Any], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Normalize sequences to tuples (hashable, stable repr), then build and validate ops.
        fix = object.__setattr__
        fix(self, "scale_jitter", _pair(self.scale_jitter, "--scale-jitter", int))
        fix(self, "random_resized_crop", _pair(self.random_resized_crop, "--random-resized-crop"))
        fix(self, "ratio", _pair(self.ratio, "ratio"))
        fix(self, "blur", _pair(self.blur, "--blur"))
        fix(self, "extra", tuple(self.extra))
        if self.color_jitter is not None:
            cj = self.color_jitter
            if isinstance(cj, (str, bytes)) or not isinstance(cj, Sequence) or len(cj) != 4:
                raise UsageError(f"--color-jitter {cj!r} must be 4 numbers: brightness, "
                                 "contrast, saturation, hue")
            fix(self, "color_jitter", tuple(float(v) for v in cj))
        for key, value in pca_from_stats({"eigval": self.eigval, "eigvec": self.eigvec}).items():
            fix(self, key, value)
        fix(self, "_ops", tuple(self._build()))

    def _build(self) -> list[tuple[str, Any]]:
        ops: list[tuple[str, Any]] = []
        if self.scale_jitter is not None and self.random_resized_crop is not None:
            raise UsageError("--scale-jitter and --random-resized-crop both pick the crop; "
                             "use one of them")
        if (self.scale_jitter or self.random_resized_crop) and not self.crop:
            raise UsageError("--scale-jitter and --random-resized-crop need --crop (the output "
                             "size)")
        if self.crop is not None and self.crop <= 0:
            raise UsageError(f"--crop {self.crop} must be a positive number of pixels")
        if self.scale_jitter is not None:
            ops.append(("geometry", ScaleJitter(self.scale_jitter, self.crop,  # type: ignore[arg-type]
                                                self.interpolation)))
        elif self.random_resized_crop is not None:
            ops.append(("geometry", RandomResizedCrop(self.crop, self.random_resized_crop,  # type: ignore[arg-type]
                                                      self.ratio, self.interpolation)))
        elif self.crop:
            ops.append(("geometry", RandomCrop(self.crop)))
        if self.hflip:
            ops.append(("hflip", RandomHFlip(self.hflip)))
        if self.vflip:
            ops.append(("vflip", RandomVFlip(self.vflip)))
        if self.rotate:
            ops.append(("rotate", RandomRotate(self.rotate, self.interpolation)))
        if self.shift:
            ops.append(("shift", RandomShift(self.shift)))
        if self.color_jitter is not None and any(self.color_jitter):
            ops.append(("color_jitter", ColorJitter(*self.color_jitter)))
        if self.pca_sigma:
            ops.append(("pca_lighting", PCALighting(self.pca_sigma, self.eigval, self.eigvec)))
        if self.blur is not None:
            ops.append(("blur", GaussianBlur(self.blur, self.blur_p)))
        if self.noise:
            ops.append(("noise", GaussianNoise(self.noise)))
        for i, op in enumerate(self.extra):
            if not callable(getattr(op, "make_params", None)):
                raise UsageError(f"extra op {op!r} needs make_params(rng, size) and "
                                 "apply_params(img, params)")
            ops.append((f"extra{i}", op))
        return ops

    @property
    def ops(self) -> tuple[tuple[str, Any], ...]:
        """``(stage name, op)`` pairs of the enabled stages, in order."""
        return self._ops

    def with_stats(self, stats: dict[str, Any]) -> Augment:
        """A copy whose PCA lighting uses ``eigval``/``eigvec`` from a stats dictionary."""
        return replace(self, **pca_from_stats(stats))

    def make_params(self, rng: np.random.Generator, size: Size) -> list[tuple[str, Params]]:
        """Draw every enabled stage's parameters for an input of ``size`` (width, height).

        One seed per stage of :data:`STAGES` is drawn from ``rng`` first; each stage draws from
        its own generator, so stages do not shift each other's random streams.
        """
        seeds = rng.integers(0, 2**63, size=len(STAGES))
        streams = {name: np.random.Generator(np.random.PCG64(int(s)))
                   for name, s in zip(STAGES, seeds, strict=True)}
        params: list[tuple[str, Params]] = []
        for name, op in self._ops:
            stream = streams["extra" if name.startswith("extra") else name]
            params.append((name, op.make_params(stream, size)))
            if name == "geometry":
                size = (self.crop, self.crop)  # type: ignore[assignment]
        return params

    def apply_params(self, img: Image.Image, params: list[tuple[str, Params]]) -> Image.Image:
        ops = dict(self._ops)
        img = check_rgb(img, "Augment")
        for name, p in params:
            img = ops[name].apply_params(img, p)
        return img

    def apply(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Augment one image; the generator is typically ``sample_rng(seed, key, view, epoch)``."""
        img = check_rgb(img, "Augment")
        return self.apply_params(img, self.make_params(rng, img.size))

    __call__ = apply

    def to_json(self) -> dict[str, Any]:
        """The resolved parameters as JSON types (for ``dataprep.json`` and previews)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("_ops", "extra")}
        d["extra"] = [{"op": type(op).__name__, **asdict(op)} for op in self.extra]
        return d


# --- flag parsing ---------------------------------------------------------------------------


def _numbers(text: str, flag: str, kind: Callable[[str], Any], example: str) -> list:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a comma-separated list of "
                         f"{'integers' if kind is int else 'numbers'}; e.g. {flag} {example}"
                         ) from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{flag} {text!r} must hold finite numbers; e.g. {flag} {example}")
    return values


def parse_color_jitter(text: str, flag: str = "--color-jitter"
                       ) -> tuple[float, float, float, float]:
    """``"B,C,S,H"`` -> 4 floats; ``"V"`` means ``V,V,V,0`` and ``"B,C,S"`` means hue 0.

    Each value is a jitter strength as in torchvision ``ColorJitter``: non-negative, hue at most
    0.5. Errors name the flag.
    """
    example = "0.4,0.4,0.4,0.1"
    values = _numbers(text, flag, float, example)
    if len(values) == 1:
        values = [values[0]] * 3 + [0.0]
    elif len(values) == 3:
        values = values + [0.0]
    elif len(values) != 4:
        raise UsageError(f"{flag} {text!r} has {len(values)} values; expected 1, 3 or 4: "
                         f"BRIGHTNESS,CONTRAST,SATURATION[,HUE], e.g. {flag} {example}")
    if any(v < 0 for v in values):
        raise UsageError(f"{flag} {text!r}: every value must be >= 0 (0 disables that part)")
    if values[3] > 0.5:
        raise UsageError(f"{flag} {text!r}: hue {values[3]} must be at most 0.5 (half a turn)")
    return (values[0], values[1], values[2], values[3])


def parse_range(text: str, flag: str = "--scale-jitter", kind: Callable[[str], Any] = int,
                minimum: float | None = None) -> tuple[Any, Any]:
    """``"LO,HI"`` -> ``(LO, HI)`` of ``kind`` (``int`` or ``float``); ``"V"`` -> ``(V, V)``.

    Requires ``LO <= HI`` and, when given, ``LO >= minimum``. Errors name the flag.
    """
    example = "256,480" if kind is int else "0.1,2.0"
    values = _numbers(text, flag, kind, example)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise UsageError(f"{flag} {text!r} has {len(values)} values; expected LO,HI, "
                         f"e.g. {flag} {example}")
    lo, hi = values
    if lo > hi:
        raise UsageError(f"{flag} {text!r}: LO {lo} is larger than HI {hi}; expected LO,HI")
    if minimum is not None and lo < minimum:
        raise UsageError(f"{flag} {text!r}: values must be at least {minimum}")
    return lo, hi
