"""Pure image operations: no I/O, no global random state."""

from dataprep.ops.crop import center_box, center_crop, five_boxes, five_crop, ten_crop
from dataprep.ops.resize import INTERPOLATIONS, resize_short_side, short_side_size

__all__ = [
    "INTERPOLATIONS",
    "center_box",
    "center_crop",
    "five_boxes",
    "five_crop",
    "resize_short_side",
    "short_side_size",
    "ten_crop",
]
