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

    Each removed box is compared only with the leaders that start within the widest leader's width of it
    (:class:`geocamat.data.boxes.ColumnIndex`), so memory and time grow with the boxes and their neighbours, not
    with removed boxes x leaders (which passed 24 GB on a 64 Mpx scene).

    Args:
        boxes, scores, labels: (N, 4) xyxy, (N,), (N,) tensors.
        iou: IoU above which two boxes are the same object.

    Returns:
        (indices of the leaders by descending score (K,), group of each box as an index into them (N,)).
    """
    import torch
    from torchvision.ops import batched_nms

    from geocamat.data.boxes import ColumnIndex

    keep = batched_nms(boxes, scores, labels, float(iou))
    group = torch.full((len(boxes),), -1, dtype=torch.int64)
    group[keep.cpu()] = torch.arange(len(keep))
    gone = torch.nonzero(group < 0).flatten().numpy()
    if len(gone) and len(keep):
        b = boxes.detach().cpu().double().numpy()
        s, lab, k = scores.detach().cpu().double().numpy(), labels.detach().cpu().numpy(), keep.cpu().numpy()
        leaders = ColumnIndex(b[k])  # positions into keep: the smallest qualifying one is the best leader
        lows, highs = leaders.ranges(b[gone, 0], b[gone, 2])
        area = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
        for g, lo, hi in zip(gone, lows, highs, strict=True):
            pos = leaders.order[lo:hi]
            lead = k[pos]
            w = (np.minimum(b[lead, 2], b[g, 2]) - np.maximum(b[lead, 0], b[g, 0])).clip(0)
            h = (np.minimum(b[lead, 3], b[g, 3]) - np.maximum(b[lead, 1], b[g, 1])).clip(0)
            inter = w * h
            ok = inter / np.maximum(area[lead] + area[g] - inter, 1e-12) > iou
            ok &= (lab[lead] == lab[g]) & (s[lead] >= s[g])
            if ok.any():
                group[g] = int(pos[ok].min())
    return keep, group.to(boxes.device)


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
