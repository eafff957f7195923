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
    a = _blocks(classes, nodata)  # (4, h/2, w/2)
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
    _, h, w = values.shape
    if h % 2 or w % 2:
        padded = np.full((values.shape[0], h + h % 2, w + w % 2), np.nan, dtype=values.dtype)
        padded[:, :h, :w] = values
        values = padded
    valid = ~np.isnan(values)
    if valid.all():  # the usual case: a plain mean of the four
        return (values[:, 0::2, 0::2] + values[:, 0::2, 1::2] + values[:, 1::2, 0::2] + values[:, 1::2, 1::2]) / 4
    v = np.where(valid, values, 0)
    total = v[:, 0::2, 0::2] + v[:, 0::2, 1::2] + v[:, 1::2, 0::2] + v[:, 1::2, 1::2]
    count = (valid[:, 0::2, 0::2].astype(np.uint8) + valid[:, 0::2, 1::2] + valid[:, 1::2, 0::2]
             + valid[:, 1::2, 1::2])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(values.dtype, copy=False)


def _blocks(a: np.ndarray, fill) -> np.ndarray:
    """The four pixels of every 2x2 block of a 2-D array (padded with ``fill`` to even size): (4, h/2, w/2)."""
    h, w = a.shape
    if h % 2 or w % 2:
        padded = np.full((h + h % 2, w + w % 2), fill, dtype=a.dtype)
        padded[:h, :w] = a
        a = padded
    return np.stack([a[0::2, 0::2], a[0::2, 1::2], a[1::2, 0::2], a[1::2, 1::2]])


def pyramid(array: np.ndarray, factors: list[int], *, classes: bool, nodata) -> list[np.ndarray]:
    """The levels of ``array`` (bands, rows, cols) for ``factors`` (2, 4, ...), each from the one before."""
    if list(factors) != [2 ** (i + 1) for i in range(len(factors))]:
        raise ValueError(f"overview factors must be 2, 4, 8, ..., got {factors}")
    levels, current = [], array
    for _ in factors:
        current = mode_2x2(current[0], nodata)[None] if classes else nanmean_2x2(current)
        levels.append(current)
    return levels
