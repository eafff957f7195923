"""Minimum mapping unit: regions of a class map smaller than N pixels merged into their largest neighbour."""

from __future__ import annotations

import numpy as np

from geocamat.unionfind import connected_components


def sieve_classes(classes: np.ndarray, nodata: int, min_pixels: int,
                  inner_edges: tuple[bool, bool, bool, bool] = (False, False, False, False)) -> np.ndarray:
    """Merge every 4-connected region of fewer than ``min_pixels`` pixels into its largest neighbour (GDAL's sieve).

    Args:
        classes: (rows, cols) class ids of one piece of the map.
        nodata: value without a class; it is neither merged nor merged into.
        min_pixels: the minimum mapping unit in pixels (<= 1: nothing changes).
        inner_edges: (top, left, bottom, right): whether that side of the piece borders another piece of the map.
            A small region touching such a side may continue there, so it is kept as it is.

    Returns:
        The sieved class ids (same shape and dtype).
    """
    min_pixels = min(int(min_pixels), classes.size - 1)  # GDAL's sieve takes no unit as large as the piece
    if min_pixels <= 1:
        return classes
    from rasterio.features import sieve

    valid = classes != nodata
    source = classes.astype(np.int32) if classes.dtype not in (np.uint8, np.int16, np.int32) else classes
    out = np.where(valid, sieve(source, size=int(min_pixels), mask=valid, connectivity=4), classes)
    out = out.astype(classes.dtype, copy=False)
    changed = out != classes
    if changed.any() and any(inner_edges):
        out = _restore_edge_regions(out, classes, changed, inner_edges)
    return out


def _restore_edge_regions(out: np.ndarray, classes: np.ndarray, changed: np.ndarray,
                          inner_edges: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """Undo the sieve in the changed regions that touch an inner edge of the piece."""
    rows, cols = np.nonzero(changed)
    index = np.full(changed.shape, -1, np.int64)
    index[rows, cols] = np.arange(len(rows))
    right = changed[:, :-1] & changed[:, 1:]
    down = changed[:-1, :] & changed[1:, :]
    r, c = np.nonzero(right)
    d_r, d_c = np.nonzero(down)
    edges = zip(np.concatenate([index[r, c], index[d_r, d_c]]).tolist(),
                np.concatenate([index[r, c + 1], index[d_r + 1, d_c]]).tolist(), strict=True)
    component = connected_components(len(rows), edges)
    top, left, bottom, right_side = inner_edges
    h, w = changed.shape
    on_edge = ((top & (rows == 0)) | (left & (cols == 0)) | (bottom & (rows == h - 1))
               | (right_side & (cols == w - 1)))
    keep = np.isin(component, np.unique(component[on_edge]))
    out = out.copy()
    out[rows[keep], cols[keep]] = classes[rows[keep], cols[keep]]
    return out
