"""Rectangular footprints that meet: which pairs of images touch or overlap, and by how much.

One rule for the whole project: two images whose common part exceeds :data:`SAME_GROUND_SHARE` of the smaller one
cover the same ground (two dates of one place, not two sheets or two neighbouring scenes).
"""

from __future__ import annotations

import numpy as np

#: the share of the smaller footprint above which two images cover the same ground
SAME_GROUND_SHARE = 0.5


def touching_pairs(rects: np.ndarray) -> list[tuple[int, int, float]]:
    """The pairs (i < j) of closed rectangles ``(x0, y0, x1, y1)`` that touch or overlap (a corner counts), each
    with the share of the smaller rectangle that both cover."""
    r = np.asarray(rects, float).reshape(-1, 4)
    area = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    pairs = []
    for k in range(len(r) - 1):
        w = np.minimum(r[k + 1:, 2], r[k, 2]) - np.maximum(r[k + 1:, 0], r[k, 0])
        h = np.minimum(r[k + 1:, 3], r[k, 3]) - np.maximum(r[k + 1:, 1], r[k, 1])
        touch = (w >= 0) & (h >= 0)
        share = w.clip(0) * h.clip(0) / np.maximum(np.minimum(area[k + 1:], area[k]), 1e-12)
        pairs += [(k, k + 1 + int(j), float(share[j])) for j in np.nonzero(touch)[0]]
    return pairs
