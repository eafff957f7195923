"""Which boxes of a scene overlap, and the class-wise NMS built on that, in time that grows with the boxes.

A scene of a million detections cannot be compared pair by pair (torchvision's NMS compares every kept box with
every later one: minutes at 10^5 boxes, hours at 10^6). :func:`overlapping_pairs` puts the boxes on a grid of
cells about as large as most boxes and compares only boxes that share a cell; :func:`class_nms` is torchvision's
greedy class-wise NMS (the same boxes kept, by descending score) on those pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: candidate pairs examined at a time (bounds the memory of the search: about 100 bytes each)
PAIRS_PER_BATCH = 4_000_000


class BoxGrid:
    """A grid of square cells over boxes; the side is the 90th percentile of the boxes' longer sides, so most
    boxes touch at most four cells and a cell holds about as many boxes as overlap there (at most 10^7 cells a
    side, so that cell numbers fit in 64 bits)."""

    def __init__(self, boxes: np.ndarray) -> None:
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        self.x0, self.y0 = float(boxes[:, 0].min()), float(boxes[:, 1].min())
        span = max(float(boxes[:, 2].max()) - self.x0, float(boxes[:, 3].max()) - self.y0)
        self.side = max(float(np.percentile(np.maximum(w, h), 90)), span / 1e7, 1e-12)
        self.columns = int(self.col(boxes[:, 2].max())) + 1

    def col(self, x: np.ndarray) -> np.ndarray:
        return np.floor((x - self.x0) / self.side).astype(np.int64)

    def row(self, y: np.ndarray) -> np.ndarray:
        return np.floor((y - self.y0) / self.side).astype(np.int64)

    def key(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cell number of each point (x, y)."""
        return self.row(y) * self.columns + self.col(x)

    def entries(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(box, cell) of every cell each box touches."""
        c0, c1, r0, r1 = self.col(boxes[:, 0]), self.col(boxes[:, 2]), self.row(boxes[:, 1]), self.row(boxes[:, 3])
        nx = c1 - c0 + 1
        counts = nx * (r1 - r0 + 1)
        box = np.repeat(np.arange(len(boxes)), counts)
        k = np.arange(len(box)) - np.repeat(np.cumsum(counts) - counts, counts)
        return box, (r0[box] + k // nx[box]) * self.columns + c0[box] + k % nx[box]


def overlapping_pairs(boxes: np.ndarray, accept: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of boxes whose interiors overlap (a positive-area intersection).

    Boxes with no area (or a NaN corner) overlap nothing. Boxes are compared only with those sharing a grid
    cell (:class:`BoxGrid`), and a pair is kept in one cell only: the one holding the top-left corner of the
    boxes' intersection (a point of both boxes, so in a cell both touch).

    Args:
        boxes: (N, 4) xyxy.
        accept: keeps only the pairs for which ``accept(i, j)`` (a boolean array) is true; it sees the pairs a
            batch at a time, so the pairs a caller drops are never all in memory at once.

    Returns:
        (i, j) int64 arrays, i < j, in no particular order.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        valid = np.flatnonzero((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    if len(valid) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    b = b[valid]
    grid = BoxGrid(b)
    box, cell = grid.entries(b)
    x0, y0, x1, y1 = (np.ascontiguousarray(b[:, k]) for k in range(4))
    # in each cell, entries by left edge: an entry can overlap only the later ones that start before its right edge
    rank = np.unique(np.r_[x0[box], x1[box]], return_inverse=True)[1].reshape(2, -1)
    width = int(rank.max()) + 1
    by_left = np.lexsort((rank[0], cell))
    box, cell, rank = box[by_left], cell[by_left], rank[:, by_left]
    stop = np.searchsorted(cell * width + rank[0], cell * width + rank[1], "left")
    later = np.maximum(stop - np.arange(len(cell)) - 1, 0)  # entries after each one that start before it ends
    done = np.r_[0, np.cumsum(later)]
    out_i, out_j = [], []
    lo = 0
    while lo < len(cell):
        hi = max(lo + 1, int(np.searchsorted(done, done[lo] + PAIRS_PER_BATCH, "right")) - 1)
        n = later[lo:hi]
        first = np.repeat(np.arange(lo, hi), n)
        second = first + 1 + np.arange(len(first)) - np.repeat(np.cumsum(n) - n, n)
        i, j = box[first], box[second]
        x = np.maximum(x0[i], x0[j])
        meet = x < np.minimum(x1[i], x1[j])
        i, j, x, first = i[meet], j[meet], x[meet], first[meet]
        y = np.maximum(y0[i], y0[j])
        meet = (y < np.minimum(y1[i], y1[j])) & (grid.key(x, y) == cell[first])
        i, j = valid[np.minimum(i[meet], j[meet])], valid[np.maximum(i[meet], j[meet])]
        if accept is not None:
            ok = accept(i, j)
            i, j = i[ok], j[ok]
        out_i.append(i)
        out_j.append(j)
        lo = hi
    return np.concatenate(out_i), np.concatenate(out_j)


def pair_iou(boxes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """IoU of the boxes i[k] and j[k] (torchvision's formula: areas are not clipped)."""
    a, c = boxes[i], boxes[j]
    w = np.clip(np.minimum(a[:, 2], c[:, 2]) - np.maximum(a[:, 0], c[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], c[:, 3]) - np.maximum(a[:, 1], c[:, 1]), 0, None)
    inter = w * h
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def duplicate_pairs(boxes: np.ndarray, labels: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (i < j) of boxes of one class with IoU > ``iou`` (what class-wise NMS suppresses)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels)
    return overlapping_pairs(b, lambda i, j: (labels[i] == labels[j]) & (pair_iou(b, i, j) > iou))


def class_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float,
              pairs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Class-wise greedy NMS: indices of the kept boxes by descending score (equal scores: by index).

    The result is torchvision's ``batched_nms`` (a box is removed by a kept box of its class with a higher score
    and IoU > ``iou``), computed on :func:`duplicate_pairs` only. ``pairs`` may pass those when already known.
    """
    scores = np.asarray(scores, np.float64)
    n = len(scores)
    order = np.lexsort((np.arange(n), -scores))
    i, j = duplicate_pairs(boxes, labels, iou) if pairs is None else pairs
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    first, second = np.where(rank[i] < rank[j], i, j), np.where(rank[i] < rank[j], j, i)
    by_first = np.argsort(rank[first], kind="stable")
    first, second = first[by_first], second[by_first]
    removed = np.zeros(n, bool)
    if len(first) == 0:
        return order
    starts = np.flatnonzero(np.r_[True, first[1:] != first[:-1]])
    ends = np.r_[starts[1:], len(first)]
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):  # the boxes that outrank a duplicate, best first
        if not removed[first[s]]:
            removed[second[s:e]] = True
    return order[~removed[order]]
