"""Render docs/img/nc_map_vs_reference.png: strata.tif beside a geocamat map, with the 4 x 4 blocks drawn.

    python docs/make_map_figure.py demo/map/landuse.tif [--title "geocamat map (...)"]

Both rasters are drawn on the map's grid (the reference is reprojected by nearest neighbour), in the
classes' colours of the sample config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    import yaml
    from matplotlib.colors import ListedColormap
    from rasterio.warp import Resampling, reproject

    p = argparse.ArgumentParser()
    p.add_argument("map", help="landuse.tif written by geocamat predict")
    p.add_argument("--reference", default=str(ROOT / "samples/nc_landsat/strata.tif"))
    p.add_argument("--title", default="geocamat map (CAMAT, camnet-xs)")
    p.add_argument("--out", default=str(ROOT / "docs/img/nc_map_vs_reference.png"))
    args = p.parse_args()
    classes = yaml.safe_load((ROOT / "samples/nc_landsat.yaml").read_text())["classes"]
    with rasterio.open(args.map) as src:
        pred, grid, crs, nodata = src.read(1), src.transform, src.crs, src.nodata
    ref = np.zeros(pred.shape, dtype="float32")
    with rasterio.open(args.reference) as src:
        reproject(rasterio.band(src, 1), ref, dst_transform=grid, dst_crs=crs, resampling=Resampling.nearest,
                  dst_nodata=0)
    codes = sorted(classes)
    cmap = ListedColormap(["#ffffff"] + [classes[c]["color"] for c in codes])

    def index(a, missing):
        out = np.zeros(a.shape, dtype="uint8")
        for i, c in enumerate(codes, start=1):
            out[(a == c) & ~missing] = i
        return out

    panels = [("reference strata.tif", index(ref, ref <= 0)),
              (args.title, index(pred, pred == nodata if nodata is not None else np.zeros(pred.shape, bool)))]
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0))
    h, w = pred.shape
    for ax, (title, img) in zip(axes, panels, strict=True):
        ax.imshow(img, cmap=cmap, vmin=0, vmax=len(codes), interpolation="nearest")
        for k in range(1, 4):
            ax.axhline(k * h / 4 - 0.5, color="black", lw=0.6)
            ax.axvline(k * w / 4 - 0.5, color="black", lw=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
