"""Render a land-use map and its polygons in a real headless QGIS, and add a legend of the classes.

    python docs/make_qgis_figure.py demo/map docs/img/qgis_nc_landuse_polygons.png [--title TEXT]

QGIS draws ``landuse.tif`` with the ``.qml`` beside it and ``landuse.gpkg`` with the style stored in it
(`../shared/tools/qgis_render.py`, run with Debian's python3 and python3-qgis); the legend (class colours and
names from the map's ``report.json``) and the title are added with matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RENDER = ROOT.parent / "shared" / "tools" / "qgis_render.py"


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    p = argparse.ArgumentParser()
    p.add_argument("map_dir", help="an output folder of geocamat predict")
    p.add_argument("out", help="PNG to write")
    p.add_argument("--title", default="geocamat land-use map and polygons, rendered by QGIS")
    args = p.parse_args()
    folder = Path(args.map_dir)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "qgis.png"
        log = subprocess.run(["python3", str(RENDER), str(folder / "landuse.tif"), str(png),
                              str(folder / "landuse.gpkg")], capture_output=True, text=True,
                             env={**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
                                  "QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
        print(log.stdout.strip())
        if not png.is_file():  # (QGIS 3.22 may crash on exit after writing the picture: only the PNG counts)
            raise SystemExit(f"QGIS did not render the map: {log.stderr.strip()[-500:]}")
        image = plt.imread(png)
    classes = json.loads((folder / "report.json").read_text())["classes"]
    fig, ax = plt.subplots(figsize=(8, 8.6), dpi=100)
    ax.imshow(image)
    ax.set_axis_off()
    ax.set_title(args.title, fontsize=10)
    handles = [Patch(facecolor=c["color"], edgecolor="#232323", label=f"{c['name']} ({c.get('area_ha', 0):.0f} ha)")
               for c in classes]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.08)
    fig.savefig(args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
