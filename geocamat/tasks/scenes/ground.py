"""Ground size of scene images: the training images' pixel size in metres, recorded in the bundle, lets a scene
model cut a whole scene at another resolution into cells that cover the ground its training images covered."""

from __future__ import annotations

import statistics

#: an image whose side exceeds this many times the training images' side is classified in cells of that side
CHIP_FACTOR = 2.0
#: a whole image covering this many times less (or more) ground a side than the training images is warned about
SCALE_WARNING = 4.0


def median_metres(headers) -> float | None:
    """The median pixel side in metres of images (:class:`geocamat.data.scenes.SceneHeader`), or None when fewer
    than half of them are georeferenced (a folder of PNGs or JPGs: the model knows pixels only)."""
    found = [h.metres for h in headers if h.metres]
    if not found or len(found) * 2 < len(headers):
        return None
    return float(statistics.median(found))


def training_side(source_side: int | None, source_metres: float | None, metres: float | None) -> float | None:
    """How many of an image's pixels (of side ``metres``) cover the side of a training image: the training
    images' median side in pixels, rescaled by ground size when both are known."""
    if not source_side:
        return None
    if source_metres and metres:
        return source_side * source_metres / metres
    return float(source_side)


def auto_chip(width: int, height: int, side: float | None) -> int:
    """The cell side in pixels for an image of ``width`` x ``height`` px whose pixels covering a training image's
    side are ``side`` (:func:`training_side`): that side rounded when the image exceeds :data:`CHIP_FACTOR` times
    it, else 0 (whole)."""
    return max(1, round(side)) if side and max(width, height) > CHIP_FACTOR * side else 0


def describe(side_px: int, metres: float | None) -> str:
    """``'64 px'`` or, with a pixel size, ``'64 px (640 m)'``."""
    return f"{side_px} px" + (f" ({side_px * metres:.4g} m)" if metres else "")
