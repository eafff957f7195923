"""Benchmark: merging near-duplicate detections after NMS (geocamat/inference/duplicates.py).

Runs a detection bundle once over each scene (cross-window merge + NMS at the model's IoU, no duplicate
merge, at a low score threshold), then applies each duplicate merge to that same output and scores it
against the labels: mAP@0.5, mAP@[.5:.95], precision/recall/F1 at IoU 0.5 and 0.4 at the score threshold,
objects kept, and same-class pairs still overlapping with IoU 0.3-0.5 (the doubled outlines a user sees).
All rows come from one detector pass, so they differ only by the merge.

    nice python bench/detection_duplicates.py --model runs/trees/model.geocamat \
        ../shared/data/deepforest_neon_trees/OSBS_029.tif:../shared/data/deepforest_neon_trees/OSBS_029.xml

The cost of the merges on scenes of up to a million objects: ``bench/detection_merge.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MERGES = (("none", None), ("nms", 0.4), ("wbf", 0.4), ("nms", 0.3), ("wbf", 0.3))


def near_pairs(boxes: np.ndarray, labels: np.ndarray, lo: float = 0.3, hi: float = 0.5) -> int:
    """Same-class pairs with lo <= IoU < hi."""
    from geocamat.inference.overlaps import overlapping_pairs, pair_iou

    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    i, j = overlapping_pairs(b, lambda i, j: labels[i] == labels[j])
    iou = pair_iou(b, i, j)
    return int(((iou >= lo) & (iou < hi)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenes", nargs="*", help="IMAGE:LABELS pairs")
    parser.add_argument("--model")
    parser.add_argument("--score-threshold", type=float, default=None, help="default: the model's")
    parser.add_argument("--class-agnostic", action="store_true")
    parser.add_argument("--out", default=None, help="JSON of the table")
    args = parser.parse_args()
    if not args.model or not args.scenes:
        parser.error("give --model and IMAGE:LABELS pairs")

    from geocamat.bundle import Bundle
    from geocamat.inference.duplicates import merge_duplicates
    from geocamat.metrics.detection import mean_average_precision, precision_recall
    from geocamat.tasks.detection.config import PredictOptions
    from geocamat.tasks.detection.inputs import load_labelled
    from geocamat.tasks.detection.running import detect_scene, resolve_options

    bundle = Bundle.load(args.model)
    opts = resolve_options(bundle, PredictOptions(score_threshold=args.score_threshold, duplicate_merge="none"))
    thr = float(opts["score_threshold"])
    model = bundle.build_model()
    names = [c.name for c in bundle.classes]
    raw, truth = [], []
    t0 = time.perf_counter()
    for pair in args.scenes:
        image, labels = pair.split(":", 1)
        _, (boxes,), _ = load_labelled([image], [labels], "label", None if args.class_agnostic else names)
        det = detect_scene(bundle, model, image, opts, "cpu", min(0.05, thr))
        raw.append(det)
        lab = np.zeros(len(boxes.boxes), np.int64) if args.class_agnostic else \
            np.asarray([names.index(n) for n in boxes.names], np.int64)
        truth.append({"boxes": boxes.boxes, "labels": lab})
    detect_s = time.perf_counter() - t0
    k = 1 if args.class_agnostic else len(names)
    rows = []
    for method, iou in MERGES:
        preds = []
        for det in raw:
            labels = np.zeros(len(det.labels), np.int64) if args.class_agnostic else det.labels
            boxes, idx = merge_duplicates(det.boxes, det.scores, labels, iou or 1.0, method)
            preds.append({"boxes": boxes, "scores": det.scores[idx], "labels": labels[idx]})
        ap = mean_average_precision(preds, truth, k)
        per_scene = [mean_average_precision([p], [t], k)["map_50"] for p, t in zip(preds, truth, strict=True)]
        pr5, pr4 = precision_recall(preds, truth, thr, 0.5), precision_recall(preds, truth, thr, 0.4)
        kept = [{key: v[p["scores"] >= thr] for key, v in p.items()} for p in preds]
        rows.append({"merge": method if iou is None else f"{method} @ {iou}", "map_50": ap["map_50"],
                     "map_50_per_scene": per_scene, "map_50_scene_mean": float(np.mean(per_scene)),
                     "map": ap["map"], "p50": pr5["precision"], "r50": pr5["recall"], "f1_50": pr5["f1"],
                     "p40": pr4["precision"], "r40": pr4["recall"], "f1_40": pr4["f1"],
                     "kept": int(sum(len(p["boxes"]) for p in kept)),
                     "pairs_iou_30_50": int(sum(near_pairs(p["boxes"], p["labels"]) for p in kept))})
    labelled = int(sum(len(t["boxes"]) for t in truth))
    print(f"{len(args.scenes)} scene(s), {labelled} labelled, score >= {thr:g}, NMS {opts['nms_iou']}, "
          f"detector pass {detect_s:.1f} s ({platform.node()})")
    print("| merge | mAP@0.5 | mean of the scenes' mAP@0.5 | mAP@[.5:.95] | P@0.5 | R@0.5 | F1@0.5 | P@0.4 | R@0.4 "
          "| F1@0.4 | kept | pairs IoU 0.3-0.5 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['merge']} | {r['map_50']:.3f} | {r['map_50_scene_mean']:.3f} | {r['map']:.3f} | {r['p50']:.3f} | "
              f"{r['r50']:.3f} | "
              f"{r['f1_50']:.3f} | {r['p40']:.3f} | {r['r40']:.3f} | {r['f1_40']:.3f} | {r['kept']} | "
              f"{r['pairs_iou_30_50']} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "labelled": labelled, "score_threshold": thr,
                                              "scenes": args.scenes, "model": args.model}, indent=2))


if __name__ == "__main__":
    main()
