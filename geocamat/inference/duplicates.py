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


def group_boxes(boxes, scores, labels, iou: float):
    """Leaders and their groups: the boxes a class-wise NMS at ``iou`` keeps (torchvision's, greedy by descending
    score), and for every box the leader it belongs to: itself for a leader, else the best leader of its class
    that overlaps it by more than ``iou`` (the one that removed it).

    Both come from the same-class pairs with IoU > ``iou`` (:func:`geocamat.inference.overlaps.duplicate_pairs`,
    a grid search), so memory and time grow with the boxes and their neighbours: torchvision's NMS compares
    every kept box with every later one (two minutes for 10^5 scattered boxes on a CPU), and comparing removed
    boxes with every leader passed 24 GB on a 64 Mpx scene.

    Args:
        boxes, scores, labels: (N, 4) xyxy, (N,), (N,) tensors.
        iou: IoU above which two boxes are the same object.

    Returns:
        (indices of the leaders by descending score (K,), group of each box as an index into them (N,)).
    """
    import torch

    from geocamat.inference.overlaps import class_nms, duplicate_pairs

    b = boxes.detach().cpu().double().numpy()
    s, lab = scores.detach().cpu().double().numpy(), labels.detach().cpu().numpy()
    pairs = duplicate_pairs(b, lab, float(iou))
    keep = class_nms(b, s, lab, float(iou), pairs)
    group = np.full(len(b), -1, np.int64)
    group[keep] = np.arange(len(keep))
    best = np.full(len(b), len(keep), np.int64)  # the smallest position of a qualifying leader is the best one
    for lead, other in (pairs, pairs[::-1]):
        ok = (group[lead] >= 0) & (group[other] < 0) & (s[lead] >= s[other])
        np.minimum.at(best, other[ok], group[lead[ok]])
    gone = group < 0
    group[gone] = np.where(best[gone] < len(keep), best[gone], -1)
    return torch.as_tensor(keep, device=boxes.device), torch.as_tensor(group, device=boxes.device)


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
                     method: str = "nms") -> tuple[np.ndarray, np.ndarray]:
    """Merge groups of same-class boxes whose IoU with a better box of the group's leader exceeds ``iou``.

    The groups are those of :func:`group_boxes`. With ``nms`` each group is its leader; with ``wbf`` its corners
    are the score-weighted mean of the members' (the leader's score and class are kept either way).

    Args:
        boxes: (N, 4) xyxy.
        scores: (N,).
        labels: (N,).
        iou: IoU above which two boxes are the same object.
        method: see :data:`METHODS`.

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
    keep, group = group_boxes(tb, ts, tl, iou)
    out = boxes[keep.numpy()].copy()
    if method == "wbf" and len(keep) < n:
        out = fuse_groups(tb, ts, group, len(keep))[0].numpy()
    return out.astype(np.float32), keep.numpy().astype(np.int64)
