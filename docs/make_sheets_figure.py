"""Render detections over sheets in a real headless QGIS: sheet by sheet (before) and as one mosaic (now).

    python docs/make_sheets_figure.py --model M --work W --out docs/img/detection_sheets_qgis.png

``W`` is a ``bench/detection_sheets.py --sheets 2 --strip 0.2`` work folder (``strip.tif``, ``sheets/``,
``mosaic/`` and ``each_*/`` outputs). A square around the corner where the four sheets meet is cut from the
strip; QGIS draws it with each run's ``detections.gpkg`` in its stored style (`../shared/tools/qgis_render.py`,
Debian's python3 with python3-qgis); matplotlib puts the two side by side and marks the sheet edges.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RENDER = ROOT.parent / "shared" / "tools" / "qgis_render.py"


def main() -> None:
    import geopandas as gpd
    import matplotlib
    import pandas as pd
    import rasterio
    from rasterio.windows import Window

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geocamat.bundle import Bundle
    from geocamat.outputs.detections import write_detections

    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--half", type=int, default=160, help="half the side of the square around the sheets' corner")
    args = p.parse_args()
    work = Path(args.work)
    bundle = Bundle.load(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with rasterio.open(work / "strip.tif") as src:
            corner = (round(src.width / 2), round(src.height / 2))  # where bench/detection_sheets.py cuts 2 x 2
            h = args.half
            win = Window(corner[0] - h, corner[1] - h, 2 * h, 2 * h)
            profile = src.profile | {"width": 2 * h, "height": 2 * h, "transform": src.window_transform(win)}
            with rasterio.open(tmp / "crop.tif", "w", **profile) as dst:
                dst.write(src.read(window=win))
        each = pd.concat([gpd.read_file(f / "detections.gpkg", layer="detections")
                          for f in sorted(work.glob("each_*"))], ignore_index=True)
        write_detections(tmp / "each.gpkg", each, bundle.classes, each.crs)
        panels = []
        for name, layer in (("sheet by sheet (before)", tmp / "each.gpkg"),
                            ("one mosaic (now)", work / "mosaic" / "detections.gpkg")):
            png = tmp / f"{len(panels)}.png"
            log = subprocess.run(["/usr/bin/python3", str(RENDER), str(tmp / "crop.tif"), str(png), str(layer)],
                                 capture_output=True, text=True,
                                 env={**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
                                      "QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
            print(log.stdout.strip())
            if not png.is_file():  # (QGIS 3.22 may crash on exit after writing the picture: only the PNG counts)
                raise SystemExit(f"QGIS did not render: {log.stderr.strip()[-500:]}")
            panels.append((name, plt.imread(png)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.3))
    for ax, (name, img) in zip(axes, panels, strict=True):
        ax.imshow(img)
        n = img.shape[0]
        ax.axhline(n / 2, color="white", lw=0.8, ls="--")
        ax.axvline(n / 2, color="white", lw=0.8, ls="--")
        ax.set_title(name, fontsize=11)
        ax.axis("off")
    fig.suptitle("Tree crowns where four sheets meet (dashed: sheet edges), same model and threshold", fontsize=11)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    from PIL import Image

    Image.open(args.out).convert("RGB").quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(args.out,
                                                                                                 optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
