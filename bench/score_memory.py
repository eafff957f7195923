"""Scoring a land-use map against a reference by windows vs whole arrays: peak memory and seconds.

    python bench/score_memory.py [--size 4000] [--dir /tmp] [--old PATH_TO_OLD_SCORING_PY] [--points N]

Writes a SIZE x SIZE class map and a reference raster on the same grid (tiled, DEFLATE), then scores the map on
the odd blocks of a 4 x 4 checkerboard (as training's validation score does) in separate processes (peak RSS
is per process), alternating: ``score_map`` by windows (:data:`SCORE_WINDOW`), and, with ``--old``, the
whole-array implementation of an earlier scoring.py (e.g. ``git show 6abbc8a:geocamat/tasks/landuse/scoring.py``).
``--points N``: the reference is N random points (a GeoPackage; classes from the reference raster under them)
scored over the whole map, which adds the area estimates of a point sample (every mapped pixel counted by class).
``--masks``: also score under a mask of the map's left half, given as a raster and as a polygon in WGS 84 (the
same confusion matrix expected; time and memory side by side).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from isolated import run_isolated


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _write(path: Path, array: np.ndarray, nodata) -> None:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype.name, crs="EPSG:32617", transform=from_origin(500000, 4000000, 10, 10),
                       nodata=nodata, tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(array, 1)


def _scene(size: int, folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    coarse = rng.integers(1, 8, (size // 16 + 1, size // 16 + 1)).astype("uint8")
    mp = np.kron(coarse, np.ones((16, 16), "uint8"))[:size, :size]
    ref = mp.copy()
    flip = rng.random(mp.shape) < 0.3
    ref[flip] = rng.integers(0, 8, int(flip.sum()))  # 0: unlabelled
    _write(folder / "map.tif", mp, 0)
    _write(folder / "ref.tif", ref, 0)
    return folder / "map.tif", folder / "ref.tif"


def _points(folder: Path, n: int) -> Path:
    """``n`` random points on the reference raster's labelled pixels, their class a name (c1..c7)."""
    import geopandas as gpd
    import rasterio
    import shapely

    with rasterio.open(folder / "ref.tif") as src:
        ref, t = src.read(1), src.transform
    rng = np.random.default_rng(1)
    rows, cols = np.nonzero(ref)
    pick = rng.choice(len(rows), size=n, replace=False)
    geoms = [shapely.Point(*(t @ (c + 0.5, r + 0.5))) for r, c in zip(rows[pick], cols[pick], strict=True)]
    names = [f"c{ref[r, c]}" for r, c in zip(rows[pick], cols[pick], strict=True)]
    gpd.GeoDataFrame({"cls": names}, geometry=geoms, crs="EPSG:32617").to_file(folder / "points.gpkg")
    return folder / "points.gpkg"


def _masks(folder: Path, size: int) -> None:
    """The map's left half as a raster mask (1 inside) and as a polygon in WGS 84."""
    import geopandas as gpd
    from shapely.geometry import box

    half = np.zeros((size, size), "uint8")
    half[:, : size // 2] = 1
    _write(folder / "mask.tif", half, None)
    area = box(500000.0, 4000000.0 - 10 * size, 500000.0 + 10 * (size // 2), 4000000.0)
    gpd.GeoDataFrame({"name": ["west"]}, geometry=[area.segmentize(100.0)], crs="EPSG:32617").to_crs(
        "EPSG:4326").to_file(folder / "mask.gpkg")


def one(which: str, folder: Path, old: str | None) -> dict:
    from geocamat.tasks.landuse.scoring import score_map  # both: the same imports before the baseline

    if which == "old":
        import importlib.util

        spec = importlib.util.spec_from_file_location("old_scoring", old)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        score_map = module.score_map
    points = folder / "points.gpkg"
    kwargs = {"reference_field": "cls"} if points.exists() else {"blocks": 4}
    if which.endswith("-mask"):
        kwargs["mask"] = folder / ("mask.tif" if which == "raster-mask" else "mask.gpkg")
    base = _peak_mib()
    start = time.perf_counter()
    out = score_map(folder / "map.tif", points if points.exists() else folder / "ref.tif", list(range(1, 8)),
                    [f"c{i}" for i in range(1, 8)], **kwargs)
    seconds = time.perf_counter() - start
    peak = _peak_mib()
    return {"which": which, "seconds": seconds, "peak_rss_mib": peak, "extra_rss_mib": peak - base,
            "n": out["n"], "oa": out["overall_accuracy"], "cm": out["confusion_matrix"],
            "area_estimates": "area_estimates" in out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--old", default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--points", type=int, default=0, help="score against this many random points")
    ap.add_argument("--masks", action="store_true", help="also score under a raster and a polygon mask")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    folder = Path(args.dir)
    if args.one:
        print(json.dumps(one(args.one, folder, args.old)))
        return
    folder.mkdir(parents=True, exist_ok=True)
    _scene(args.size, folder)
    (folder / "points.gpkg").unlink(missing_ok=True)
    if args.points:
        _points(folder, args.points)
    rows = []
    kinds = ["windows"] + (["old"] if args.old else []) + (["raster-mask", "polygon-mask"] if args.masks else [])
    if args.masks:
        _masks(folder, args.size)
    for _ in range(args.rounds):
        for which in kinds:
            old = ["--old", args.old] if args.old else []
            rows.append(run_isolated(__file__, "--one", which, "--dir", str(folder), *old))
    print(f"{args.size} x {args.size} map, " + (f"{args.points} points, area estimates: {rows[0]['area_estimates']}"
                                                 if args.points else "odd blocks of a 4 x 4 checkerboard"))
    print("| scoring | seconds | peak RSS MiB | peak RSS above start MiB | n | OA |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['which']} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} | {r['extra_rss_mib']:.0f} | {r['n']} | "
              f"{r['oa']} |")
    if args.old:
        print("same confusion matrix:", len({json.dumps(r["cm"]) for r in rows if r["which"] in ("windows", "old")})
              == 1)
    if args.masks:
        print("masks give the same confusion matrix:",
              len({json.dumps(r["cm"]) for r in rows if r["which"].endswith("-mask")}) == 1)


if __name__ == "__main__":
    main()
