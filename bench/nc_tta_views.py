"""TTA on the NC sample: every view of every tile (``all``), the views spread over the overlap, and none.

For each model (bundles trained with ``geocamat train samples/nc_landsat.yaml``), the sample is mapped three
times in one process, in the order given by ``--modes`` (the default overlap of dense models, 0.75; no
polygons), and each map is scored on the odd blocks of the 4x4 checkerboard, on the image grid and in the
labels' frame (the offset training found). Also: the engine's wall time, the tiles computed, the range of the
mean confidence/CAM by (row, col) mod 8 and mod 16 (the lattice check of docs/inference.md; ``spread`` repeats
its views every 4 tile rows, 16 px on the sample) and, against the ``all``
map, the mean absolute difference of confidence and the share of pixels of the same class.

    python bench/nc_tta_views.py --models RUN1/model.geocamat RUN2/model.geocamat --work /tmp/tv \\
        --out bench/results/nc_tta_views_cpu.json
"""

from __future__ import annotations

import argparse
import glob
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGES = sorted(glob.glob(str(ROOT / "samples/nc_landsat/lsat7_2000_*.tif")))
REFERENCE = ROOT / "samples/nc_landsat/strata.tif"


def read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        a = src.read(1).astype(np.float64)
        if src.nodata is not None:
            a[a == src.nodata] = np.nan
    return a


def offset_range(a: np.ndarray, period: int = 8) -> list[float]:
    means = [np.nanmean(a[r::period, c::period]) for r in range(period) for c in range(period)]
    return [round(float(min(means)), 4), round(float(max(means)), 4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--work", required=True, help="folder for the maps")
    ap.add_argument("--modes", default="all,spread,none")
    ap.add_argument("--out", required=True, help="JSON results")
    args = ap.parse_args()

    import torch

    from geocamat.bundle import Bundle
    from geocamat.inference.landuse import predict_landuse
    from geocamat.tasks.landuse.scoring import score_map

    rows = []
    for model in args.models:
        bundle = Bundle.load(model)
        offset = tuple(bundle.extra.get("label_offset") or (0, 0))
        maps = {}
        for mode in args.modes.split(","):
            out = Path(args.work) / f"{Path(model).parent.name}_{mode}"
            t0 = time.perf_counter()
            report = predict_landuse(bundle, IMAGES, out, tta=mode != "none", tta_views="spread" if mode == "none"
                                     else mode, vectorise=False, progress=False, overwrite=True, model_path=model)
            wall = time.perf_counter() - t0
            ids, names = bundle.class_ids, [c.name for c in bundle.classes]
            image = score_map(out / "landuse.tif", REFERENCE, ids, names, blocks=4, parity="odd")
            labels = score_map(out / "landuse.tif", REFERENCE, ids, names, blocks=4, parity="odd", offset=offset)
            conf, cam = read(out / "confidence.tif"), read(out / "cam.tif")
            maps[mode] = (conf, read(out / "landuse.tif"))
            row = {"model": model, "mode": mode, "tta_views": report["settings"]["tta_views"],
                   "wall_s": round(wall, 2), "tiles": report["tiles"]["tiles_processed"],
                   "oa_image_grid": image["overall_accuracy"], "macro_f1_image_grid": image["macro_f1"],
                   "oa_labels_frame": labels["overall_accuracy"], "macro_f1_labels_frame": labels["macro_f1"],
                   "confidence_offset_means": offset_range(conf), "cam_offset_means": offset_range(cam),
                   "confidence_offset_means_16": offset_range(conf, 16), "cam_offset_means_16": offset_range(cam, 16)}
            if mode != "all" and "all" in maps:
                inner = (slice(16, -16), slice(16, -16))
                row["confidence_mad_to_all"] = round(float(np.nanmean(np.abs(conf - maps["all"][0])[inner])), 4)
                a, b = maps[mode][1], maps["all"][1]
                both = np.isfinite(a) & np.isfinite(b)
                row["same_class_as_all"] = round(float(np.mean(a[both] == b[both])), 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"rows": rows, "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                        "torch": torch.__version__, "threads": torch.get_num_threads(),
                                        "date": datetime.now(UTC).isoformat(timespec="seconds")},
              "command": " ".join(sys.argv)}
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
