"""Near-duplicate detections: boxes of one class that overlap a lot but survive NMS at 0.5.

After the cross-window merge and NMS (:func:`geocamat.inference.detect.merge_tiles`), pairs of boxes of the
same object with IoU just under the NMS threshold (0.46-0.50 on the NEON trees) remain and show as doubled
outlines. :func:`merge_duplicates` groups them under the boxes a second, stricter class-wise NMS keeps:

- ``nms``: the group's best box is kept as it is (the second NMS);
- ``wbf``: weighted box fusion (Solovyev et al. 2021) for one model: the group's box is the score-weighted
  mean of its members' corners, its score the best member's;
- ``none``: nothing is merged.
"""

from __future__ import annotations

import numpy as np

METHODS = ("wbf", "nms", "none")


def group_boxes(boxes, scores, labels, iou: float, chunk: int = 4096):
    """Leaders and their groups: the boxes a class-wise NMS at ``iou`` keeps (torchvision's, greedy by descending
    score), and for every box the leader it belongs to: itself for a leader, else the best leader of its class
    that overlaps it by more than ``iou`` (the one that removed it).

    Args:
        boxes, scores, labels: (N, 4) xyxy, (N,), (N,) tensors.
        iou: IoU above which two boxes are the same object.
        chunk: removed boxes compared with the leaders at a time (bounds memory for large scenes).

    Returns:
        (indices of the leaders by descending score (K,), group of each box as an index into them (N,)).
    """
    import torch
    from torchvision.ops import batched_nms, box_iou

    keep = batched_nms(boxes, scores, labels, float(iou))
    group = torch.full((len(boxes),), -1, dtype=torch.int64, device=boxes.device)
    group[keep] = torch.arange(len(keep), device=boxes.device)
    gone = torch.nonzero(group < 0).flatten()
    for c0 in range(0, len(gone), chunk):
        g = gone[c0:c0 + chunk]
        overlap = box_iou(boxes[g], boxes[keep]) > iou
        overlap &= labels[g][:, None] == labels[keep][None, :]
        overlap &= scores[keep][None, :] >= scores[g][:, None]
        has = overlap.any(dim=1)
        group[g[has]] = overlap.to(torch.uint8).argmax(dim=1)[has]  # the first (best) overlapping leader
    return keep, group


def fuse_groups(boxes, scores, group, n_groups: int):
    """Per group of :func:`group_boxes`: the score-weighted mean of its members' corners, the sum of their scores
    and their count (float64 tensors (K, 4), (K,), (K,); boxes outside every group, ``group < 0``, are left out)."""
    import torch

    member = group >= 0
    g, b, s = group[member], boxes[member].double(), scores[member].double()
    zeros = dict(dtype=torch.float64, device=boxes.device)
    sums = torch.zeros(n_groups, 4, **zeros).index_add_(0, g, b * s[:, None])
    weights = torch.zeros(n_groups, **zeros).index_add_(0, g, s)
    counts = torch.zeros(n_groups, **zeros).index_add_(0, g, torch.ones_like(s))
    return sums / weights.clamp_min(1e-12)[:, None], weights, counts


def merge_duplicates(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float = 0.4,
                     method: str = "nms", chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Merge groups of same-class boxes whose IoU with a better box of the group's leader exceeds ``iou``.

    The groups are those of :func:`group_boxes`. With ``nms`` each group is its leader; with ``wbf`` its corners
    are the score-weighted mean of the members' (the leader's score and class are kept either way).

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,).
        labels: (N,).
        iou: IoU above which two boxes are the same object.
        method: see :data:`METHODS`.
        chunk: removed boxes compared with the leaders at a time (bounds memory for large scenes).

    Returns:
        (boxes (K, 4) float32, index of each group's leader (K,), which carries score and class), leaders by
        descending score.
    """
    import torch

    if method not in METHODS:
        raise ValueError(f"unknown duplicate merge {method!r}: choose one of {', '.join(METHODS)}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    if method == "none" or n == 0:
        return boxes.astype(np.float32), np.arange(n)
    tb = torch.as_tensor(boxes)
    ts = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
    tl = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    keep, group = group_boxes(tb, ts, tl, iou, chunk)
    out = boxes[keep.numpy()].copy()
    if method == "wbf" and len(keep) < n:
        out = fuse_groups(tb, ts, group, len(keep))[0].numpy()
    return out.astype(np.float32), keep.numpy().astype(np.int64)
