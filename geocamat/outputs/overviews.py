"""Overview levels of a unit's rasters, computed while streaming (so the final COG build only copies them).

GDAL's COG driver computes overviews from the whole mosaic at the end, on one thread, which on a large
scene costs about as much as compressing the full resolution. A unit whose origin and size are multiples
of the overview factors (the engine sizes units so where it can) computes its part of every level on its
own: each level halves the previous one (mode of 2x2 blocks for classes, mean of the valid values for
floats; nodata/NaN ignored; a block with no valid value stays nodata). The pieces of each level are
mosaicked by a VRT that the full-resolution VRT names as its overview, and GDAL's COG driver
(``OVERVIEWS=AUTO``) copies source overviews as they are.
"""

from __future__ import annotations

import numpy as np

#: GDAL's COG driver adds overview levels until the smallest fits in one block of this size.
COG_BLOCK = 512


def overview_factors(width: int, height: int, block: int = COG_BLOCK) -> list[int]:
    """Factors 2, 4, ... a COG of ``width`` x ``height`` px gets (as GDAL's OVERVIEWS=AUTO picks them: until the
    smallest level fits in one ``block``); [] when the image fits in one block."""
    factors, f = [], 2
    while max(width, height) > block * (f // 2):
        factors.append(f)
        f *= 2
    return factors


def mode_2x2(classes: np.ndarray, nodata: int) -> np.ndarray:
    """Most frequent valid value of each 2x2 block of a 2-D class array (ties: the first in row order)."""
    a = np.stack(_quads(classes, nodata))  # (4, h/2, w/2)
    valid = a != nodata
    count = valid.astype(np.uint8)  # each valid pixel counts itself, then each equal valid pair counts twice
    for i, j in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)):
        same = (a[i] == a[j]) & valid[i]
        count[i] += same
        count[j] += same
    pick = count.argmax(axis=0)
    return np.take_along_axis(a, pick[None], axis=0)[0]


def nanmean_2x2(values: np.ndarray) -> np.ndarray:
    """Mean of the non-NaN values of each 2x2 block of a (bands, rows, cols) float array; NaN if none."""
    q = _quads(values, np.nan)
    valid = [~np.isnan(v) for v in q]
    if all(v.all() for v in valid):  # the usual case: a plain mean of the four
        return (q[0] + q[1] + q[2] + q[3]) / 4
    total = sum(np.where(ok, v, 0) for v, ok in zip(q, valid, strict=True))
    count = sum(ok.astype(np.uint8) for ok in valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(values.dtype, copy=False)


def _quads(a: np.ndarray, fill) -> tuple[np.ndarray, ...]:
    """The four pixels of every 2x2 block over the last two axes (padded with ``fill`` to even size), as views:
    top-left, top-right, bottom-left, bottom-right."""
    h, w = a.shape[-2:]
    if h % 2 or w % 2:
        padded = np.full(a.shape[:-2] + (h + h % 2, w + w % 2), fill, dtype=a.dtype)
        padded[..., :h, :w] = a
        a = padded
    return a[..., 0::2, 0::2], a[..., 0::2, 1::2], a[..., 1::2, 0::2], a[..., 1::2, 1::2]


def pyramid(array: np.ndarray, factors: list[int], *, classes: bool, nodata) -> list[np.ndarray]:
    """The levels of ``array`` (bands, rows, cols) for ``factors`` (2, 4, ...), each from the one before."""
    if list(factors) != [2 ** (i + 1) for i in range(len(factors))]:
        raise ValueError(f"overview factors must be 2, 4, 8, ..., got {factors}")
    levels, current = [], array
    for _ in factors:
        current = mode_2x2(current[0], nodata)[None] if classes else nanmean_2x2(current)
        levels.append(current)
    return levels
