"""Near-duplicate detections: boxes of one class that overlap a lot but survive NMS at 0.5.

After the cross-window merge and NMS (:func:`geocamat.inference.detect.merge_tiles`), pairs of boxes of the
same object with IoU just under the NMS threshold (0.46-0.50 on the NEON trees) remain and show as doubled
outlines. :func:`merge_duplicates` merges every group of same-class boxes linked by IoU >= ``iou``:

- ``wbf``: weighted box fusion (Solovyev et al. 2021) for one model: the group's box is the score-weighted
  mean of its members' corners, its score the best member's;
- ``nms``: the best-scoring member is kept as it is (a second, stricter NMS);
- ``none``: nothing is merged.
"""

from __future__ import annotations

import numpy as np

METHODS = ("wbf", "nms", "none")


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area = (box[2:] - box[:2]).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(axis=1)
    return inter / np.maximum(area + areas - inter, 1e-12)


def merge_duplicates(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float = 0.4,
                     method: str = "nms") -> tuple[np.ndarray, np.ndarray]:
    """Merge groups of same-class boxes whose IoU with the group's best box is >= ``iou``.

    Boxes are visited by descending score; each joins the first group (of its class) whose leading box it
    overlaps with IoU >= ``iou``, else starts a group. So a group is the best box and the boxes that duplicate
    it, as in NMS; with ``wbf`` the group's corners are the score-weighted mean of its members.

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,).
        labels: (N,).
        iou: IoU from which two boxes are the same object.
        method: see :data:`METHODS`.

    Returns:
        (boxes (K, 4) float32, index of the best member of each group (K,), which carries score and class).
    """
    if method not in METHODS:
        raise ValueError(f"unknown duplicate merge {method!r}: choose one of {', '.join(METHODS)}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    if method == "none" or n == 0:
        return boxes.astype(np.float32), np.arange(n)
    order = np.argsort(-np.asarray(scores), kind="stable")
    leaders: list[int] = []
    members: list[list[int]] = []
    for i in order:
        same = [g for g, lead in enumerate(leaders) if labels[lead] == labels[i]]
        if same:
            overlap = _iou(boxes[i], boxes[[leaders[g] for g in same]])
            k = int(np.argmax(overlap >= iou)) if (overlap >= iou).any() else -1
            if k >= 0:
                members[same[k]].append(int(i))
                continue
        leaders.append(int(i))
        members.append([int(i)])
    out = np.zeros((len(leaders), 4))
    for g, group in enumerate(members):
        if method == "wbf" and len(group) > 1:
            w = np.asarray(scores, np.float64)[group]
            out[g] = (boxes[group] * w[:, None]).sum(axis=0) / max(w.sum(), 1e-12)
        else:
            out[g] = boxes[group[0]]
    return out.astype(np.float32), np.asarray(leaders, np.int64)
