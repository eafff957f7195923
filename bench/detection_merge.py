"""Benchmark: the CPU steps over all of a scene's detections, at scene scale.

``geocamat predict`` on a detection model ends with two CPU steps over all of a scene's detections:
``merge_tiles`` (one object seen by several windows -> one box, then class-wise NMS) and ``merge_duplicates``
(near-duplicates NMS at 0.5 let through); ``geocamat evaluate`` then scores them against the reference boxes
(``detection_metrics``: mAP at 10 IoU thresholds, precision/recall), timed here up to ``--score-up-to`` objects
with the objects themselves as the reference. This bench makes the detections a detector would give on a scene of
N objects (15-90 px, the NEON crowns' density of about 1,330 per Mpx, uniformly placed), seen through 400 px
windows overlapping by 25% (the prediction default): each object cut by every window it meets, corners jittered
by 2 px, and one in three also detected a second time, shifted by a quarter of its size with a lower score.
Each case runs in a fresh process (its peak RSS is its own); ``--repo`` times another checkout on the same
detections (side by side: ``--repo WORKTREE --label before``).

    python bench/detection_merge.py --objects 2000 5000 --repo /tmp/before --label before --out R.json
    python bench/detection_merge.py --objects 20000 80000 --repo /tmp/before --label before --score-up-to 0 --out R.json
    python bench/detection_merge.py --objects 2000 5000 20000 80000 320000 1280000 --out R.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TILE, OVERLAP, DENSITY = 400, 0.25, 1330e-6


def window_detections(n_objects: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Detections of ``n_objects`` objects seen through overlapping windows (see the module docstring)."""
    from geocamat.inference.detect import window_offsets

    g = np.random.default_rng(seed)
    side = int((n_objects / DENSITY) ** 0.5)
    xy = g.uniform(0, side - 90, (n_objects, 2))
    objects = np.hstack([xy, xy + g.uniform(15, 90, (n_objects, 2))])
    offs = np.asarray(window_offsets(side, TILE, OVERLAP), np.float64)
    first = np.searchsorted(offs + TILE, objects[:, :2], "right")  # windows that meet each object, per axis
    last = np.searchsorted(offs, objects[:, 2:], "left")
    ncol, nrow = last[:, 0] - first[:, 0], last[:, 1] - first[:, 1]
    obj = np.repeat(np.arange(n_objects), ncol * nrow)
    k = np.arange(len(obj)) - np.repeat(np.cumsum(ncol * nrow) - ncol * nrow, ncol * nrow)
    col, row = offs[first[obj, 0] + k % ncol[obj]], offs[first[obj, 1] + k // ncol[obj]]
    windows = np.stack([col, row, col + TILE, row + TILE], axis=1)
    boxes = np.hstack([np.maximum(objects[obj, :2], windows[:, :2]), np.minimum(objects[obj, 2:], windows[:, 2:])])
    boxes += g.normal(0, 2, boxes.shape)
    seen = (boxes[:, 2] - boxes[:, 0] > 4) & (boxes[:, 3] - boxes[:, 1] > 4)
    boxes, windows = boxes[seen], windows[seen]
    scores = g.uniform(0.3, 1.0, len(boxes))
    twice = g.uniform(size=len(boxes)) < 1 / 3
    shift = (boxes[twice, 2:] - boxes[twice, :2]) * 0.25 * g.choice([-1, 1], (twice.sum(), 2))
    boxes = np.vstack([boxes, boxes[twice] + np.hstack([shift, shift])])
    windows = np.vstack([windows, windows[twice]])
    scores = np.r_[scores, scores[twice] * g.uniform(0.5, 0.95, twice.sum())]
    edge = 2.0
    truncated = (((windows[:, 0] > 0) & (boxes[:, 0] - windows[:, 0] <= edge))
                 | ((windows[:, 1] > 0) & (boxes[:, 1] - windows[:, 1] <= edge))
                 | ((windows[:, 2] < side) & (windows[:, 2] - boxes[:, 2] <= edge))
                 | ((windows[:, 3] < side) & (windows[:, 3] - boxes[:, 3] <= edge)))
    return {"boxes": boxes.astype(np.float32), "scores": scores.astype(np.float32), "truncated": truncated,
            "windows": windows.astype(np.float32), "labels": np.zeros(len(boxes), np.int64), "side": side,
            "objects": objects}


def one_case(n_objects: int, score: bool) -> dict:
    """Times of the two merges (and of the scoring) on one synthetic scene, in this process (geocamat from
    sys.path)."""
    from geocamat.inference.detect import merge_tiles
    from geocamat.inference.duplicates import merge_duplicates
    from geocamat.metrics.detection import detection_metrics

    d = window_detections(n_objects)
    t = time.perf_counter()
    merged, idx = merge_tiles(d["boxes"], d["scores"], d["labels"], d["truncated"], d["windows"], 0.5, 0.5)
    t_tiles = time.perf_counter() - t
    t = time.perf_counter()
    final, lead = merge_duplicates(merged, d["scores"][idx], d["labels"][idx], 0.4, "nms")
    t_dup = time.perf_counter() - t
    scored = {}
    if score:
        t = time.perf_counter()
        pred = {"boxes": final, "scores": d["scores"][idx][lead], "labels": d["labels"][idx][lead]}
        m = detection_metrics([pred], [{"boxes": d["objects"], "labels": np.zeros(n_objects, np.int64)}], 1, 0.5)
        scored = {"score_s": round(time.perf_counter() - t, 3), "map_50": round(m["map_50"], 4),
                  "map": round(m["map"], 4), "f1": round(m["f1"], 4)}
    return {"objects": n_objects, "scene_px": d["side"], "detections": len(d["boxes"]), "after_merge": len(merged),
            "final": len(final), "merge_tiles_s": round(t_tiles, 3), "merge_duplicates_s": round(t_dup, 3),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "final_checksum": float(np.round(final.astype(np.float64).sum(), 1)), **scored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, nargs="+", default=[20000, 80000])
    parser.add_argument("--repo", default=str(ROOT), help="the checkout whose geocamat is timed")
    parser.add_argument("--label", default="now")
    parser.add_argument("--score-up-to", type=int, default=10**9, help="time the scoring up to this many objects")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per case before it is given up")
    parser.add_argument("--out", default=None, help="JSON file the rows are appended to")
    parser.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        sys.path.insert(0, args.repo)
        sys.path.insert(1, str(ROOT / "bench"))
        print(json.dumps(one_case(args.case, args.case <= args.score_up_to)))
        return
    rows = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).is_file() else []
    for n in args.objects:
        cmd = [sys.executable, __file__, "--case", str(n), "--repo", args.repo, "--score-up-to", str(args.score_up_to)]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=True)
            row = json.loads(run.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            row = {"objects": n, "timed_out_s": args.timeout}
        row.update(label=args.label, machine=platform.node(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        print(json.dumps(row), flush=True)
        rows.append(row)
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
