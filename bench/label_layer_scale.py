"""Label layers much larger than the scene (a national parcel layer): time and peak memory of bringing them onto
the NC sample's grid, for layers of growing size around the same scene.

The layers are made on the fly: squares of ``--square`` m on a regular grid, centred on the NC scene and spread
over a square region of ``--sides`` km (the scene is ~14 x 12.6 km), two classes alternating, written as
GeoPackages (with GDAL's spatial index) into ``--work``. Each case runs in a fresh process, which prints the time
of ``labels_on_grid`` and its peak RSS (``ru_maxrss``, the import of geocamat included). With the spatial filter
the time and memory stay those of the scene's part; reading whole layers they grow with the layer.

Usage::

    python bench/label_layer_scale.py                      # 20, 100, 400 km sides
    python bench/label_layer_scale.py --sides 20 400 --json bench/results/label_layer_scale_cpu.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NC = ROOT / "samples" / "nc_landsat"


def make_layer(path: Path, side_km: float, square: float) -> int:
    """Write ``path``: squares of ``square`` m every ``2 * square`` m over a ``side_km`` region around the scene."""
    import geopandas as gpd
    import numpy as np
    import rasterio
    import shapely

    with rasterio.open(NC / "lsat7_2000_10.tif") as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    cx, cy, half = (left + right) / 2, (bottom + top) / 2, side_km * 500
    steps = np.arange(cx - half, cx + half, 2 * square)
    xs, ys = np.meshgrid(steps, steps - cx + cy)
    xs, ys = xs.ravel(), ys.ravel()
    frame = gpd.GeoDataFrame({"cls": np.where(np.arange(xs.size) % 2 == 0, "field", "wood")},
                             geometry=shapely.box(xs, ys, xs + square, ys + square), crs=crs)
    frame.to_file(path, engine="pyogrio")
    return len(frame)


def run_case(layer: Path) -> dict:
    """In this process: labels_on_grid of ``layer`` onto the NC grid; time, peak RSS, classes."""
    from geocamat.data.labels import grid_of_dataset, labels_on_grid
    from geocamat.data.stack import open_stack

    with tempfile.TemporaryDirectory() as work:
        grid = grid_of_dataset(open_stack([str(NC / "lsat7_2000_*.tif")], Path(work)).dataset())
        started = time.perf_counter()
        labels = labels_on_grid(layer, grid, Path(work), field="cls")
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "classes": labels.class_ids}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=float, nargs="+", default=[20, 100, 400], help="region sides, km")
    parser.add_argument("--square", type=float, default=100.0, help="square side, m")
    parser.add_argument("--work", type=Path, default=Path("/tmp/geocamat_label_layers"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--case", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--make", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args.case)))
        return
    if args.make is not None:
        make_layer(args.make, args.sides[0], args.square)
        return
    import pyogrio

    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for side in args.sides:
        layer = args.work / f"squares_{side:g}_{args.square:g}m.gpkg"
        if not layer.exists():  # made in its own process: a child forked from a big parent inherits its peak RSS
            subprocess.run([sys.executable, __file__, "--make", str(layer), "--sides", str(side), "--square",
                            str(args.square)], check=True, cwd=ROOT)
        features = int(pyogrio.read_info(layer)["features"])
        out = subprocess.run([sys.executable, __file__, "--case", str(layer)], capture_output=True, text=True,
                             check=True, cwd=ROOT)
        row = {"side_km": side, "features": features, "file_mib": round(layer.stat().st_size / 2**20, 1),
               **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(row, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
