"""What class outputs need to know about the classes: pixel values, names, colours; the class raster's dtype."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class ClassStyle:
    """What the class raster needs to know about the classes: ids (pixel values), names, colours."""

    ids: list[int]
    names: list[str]
    colors: list[str]

    @classmethod
    def from_classes(cls, classes: Sequence) -> ClassStyle:
        """From :class:`geocamat.bundle.ClassInfo` objects (or anything with id, name, color)."""
        return cls([int(c.id) for c in classes], [str(c.name) for c in classes], [str(c.color) for c in classes])

    def rgb(self, i: int) -> tuple[int, int, int]:
        color = self.colors[i].lstrip("#")
        return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def class_dtype_nodata(ids: Sequence[int]) -> tuple[str, int]:
    """Smallest unsigned dtype holding the class ids, and a nodata value that is not a class id.

    0 if free, else the largest value of the dtype if free, else the largest unused value.
    """
    used = {int(i) for i in ids}
    if min(used) < 0:
        raise ValueError("class ids must be >= 0")
    dtype, top = ("uint8", 255) if max(used) <= 255 and len(used) < 256 else ("uint16", 65535)
    if 0 not in used:
        return dtype, 0
    if top not in used:
        return dtype, top
    return dtype, max(v for v in range(top + 1) if v not in used)
