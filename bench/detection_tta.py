"""Benchmark: detection with and without test-time augmentation (``--tta``), on the sites never trained on.

Scores each given detection bundle on OSBS_029 (61 trees) and SOAP_061 (37 trees, scored class-agnostic) with
``geocamat evaluate``'s code, plain and with ``tta`` (8 dihedral views, boxes fused), side by side; prints a table
and writes JSON. Models come from ``bench/detection.py`` runs (``--work`` keeps them as ``ROW_SEED/model.geocamat``).

    python bench/detection_tta.py /tmp/geocamat_bench_detection/none_0/model.geocamat ... --out bench/results/x.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "deepforest_neon_trees"
SITES = {"osbs": ("OSBS_029.tif", "OSBS_029.xml", False), "soap": ("SOAP_061.png", "SOAP_061.xml", True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/detection_tta.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from geocamat.bundle import Bundle
    from geocamat.tasks.detection.config import EvaluateOptions
    from geocamat.tasks.detection.evaluating import evaluate_detection

    rows = []
    for path in args.models:
        bundle = Bundle.load(path)
        row = {"model": path}
        for tta in (False, True):
            for site, (img, xml, agnostic) in SITES.items():
                t0 = time.perf_counter()
                opts = EvaluateOptions(reference=[str(Path(args.data) / xml)], device=args.device,
                                       class_agnostic=agnostic, tta=tta)
                sc = evaluate_detection(bundle, [str(Path(args.data) / img)], opts)["scene"]
                row[f"{site}{'_tta' if tta else ''}"] = {
                    "map_50": sc["map_50"], "map": sc["map"], "p40": sc["iou_40"]["precision"],
                    "r40": sc["iou_40"]["recall"], "found": sc["found"], "labelled": sc["labelled"],
                    "seconds": round(time.perf_counter() - t0, 2)}
        for key in ("", "_tta"):
            row[f"mean{key}"] = statistics.mean(row[f"{s}{key}"]["map_50"] for s in SITES)
        print(f"{path}: OSBS+SOAP mAP50 {row['mean']:.3f} -> {row['mean_tta']:.3f} with tta "
              f"(OSBS {row['osbs']['map_50']:.3f} -> {row['osbs_tta']['map_50']:.3f}, "
              f"SOAP {row['soap']['map_50']:.3f} -> {row['soap_tta']['map_50']:.3f})", flush=True)
        rows.append(row)
    gains = [r["mean_tta"] - r["mean"] for r in rows]
    summary = {"models": len(rows), "mean_gain": statistics.mean(gains),
               "std_gain": statistics.stdev(gains) if len(gains) > 1 else 0.0}
    print(f"tta gain in OSBS+SOAP mAP@0.5: {summary['mean_gain']:+.3f} ± {summary['std_gain']:.3f} "
          f"over {len(rows)} models")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary, "device": args.device,
                                          "host": platform.node(), "threads": args.threads,
                                          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=1))


if __name__ == "__main__":
    main()
