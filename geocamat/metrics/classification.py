"""Classification metrics: confusion matrix, overall accuracy, Cohen's kappa, per-class P/R/F1, macro-F1."""

from __future__ import annotations

import numpy as np


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray, class_ids: list[int]) -> np.ndarray:
    """Counts (K, K): rows = reference class, columns = predicted class, in ``class_ids`` order.

    Pairs whose reference or prediction is not in ``class_ids`` are ignored.
    """
    lookup = {c: i for i, c in enumerate(class_ids)}
    k = len(class_ids)
    ref = np.asarray(reference).ravel()
    pred = np.asarray(predicted).ravel()
    if ref.size != pred.size:
        raise ValueError(f"reference and predicted differ in size ({ref.size} and {pred.size} values)")
    if not ref.size:
        return np.zeros((k, k), np.int64)
    ri = np.array([lookup.get(int(v), -1) for v in np.unique(ref)])
    pi = np.array([lookup.get(int(v), -1) for v in np.unique(pred)])
    ref_idx = ri[np.searchsorted(np.unique(ref), ref)] if ref.size else ref
    pred_idx = pi[np.searchsorted(np.unique(pred), pred)] if pred.size else pred
    ok = (ref_idx >= 0) & (pred_idx >= 0)
    return np.bincount(ref_idx[ok] * k + pred_idx[ok], minlength=k * k).reshape(k, k)


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the reference or the prediction of a confusion matrix (unrounded);
    0 for an empty matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp, ref_n, pred_n = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    occurs = (ref_n + pred_n) > 0
    if not occurs.any():
        return 0.0
    f1 = 2 * tp / np.maximum(ref_n + pred_n, 1)  # = 2PR / (P + R)
    return float(f1[occurs].mean())


def summarise(cm: np.ndarray, class_ids: list[int], class_names: list[str] | None = None) -> dict:
    """OA, kappa, macro-F1, per-class precision/recall/F1/support from a confusion matrix.

    Macro-F1 is the mean F1 of the classes that occur in the reference or the prediction, so a class the
    map never predicts counts with F1 0 (OA alone hides it).
    """
    cm = cm.astype(np.float64)
    total = cm.sum()
    names = class_names or [str(c) for c in class_ids]
    if total == 0:
        return {"n": 0, "overall_accuracy": None, "kappa": None, "macro_f1": None, "per_class": {}}
    oa = np.trace(cm) / total
    expected = (cm.sum(axis=0) * cm.sum(axis=1)).sum() / total**2
    kappa = (oa - expected) / (1 - expected) if expected < 1 else 1.0
    per_class = {}
    for i, (cid, name) in enumerate(zip(class_ids, names, strict=True)):
        tp, pred_n, ref_n = cm[i, i], cm[:, i].sum(), cm[i, :].sum()
        precision = tp / pred_n if pred_n else 0.0
        recall = tp / ref_n if ref_n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"id": int(cid), "precision": round(float(precision), 4), "recall": round(float(recall), 4),
                           "f1": round(float(f1), 4), "support": int(ref_n)}
    return {"n": int(total), "overall_accuracy": round(float(oa), 4), "kappa": round(float(kappa), 4),
            "macro_f1": round(macro_f1(cm), 4), "per_class": per_class,
            "confusion_matrix": cm.astype(int).tolist(), "confusion_matrix_axes": "rows: reference, columns: predicted",
            "class_ids": list(map(int, class_ids))}
