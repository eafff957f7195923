"""Scores of every task in one place: classification (confusion matrix, OA, kappa, per-class P/R/F1) and
detection (COCO-style mAP, precision/recall at a score threshold)."""

from geocamat.metrics.classification import confusion_matrix, summarise
from geocamat.metrics.detection import detection_metrics, mean_average_precision, precision_recall

__all__ = ["confusion_matrix", "detection_metrics", "mean_average_precision", "precision_recall", "summarise"]
