"""Test-time augmentation for detection: each tile seen under the eight flips / quarter turns, boxes fused.

Every view's detections are moved back to the tile's own frame, then fused per class the way weighted box
fusion does for several views of one model (Solovyev et al. 2021): the boxes a class-wise NMS at ``iou`` keeps
lead a cluster; each other box joins the best leader of its class that overlaps it by more than ``iou``; the
cluster's box is the score-weighted mean of its members' corners and its score the sum of their scores divided
by the number of views (a box that only one view of eight finds keeps an eighth of its score). CAMs are
averaged over the views in the tile's frame.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geocamat.camat.geometry import NUM_DIHEDRAL, dihedral, dihedral_boxes, dihedral_inverse, inverse_index


def fuse_views(boxes: Tensor, scores: Tensor, labels: Tensor, views: int, iou: float = 0.55) -> dict:
    """Fuse the detections of ``views`` views of one tile (all in the tile's frame) into one set.

    Returns:
        ``{"boxes" (K, 4), "scores" (K,), "labels" (K,)}`` by descending score.
    """
    from geocamat.inference.duplicates import fuse_groups, group_boxes

    if len(boxes) == 0:
        return {"boxes": boxes.reshape(0, 4), "scores": scores, "labels": labels}
    keep, group = group_boxes(boxes.double(), scores.double(), labels, iou)
    fused, weights, counts = fuse_groups(boxes, scores, group, len(keep))
    score = weights / counts.clamp_min(views)  # the mean score, times the share of views that found it
    order = torch.argsort(score, descending=True)
    return {"boxes": fused[order].to(boxes.dtype), "scores": score[order].to(scores.dtype),
            "labels": labels[keep][order]}


def tta_detect_fn(detect_fn, views: int = NUM_DIHEDRAL, iou: float = 0.55):
    """Wrap a :data:`geocamat.inference.detect.DetectFn` so that each (square) tile is detected in ``views``
    dihedral views (the first ``views`` of the eight) and the results fused (:func:`fuse_views`)."""
    if not 1 <= views <= NUM_DIHEDRAL:
        raise ValueError(f"views must be in 1..{NUM_DIHEDRAL}, not {views}")

    def fn(batch: Tensor) -> tuple[list[dict], Tensor | None]:
        n, size = batch.shape[0], batch.shape[-1]
        if batch.shape[-2] != size:
            raise ValueError(f"test-time augmentation needs square tiles, not {tuple(batch.shape[-2:])}")
        found: list[list[dict]] = [[] for _ in range(n)]
        cam_sum = None
        for k in range(views):
            dets, cams = detect_fn(dihedral(batch, k))
            for i, d in enumerate(dets):
                boxes = dihedral_boxes(d["boxes"].float(), inverse_index(k), size)
                found[i].append({"boxes": boxes, "scores": d["scores"].float(), "labels": d["labels"]})
            if cams is not None:
                cams = dihedral_inverse(cams.float(), k)
                cam_sum = cams if cam_sum is None else cam_sum + cams
        out = [fuse_views(torch.cat([v["boxes"] for v in f]), torch.cat([v["scores"] for v in f]),
                          torch.cat([v["labels"] for v in f]), views, iou) for f in found]
        return out, None if cam_sum is None else cam_sum / views

    return fn
