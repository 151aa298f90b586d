"""Generated test images, for test modules that need them at import time (parametrize lists);
fixtures of ``conftest.py`` hand out the same functions.

Every image differs from pixel to pixel along both axes, so a crop or resize that is off by
one pixel changes the output.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def gradient_array(width: int, height: int) -> np.ndarray:
    """uint8 (height, width, 3): red grows with x, green with y, blue is a diagonal texture."""
    y, x = np.mgrid[0:height, 0:width]
    red = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    green = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    blue = ((x * 7 + y * 13) % 256).astype(np.uint8)
    return np.stack([red, green, blue], axis=-1)


def gradient(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A gradient image of any size, converted to ``mode``."""
    img = Image.fromarray(gradient_array(width, height), "RGB")
    return img if mode == "RGB" else img.convert(mode)
