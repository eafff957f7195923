"""Detection metrics without extra dependencies: COCO-style mean average precision and precision/recall.

``mean_average_precision`` follows the COCO protocol for area "all": per class and IoU threshold,
detections of all images sorted by score, greedy matching to the best unmatched ground truth with
IoU >= threshold, precision made monotone, 101-point interpolation; mAP is the mean over classes that
have ground truth (and over IoU 0.50:0.05:0.95 for ``map``). One difference: no cap on detections per
image (COCO keeps 100; scenes of trees hold more). With <= 100 detections per image it agrees with
torchmetrics/pycocotools (tests/test_detection_metrics.py checks this when pycocotools is installed).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

IOU_THRESHOLDS = tuple(np.linspace(0.5, 0.95, 10).tolist())  # exactly as pycocotools


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (M, 4) and (N, 4) xyxy boxes, (M, N)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    aa = (a[:, 2:] - a[:, :2]).prod(-1)
    ab = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / np.maximum(aa[:, None] + ab[None] - inter, 1e-12)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def matching_pairs(pb: np.ndarray, tb: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, ground truth, IoU) of every pair with IoU >= ``thr`` (> 0), found without the full IoU
    matrix (:func:`geocamat.inference.overlaps.overlapping_pairs`): a scene's evaluation costs its boxes and
    their neighbours, not predictions x ground truths."""
    from geocamat.inference.overlaps import overlapping_pairs, pair_iou

    n = len(pb)
    both = np.vstack([pb, tb]).astype(np.float64)

    def cross(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (i < n) & (j >= n) & (pair_iou(both, i, j) >= thr)

    i, j = overlapping_pairs(both, cross)
    return i, j - n, pair_iou(both, i, j)


def _candidates(preds: list[dict], targets: list[dict], cls: int, thr: float) -> list[tuple]:
    """Per image, for one class: (scores by descending score, ground truths, (prediction, ground truth, IoU) of
    the pairs with IoU >= ``thr``, predictions numbered by descending score)."""
    out = []
    for p, t in zip(preds, targets, strict=True):
        pl, tl = _np(p["labels"]), _np(t["labels"])
        pb, ps = _np(p["boxes"]).reshape(-1, 4)[pl == cls], _np(p["scores"])[pl == cls]
        tb = _np(t["boxes"]).reshape(-1, 4)[tl == cls]
        order = np.argsort(-ps, kind="stable")
        out.append((ps[order], len(tb), matching_pairs(pb[order], tb, min(thr, 1 - 1e-10))))
    return out


def _greedy(candidates: list[tuple], thr: float):
    """Scores, true-positive flags and the number of ground truths at one IoU threshold (>= the candidates').

    Greedy as COCO: by descending score, each prediction takes the unmatched ground truth of highest IoU
    (>= ``thr``; of equal IoUs the last)."""
    thr = min(thr, 1 - 1e-10)
    scores, tps, n_gt = [], [], 0
    for ps, n_t, (k, g, iou) in candidates:
        n_gt += n_t
        over = iou >= thr
        k, g, iou = k[over], g[over], iou[over]
        by_pred = np.lexsort((g, k))  # each prediction's candidates, by ground-truth index
        k, g, iou = k[by_pred], g[by_pred], iou[by_pred]
        bounds = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True]) if len(k) else np.zeros(1, np.int64)
        used, tp = np.zeros(n_t, bool), np.zeros(len(ps), bool)
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            free = ~used[g[lo:hi]]
            if free.any():
                cand, vals = g[lo:hi][free], iou[lo:hi][free]
                j = cand[len(vals) - 1 - int(np.argmax(vals[::-1]))]  # the highest IoU, the last of equal ones
                used[j] = tp[k[lo]] = True
        tps.append(tp)
        scores.append(ps)
    if not scores:
        return np.zeros(0), np.zeros(0, bool), n_gt
    return np.concatenate(scores).astype(float), np.concatenate(tps), n_gt


def _match(preds: list[dict], targets: list[dict], cls: int, thr: float):
    """Scores, true-positive flags and the number of ground truths of one class at one IoU threshold, matched
    on the pairs above the threshold only (:func:`_greedy`)."""
    return _greedy(_candidates(preds, targets, cls, thr), thr)


def _ap(scores: np.ndarray, tps: np.ndarray, n_gt: int) -> float:
    if n_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(tps[order])
    fp = np.cumsum(~tps[order])
    rec = tp / n_gt
    prec = tp / np.maximum(tp + fp, np.finfo(float).eps)
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    grid = np.linspace(0, 1, 101)
    idx = np.searchsorted(rec, grid, side="left")
    vals = np.array([prec[i] if i < len(prec) else 0.0 for i in idx])
    return float(vals.mean())


def mean_average_precision(preds: list[dict], targets: list[dict], num_classes: int) -> dict:
    """COCO-style mAP over images.

    Args:
        preds: per image ``{"boxes" (N, 4), "scores" (N,), "labels" (N,)}``.
        targets: per image ``{"boxes" (M, 4), "labels" (M,)}``.
        num_classes: classes 0..K-1.

    Returns:
        ``{"map_50", "map_75", "map", "ap_50_per_class": [...]}`` (NaN for a class without ground truth).

    Raises:
        ValueError: a label outside 0..K-1 (its boxes would be left out of every class: a NaN mAP, silently).
    """
    for kind, items in (("target", targets), ("prediction", preds)):
        for item in items:
            labels = _np(item["labels"])
            bad = labels[(labels < 0) | (labels >= num_classes)] if labels.size else labels
            if bad.size:
                raise ValueError(f"a {kind} label is {int(bad[0])}: labels must be class indexes 0..{num_classes - 1} "
                                 f"(num_classes {num_classes})")
    table = np.full((num_classes, len(IOU_THRESHOLDS)), np.nan)
    for c in range(num_classes):
        candidates = _candidates(preds, targets, c, min(IOU_THRESHOLDS))  # searched once for every threshold
        for j, thr in enumerate(IOU_THRESHOLDS):
            table[c, j] = _ap(*_greedy(candidates, thr))
    has = ~np.isnan(table[:, 0])
    if not has.any():
        return {"map_50": float("nan"), "map_75": float("nan"), "map": float("nan"), "ap_50_per_class": []}
    return {
        "map_50": float(table[has, 0].mean()),
        "map_75": float(table[has, 5].mean()),
        "map": float(table[has].mean()),
        "ap_50_per_class": [None if np.isnan(v) else float(v) for v in table[:, 0]],
    }


def precision_recall(preds: list[dict], targets: list[dict], score_threshold: float, iou: float = 0.5) -> dict:
    """Precision, recall and F1 of the detections scoring >= ``score_threshold`` (class-aware, IoU >= ``iou``)."""
    tp = fp = n_gt = 0
    for p, t in zip(preds, targets, strict=True):
        keep = _np(p["scores"]) >= score_threshold
        p2 = {k: _np(v)[keep] for k, v in p.items() if k in ("boxes", "scores", "labels")}
        for c in np.unique(np.concatenate([_np(t["labels"]), p2["labels"]])).astype(int):
            s, tps, g = _match([p2], [t], int(c), iou)
            tp += int(tps.sum())
            fp += int((~tps).sum())
            n_gt += g
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_gt if n_gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "n_gt": n_gt}


def best_f1_threshold(preds: list[dict], targets: list[dict], num_classes: int, iou: float = 0.5) -> dict:
    """The score threshold with the best F1 (class-aware, IoU >= ``iou``), over all images.

    Matching is greedy in descending score order, so the detections kept at a threshold are matched exactly
    as :func:`precision_recall` matches them: one pass gives precision and recall at every threshold.

    Returns:
        ``{"threshold", "f1", "precision", "recall", "found", "n_gt"}``; ``threshold`` is None when no
        detection is right (no threshold helps then).
    """
    scores, tps, n_gt = [], [], 0
    for c in range(num_classes):
        s, t, g = _match(preds, targets, c, iou)
        scores.append(s)
        tps.append(t)
        n_gt += g
    s, t = np.concatenate(scores), np.concatenate(tps)
    none = {"threshold": None, "f1": 0.0, "precision": 0.0, "recall": 0.0, "found": 0, "n_gt": n_gt}
    if not len(s) or not n_gt or not t.any():
        return none
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last = np.r_[s[1:] != s[:-1], True]  # a threshold keeps every detection of the same score
    tp, fp = np.cumsum(t)[last], np.cumsum(~t)[last]
    precision, recall = tp / (tp + fp), tp / n_gt
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    k = int(np.argmax(f1))
    return {"threshold": float(s[last][k]), "f1": float(f1[k]), "precision": float(precision[k]),
            "recall": float(recall[k]), "found": int(tp[k] + fp[k]), "n_gt": n_gt}


def detection_metrics(preds: list[dict], targets: list[dict], num_classes: int, score_threshold: float) -> dict:
    """mAP@0.5, mAP@0.75, mAP@[.5:.95] and precision/recall/F1 at ``score_threshold``."""
    out = mean_average_precision(preds, targets, num_classes)
    out.update(precision_recall(preds, targets, score_threshold))
    return out


def to_tensors(d: dict) -> dict:
    """Numpy/list values of a prediction or target dict as tensors (boxes float32, labels int64)."""
    out = {"boxes": torch.as_tensor(_np(d["boxes"]), dtype=torch.float32).reshape(-1, 4),
           "labels": torch.as_tensor(_np(d["labels"]), dtype=torch.int64)}
    if "scores" in d:
        out["scores"] = torch.as_tensor(_np(d["scores"]), dtype=torch.float32)
    return out
