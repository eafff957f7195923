"""How far the NC sample's labels allow macro-F1 to go: a per-pixel model with no CAMAT, no tiles, no CNN.

Trains scikit-learn's HistGradientBoosting on multi-scale box means and standard deviations of the bands
(``nc_maps.gbm_probabilities``) on the training blocks' pixels (4x4 checkerboard, even blocks), as labelled and
with balanced class weights, and scores the odd blocks in the labels' frame: OA, macro-F1 and F1 per class,
with each class's labelled pixels in the training and validation blocks. If a strong per-pixel learner with
balanced weights cannot map a class, more tile balancing in the CNN will not either.

    pip install scikit-learn   # not a project dependency
    python bench/nc_separability.py --out bench/results/nc_separability_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nc_maps  # noqa: E402

from geocamat.data.splits import checkerboard  # noqa: E402
from geocamat.metrics.classification import confusion_matrix, summarise  # noqa: E402


def scores(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, ids: np.ndarray) -> tuple[float, float, dict]:
    """(OA, macro-F1, {class code: F1}) over the pixels of ``mask``, by the project's own metrics."""
    summary = summarise(confusion_matrix(ref[mask], pred[mask], list(ids)), list(ids))
    f1 = {int(v["id"]): v["f1"] for v in summary["per_class"].values()}
    return summary["overall_accuracy"], summary["macro_f1"], f1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/nc_separability_cpu.json"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/nc_separability"))
    args = ap.parse_args()
    img, ref, valid, ids = nc_maps.load_scene(args.work)
    odd = checkerboard(ref.shape, 4, "odd") == 1
    val, train = odd & (ref >= 0) & valid, ~odd & (ref >= 0) & valid
    # the scoring compares in the labels' frame, like the saved maps (gbm_probabilities shifts its output)
    result = {"machine": {"platform": platform.platform(), "date": datetime.now(UTC).isoformat(timespec="seconds")},
              "pixels": {int(c): {"train": int((ref[train] == c).sum()), "validation": int((ref[val] == c).sum())}
                         for c in ids},
              "models": {}}
    print("labelled pixels per class (training / validation blocks):",
          {c: (v["train"], v["validation"]) for c, v in result["pixels"].items()}, flush=True)
    for weights in (None, "balanced"):
        t0 = time.perf_counter()
        prob = nc_maps.gbm_probabilities(img, valid, ref, ids, train, class_weight=weights)
        pred = ids[prob.argmax(0)]
        oa, macro, f1 = scores(pred, ref, val, ids)
        row = {"oa": oa, "macro_f1": macro, "f1": f1, "train_macro_f1": scores(pred, ref, train, ids)[1],
               "seconds": round(time.perf_counter() - t0, 1)}
        result["models"][weights or "as labelled"] = row
        print(weights or "as labelled", json.dumps(row), flush=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
