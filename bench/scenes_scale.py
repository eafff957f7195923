"""Scene models on many images: `geocamat predict` (classify) and `geocamat train` time and peak memory at 1x, 10x
and 100x the shared RSSCN7 (700 / 7,000 / 70,000 images), side by side, to show that memory does not grow with the
number of images.

The larger sets are symbolic links to the 700 JPEGs (each link decoded as a file of its own), in the same
folder-per-class layout, so the folder agreement is reported as well. `predict`: a model trained on RSSCN7
(resnet18 at 64 px, 2 epochs: the cost of classifying is the point, not the accuracy). `train` (``--train``):
camnet-xs at 64 px, 1 epoch, 10x decoded into memory (the default below cache_mb) beside 10x and 100x decoded as
drawn. Each run under /usr/bin/time.

    python bench/scenes_scale.py --work /tmp/sps --out bench/results/scenes_predict_scale_cpu.json
    python bench/scenes_scale.py --work /tmp/sps --train --out bench/results/scenes_train_scale_cpu.json
    python bench/scenes_scale.py --work /tmp/sps --cells --out bench/results/scenes_cells_scale_cpu.json

``--cells``: a whole scene classified in cells. A scene model is trained on 16-px chips of the NC sample's six
bands (each chip's class: the majority of strata.tif under it; camnet-xs, 5 epochs), then classifies the NC
scene (1x) and the NC scene upsampled 10x a side (100x the pixels, 4890 x 4430) in 16-px cells (``--chip-size
16``: the cost at 100x the cells), and the upsampled scene by default: cells of the training chips' ground (160 px
at its 2.85 m pixels). Each run's cells are scored against strata.tif (the majority class under each cell,
weighted by the cell's area): the same ground should give the 1x scene's agreement, 16-px cells of the upsampled
scene show the model patches at 10x the scale it learnt.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RSSCN7 = ROOT.parent / "shared" / "data" / "rsscn7"


def copies(folder: Path, times: int) -> Path:
    """RSSCN7 with each image linked ``times`` times, class folders kept (made once)."""
    if folder.is_dir():
        return folder
    tmp = folder.with_name(folder.name + ".part")
    for cls in sorted(p for p in RSSCN7.iterdir() if p.is_dir()):
        (tmp / cls.name).mkdir(parents=True, exist_ok=True)
        for img in sorted(cls.glob("*.jpg")):
            for k in range(times):
                (tmp / cls.name / f"{img.stem}_{k}{img.suffix}").symlink_to(img.resolve())
    tmp.rename(folder)
    return folder


def timed(cmd: list[str]) -> dict:
    """:func:`band_grids_scale.timed`, keeping the line that says how the scenes were decoded."""
    from band_grids_scale import timed as run_timed

    return run_timed(cmd, also=("scenes of",))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 100])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train", action="store_true", help="measure training instead of predict")
    ap.add_argument("--cells", action="store_true", help="measure a whole scene classified in cells")
    args = ap.parse_args()
    geocamat = str(Path(sys.executable).parent / "geocamat")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.train:
        return train_cases(args, geocamat)
    if args.cells:
        return cell_cases(args, geocamat)
    model = args.work / "model" / "model.geocamat"
    if not model.exists():
        subprocess.run(["env", f"OMP_NUM_THREADS={args.threads}", geocamat, "train", "--scenes", str(RSSCN7), "--out",
                        str(model.parent), "--epochs", "2", "--set", "image_size=64", "--quiet", "--overwrite"],
                       check=True)
    results = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cases": {}}
    for scale in args.scales:
        folder = copies(args.work / f"x{scale}", scale)
        out = args.work / f"classified_x{scale}"
        run = timed(["env", f"OMP_NUM_THREADS={args.threads}", geocamat, "predict", "--model", str(model), "--out",
                     str(out), "--overwrite", "--quiet", str(folder)])
        report = json.loads((out / "report.json").read_text())
        run.update(images=report["images"], images_per_s=round(report["images"] / report["timings"]["seconds"], 1),
                   folder_agreement=report["folder_agreement"], csv_mib=round((out / "scenes.csv").stat().st_size
                                                                              / 2**20, 1))
        results["cases"][f"x{scale}"] = run
        print(scale, json.dumps(run), flush=True)
    lo, hi = (results["cases"][f"x{s}"] for s in (min(args.scales), max(args.scales)))
    results["ratio_largest_over_smallest"] = {"images": hi["images"] / lo["images"],
                                              "wall": round(hi["wall_s"] / lo["wall_s"], 2),
                                              "peak_rss": round(hi["peak_rss_mib"] / lo["peak_rss_mib"], 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["ratio_largest_over_smallest"]))


def train_cases(args, geocamat: str) -> None:
    """One epoch of camnet-xs at 64 px: 10x in memory, 10x and 100x decoded as drawn."""
    results = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cases": {}}
    for name, scale, cache in (("x10_memory", 10, None), ("x10_drawn", 10, 0), ("x100_drawn", 100, None)):
        folder = copies(args.work / f"x{scale}", scale)
        out = args.work / f"train_{name}"
        extra = ["--set", f"cache_mb={cache}"] if cache is not None else []
        run = timed(["env", f"OMP_NUM_THREADS={args.threads}", geocamat, "train", "--scenes", str(folder), "--out",
                     str(out), "--epochs", "1", "--arch", "camnet-xs", "--set", "image_size=64", "--overwrite",
                     *extra])
        metrics = json.loads((out / "metrics.json").read_text())
        run.update(held_out_oa=metrics["held_out"]["overall_accuracy"], scored=metrics["robustness"]["n"],
                   train_seconds=metrics["train_seconds"])
        results["cases"][name] = run
        print(name, json.dumps(run), flush=True)
    c = results["cases"]

    def ratio(a: str, b: str) -> dict:
        return {"wall": round(c[a]["wall_s"] / c[b]["wall_s"], 2),
                "peak_rss": round(c[a]["peak_rss_mib"] / c[b]["peak_rss_mib"], 3)}

    results["ratios"] = {"x100_drawn_over_x10_drawn": ratio("x100_drawn", "x10_drawn"),
                         "x10_drawn_over_x10_memory": ratio("x10_drawn", "x10_memory")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["ratios"]))


NC = ROOT / "samples" / "nc_landsat"
STRATA = RSSCN7.parent / "nc_landsat7_landcover" / "strata.tif"


def nc_stack(path: Path, scale: int) -> Path:
    """The NC sample's six bands as one GeoTIFF, each pixel repeated ``scale`` x ``scale`` (made once)."""
    import numpy as np
    import rasterio
    from rasterio.transform import Affine
    from rasterio.windows import Window

    if path.exists():
        return path
    bands = sorted(NC.glob("lsat7_2000_*.tif"))
    with rasterio.open(bands[0]) as src:
        profile, t = src.profile.copy(), src.transform
    data = np.stack([rasterio.open(b).read(1) for b in bands])
    profile.update(driver="GTiff", count=len(bands), width=data.shape[2] * scale, height=data.shape[1] * scale,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                   transform=Affine(t.a / scale, t.b, t.c, t.d, t.e / scale, t.f))
    tmp = path.with_suffix(".part.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for r in range(0, data.shape[1], 32):
            strip = np.repeat(np.repeat(data[:, r:r + 32], scale, axis=1), scale, axis=2)
            dst.write(strip, window=Window(0, r * scale, profile["width"], strip.shape[1]))
    tmp.rename(path)
    return path


def nc_chips(folder: Path, stack: Path, chip: int = 16) -> Path:
    """16-px chips of the NC stack in class folders, each named by the majority of strata.tif under it."""
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    if folder.is_dir():
        return folder
    tmp = folder.with_name(folder.name + ".part")
    with rasterio.open(stack) as src, rasterio.open(STRATA) as lab:
        labels = lab.read(1, out_shape=(src.height, src.width), resampling=Resampling.nearest)
        for row in range(0, src.height - chip + 1, chip):
            for col in range(0, src.width - chip + 1, chip):
                cell = labels[row:row + chip, col:col + chip]
                values, counts = np.unique(cell[cell > 0], return_counts=True)
                if not len(values) or counts.max() < 0.6 * cell.size:
                    continue
                win = Window(col, row, chip, chip)
                profile = src.profile | {"width": chip, "height": chip, "transform": src.window_transform(win),
                                         "tiled": False, "compress": None}
                cls = tmp / f"class_{int(values[counts.argmax()])}"
                cls.mkdir(parents=True, exist_ok=True)
                with rasterio.open(cls / f"{row}_{col}.tif", "w", **profile) as dst:
                    dst.write(src.read(window=win))
    tmp.rename(folder)
    return folder


def strata_agreement(scene: Path, table: Path) -> float:
    """Share of the classified cells' area whose class is the majority of strata.tif under the cell."""
    import csv

    import numpy as np
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(scene) as src, rasterio.open(STRATA) as lab:
        labels = lab.read(1, out_shape=(src.height, src.width), resampling=Resampling.nearest)
    agree = total = 0
    with table.open() as fh:
        for row in csv.DictReader(fh):
            c, r, w, h = (int(row[k]) for k in ("col", "row", "width", "height"))
            cell = labels[r:r + h, c:c + w]
            values, counts = np.unique(cell[cell > 0], return_counts=True)
            if len(values):
                agree += w * h * (f"class_{int(values[counts.argmax()])}" == row["class_name"])
                total += w * h
    return round(agree / total, 4)


def cell_cases(args, geocamat: str) -> None:
    """A scene model on NC chips classifies the NC scene at 1x and 100x in 16-px cells."""
    results = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cases": {}}
    small = nc_stack(args.work / "nc_x1.tif", 1)
    chips = nc_chips(args.work / "nc_chips", small)
    model = args.work / "nc_model" / "model.geocamat"
    if not model.exists():
        subprocess.run(["env", f"OMP_NUM_THREADS={args.threads}", geocamat, "train", "--scenes", str(chips), "--out",
                        str(model.parent), "--epochs", "5", "--arch", "camnet-xs", "--set", "image_size=16",
                        "--quiet", "--overwrite"], check=True)
    results["model"] = json.loads((model.parent / "metrics.json").read_text())["held_out"]["overall_accuracy"]
    for name, scale, extra in (("x1", 1, []), ("x100", 10, ["--chip-size", "16"]), ("x100_ground", 10, [])):
        scene = nc_stack(args.work / f"nc_x{scale * scale}.tif", scale)
        out = args.work / f"cells_{name}"
        run = timed(["env", f"OMP_NUM_THREADS={args.threads}", geocamat, "predict", "--model", str(model), "--out",
                     str(out), "--overwrite", *extra, str(scene)])
        report = json.loads((out / "report.json").read_text())
        run.update(cells=report["chips"], classified=report["classified"], empty=report["empty_chips"],
                   cells_per_s=round(report["chips"] / report["timings"]["seconds"], 1),
                   gpkg_mib=round((out / "scenes.gpkg").stat().st_size / 2**20, 1), counts=report["counts"],
                   strata_agreement=strata_agreement(scene, out / "scenes.csv"))
        results["cases"][name] = run
        print(name, json.dumps(run), flush=True)
    c = results["cases"]
    results["ratio_x100_over_x1"] = {"cells": round(c["x100"]["cells"] / c["x1"]["cells"], 1),
                                     "wall": round(c["x100"]["wall_s"] / c["x1"]["wall_s"], 2),
                                     "peak_rss": round(c["x100"]["peak_rss_mib"] / c["x1"]["peak_rss_mib"], 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["ratio_x100_over_x1"]))


if __name__ == "__main__":
    main()
