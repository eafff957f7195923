"""The 8-pixel lattice of dense NC maps: overlap 0.5 against the dense default (0.75), side by side.

Usage: ``python bench/nc_lattice.py MODEL OUT`` (MODEL: a bundle trained on samples/nc_landsat.yaml). Prints one
JSON line per run (0.5, default, 0.5, default): wall seconds, tiles, peak RSS and the range of the mean CAM and
confidence by (row mod 8, col mod 8). Score each map with ``geocamat evaluate --model MODEL --map
OUT/<run>/landuse.tif --reference samples/nc_landsat/strata.tif --blocks 4 --parity odd``.
"""

import glob
import json
import sys
import time

import numpy as np
import rasterio

from geocamat.bundle import Bundle
from geocamat.inference.landuse import predict_landuse


def offset_means(path: str) -> tuple[float, float]:
    """Lowest and highest mean of the map's first band by (row mod 8, col mod 8)."""
    with rasterio.open(path) as src:
        a = src.read(1)
    m = [np.nanmean(a[r::8, c::8]) for r in range(8) for c in range(8)]
    return round(float(min(m)), 3), round(float(max(m)), 3)


model, out = sys.argv[1], sys.argv[2]
imgs = sorted(glob.glob("samples/nc_landsat/lsat7_2000_*.tif"))
b = Bundle.load(model)
for ov in (0.5, None, 0.5, None):
    t = time.perf_counter()
    run = f"{out}/overlap_{ov or 'default'}"
    r = predict_landuse(b, imgs, run, overlap=ov, tta=bool(b.extra.get("tta", False)),
                        progress=False, overwrite=True, model_path=model)
    wall = time.perf_counter() - t
    print(json.dumps({"overlap": r["settings"]["overlap"], "tta": r["settings"]["tta"], "wall_s": round(wall, 1),
                      "tiles": r["tiles"]["tiles_processed"], "peak_rss_mib": r["memory"]["peak_rss_mib"],
                      "cam_offset_means": offset_means(f"{run}/cam.tif"),
                      "conf_offset_means": offset_means(f"{run}/confidence.tif")}), flush=True)
