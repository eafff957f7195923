"""Benchmark: detection over an orthophoto delivered in sheets (geocamat/data/image_mosaic.py).

Cuts a georeferenced image into K x K sheets (GeoTIFFs on its grid) and runs `geocamat predict` three ways,
each in a fresh process (peak RSS from /usr/bin/time): the whole image, the sheets in one call (detected as
one mosaic), and each sheet in a call of its own (what a run over sheets did before mosaics: objects on sheet
edges cut in two). Scores each output against the reference boxes (map coordinates): mAP@0.5, mAP@[.5:.95],
precision / recall / F1 at IoU 0.4 at the model's threshold, objects found vs labelled, and the objects whose
box touches a sheet edge inside the mosaic.

``--strip F`` scores only the image's validation strip (right-hand F, as training held it out: for a model's
own training image). ``--repeat R`` first builds an R x R scene by mirrored copies of the image (objects keep
their size; seams are continuous), for the scale row: 10 gives 100x the image's area.

    D=../shared/data/deepforest_neon_trees
    nice python bench/detection_sheets.py --model runs/trees/model.geocamat --sheets 2 \\
        --image $D/OSBS_029.tif --labels $D/OSBS_029.xml --work /tmp/sheets --out bench/results/detection_sheets.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def validation_strip(image: Path, boxes: np.ndarray, tile: int, fraction: float, out: Path) -> tuple[Path, np.ndarray]:
    """The image's validation strip as training held it out (right-hand ``fraction``, see validation_split), as
    a GeoTIFF (a plain image gets a made-up UTM grid of 10 cm: only the sheets' geometry matters), and its boxes
    (clipped, kept when half is inside, as training's tiles keep them)."""
    import rasterio
    from rasterio.transform import from_origin

    from geocamat.data.detection_images import open_image
    from geocamat.data.detection_tiles import clip_boxes, validation_split

    with open_image(str(image)) as src:
        split = validation_split(src.width, tile, fraction)
        arr = src.read()[:, :, split:]
        crs = src.crs or "EPSG:32612"
        transform = (src.transform * rasterio.Affine.translation(split, 0)) if src.crs else \
            from_origin(500000, 5000000, 0.1, 0.1)
    with rasterio.open(out, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform) as dst:
        dst.write(arr)
    kept, _ = clip_boxes(boxes, split, 0, max(arr.shape[1:]), width=arr.shape[2], height=arr.shape[1])
    return out, kept


def mirrored(image: Path, repeat: int, out: Path) -> tuple[Path, np.ndarray]:
    """An R x R scene of mirrored copies of ``image`` (same pixel size, origin and CRS), and the copies' offsets."""
    import rasterio

    with rasterio.open(image) as src:
        arr, profile = src.read(), src.profile
    h, w = arr.shape[1:]
    big = np.zeros((arr.shape[0], h * repeat, w * repeat), arr.dtype)
    for i in range(repeat):
        for j in range(repeat):
            a = arr[:, ::-1] if i % 2 else arr
            big[:, i * h:(i + 1) * h, j * w:(j + 1) * w] = a[:, :, ::-1] if j % 2 else a
    profile.update(width=w * repeat, height=h * repeat, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(big)
    return out, np.array([(i, j) for i in range(repeat) for j in range(repeat)])


def mirrored_boxes(boxes: np.ndarray, w: int, h: int, repeat: int) -> np.ndarray:
    out = []
    for i in range(repeat):
        for j in range(repeat):
            b = boxes.copy()
            if j % 2:
                b[:, [0, 2]] = w - boxes[:, [2, 0]]
            if i % 2:
                b[:, [1, 3]] = h - boxes[:, [3, 1]]
            out.append(b + np.array([j * w, i * h, j * w, i * h], np.float32))
    return np.concatenate(out)


def cut(image: Path, k: int, folder: Path) -> tuple[list[Path], list[int], list[int]]:
    """K x K sheets of ``image`` on its grid; returns the files and the inner edges (columns, rows)."""
    import rasterio
    from rasterio.windows import Window

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with rasterio.open(image) as src:
        cols = [round(src.width * t / k) for t in range(k + 1)]
        rows = [round(src.height * t / k) for t in range(k + 1)]
        for r in range(k):
            for c in range(k):
                win = Window(cols[c], rows[r], cols[c + 1] - cols[c], rows[r + 1] - rows[r])
                profile = src.profile | {"width": win.width, "height": win.height,
                                         "transform": src.window_transform(win)}
                profile.update(tiled=win.width >= 256 and win.height >= 256, blockxsize=256, blockysize=256)
                path = folder / f"sheet_r{r}_c{c}.tif"
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(src.read(window=win))
                paths.append(path)
    return paths, cols[1:-1], rows[1:-1]


def predict(model: str, images: list[Path], out: Path, threads: int) -> dict:
    """`geocamat predict` in a fresh process: seconds and peak RSS."""
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "cli.main", "predict", "--model", model, "--out",
           str(out), "--quiet", "--overwrite", *map(str, images)]
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(int(res.stderr.split()[-1]) / 1024, 1)}


def train(images: list[Path], labels: Path, out: Path, threads: int, epochs: int, max_tiles: int) -> dict:
    """`geocamat train --task detection` in a fresh process (tiles read from the files: scene_cache_mb 0)."""
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "cli.main", "train", "--task", "detection",
           *[a for p in images for a in ("--images", str(p))], "--labels", str(labels), "--out", str(out),
           "--epochs", str(epochs), "--quiet",
           "--overwrite", "--set", f"max_tiles={max_tiles}", "--set", "scene_cache_mb=0", "--set", "backbone=small"]
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    m = json.loads((out / "metrics.json").read_text())
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(int(res.stderr.split()[-1]) / 1024, 1),
            **{k: m.get(k) for k in ("train_tiles", "val_tiles", "train_boxes", "validation_split", "map_50")}}


def reference_layer(gt: np.ndarray, transform, crs, out: Path) -> Path:
    """The boxes (image pixels) as polygons in map coordinates: the labels a user of sheets has."""
    import geopandas as gpd

    from geocamat.outputs.detections import box_polygons

    gpd.GeoDataFrame({"label": ["Tree"] * len(gt)}, geometry=box_polygons(gt, transform), crs=crs).to_file(out)
    return out


def detections(folders: list[Path]):
    import geopandas as gpd
    import pandas as pd

    return pd.concat([gpd.read_file(f / "detections.gpkg", layer="detections") for f in folders], ignore_index=True)


def score(frame, transform, gt: np.ndarray, threshold: float, cols: list[int], rows: list[int]) -> dict:
    """mAP and P/R at IoU 0.4 of a detections layer against ground-truth boxes (whole-image pixels)."""
    from geocamat.metrics.detection import detection_metrics, precision_recall

    inv = ~transform
    b = frame.geometry.bounds.to_numpy()
    x0, y0 = inv.a * b[:, 0] + inv.c, inv.e * b[:, 3] + inv.f  # north-up grids
    x1, y1 = inv.a * b[:, 2] + inv.c, inv.e * b[:, 1] + inv.f
    boxes = np.stack([x0, y0, x1, y1], 1).astype(np.float32)
    pred = [{"boxes": boxes, "scores": frame["score"].to_numpy(np.float32), "labels": np.zeros(len(boxes), np.int64)}]
    target = [{"boxes": gt, "labels": np.zeros(len(gt), np.int64)}]
    m = detection_metrics(pred, target, 1, threshold)
    pr = precision_recall(pred, target, threshold, iou=0.4)
    on_edge = sum(int(((np.abs(boxes[:, [0, 2]] - c) < 1.0).any(1)).sum()) for c in cols) + \
        sum(int(((np.abs(boxes[:, [1, 3]] - r) < 1.0).any(1)).sum()) for r in rows)
    kept = frame["score"].to_numpy() >= threshold
    return {"map_50": round(m["map_50"], 4), "map": round(m["map"], 4), "precision_40": round(pr["precision"], 4),
            "recall_40": round(pr["recall"], 4), "f1_40": round(pr["f1"], 4), "found": int(kept.sum()),
            "labelled": len(gt), "boxes_on_sheet_edges": on_edge}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--labels", required=True, help="the image's boxes (any format geocamat reads)")
    parser.add_argument("--sheets", type=int, default=2, help="K: K x K sheets")
    parser.add_argument("--repeat", type=int, default=1, help="R: an R x R mirrored scene first")
    parser.add_argument("--strip", type=float, default=None,
                        help="use only the image's validation strip (this val_fraction) as training held it out")
    parser.add_argument("--ways", default="whole,mosaic,each", help="which runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train", type=int, default=0, metavar="EPOCHS",
                        help="instead of predict: train on the whole scene and on its sheets (vector labels)")
    parser.add_argument("--max-tiles", type=int, default=64, help="training tiles per epoch with --train")
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import rasterio

    from geocamat.bundle import Bundle
    from geocamat.tasks.detection.inputs import load_labelled

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.load(args.model)
    _, (ib,), _ = load_labelled([args.image], [args.labels], "label", None)
    image = Path(args.image)
    gt = ib.boxes
    if args.strip is not None:
        image, gt = validation_strip(image, gt, bundle.tile_size, args.strip, work / "strip.tif")
    if args.repeat > 1:
        image, _ = mirrored(image, args.repeat, work / "scene.tif")
        gt = mirrored_boxes(gt, ib.width, ib.height, args.repeat)
    with rasterio.open(image) as src:
        transform, size, crs = src.transform, (src.width, src.height), src.crs
    sheets, cols, rows = cut(image, args.sheets, work / "sheets")
    if args.train:
        labels = reference_layer(gt, transform, crs, work / "labels.gpkg")
        rows_out = {name: train(imgs, labels, work / f"train_{name}", args.threads, args.train, args.max_tiles)
                    for name, imgs in (("whole", [image]), ("sheets", sheets))}
        print(rows_out)
        if args.out:
            Path(args.out).write_text(json.dumps({"scene_px": list(size), "sheets": args.sheets ** 2, "train": rows_out,
                                                  "machine": platform.node(), "date": time.strftime("%Y-%m-%d")},
                                                 indent=1) + "\n")
        return
    thr = float(bundle.extra["score_threshold"])
    rows_out = {}
    for way in args.ways.split(","):
        if way == "whole":
            run = predict(args.model, [image], work / "whole", args.threads)
            frame = detections([work / "whole"])
        elif way == "mosaic":
            run = predict(args.model, sheets, work / "mosaic", args.threads)
            frame = detections([work / "mosaic"])
        else:
            runs = [predict(args.model, [s], work / f"each_{k}", args.threads) for k, s in enumerate(sheets)]
            run = {"seconds": round(sum(r["seconds"] for r in runs), 2),
                   "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}
            frame = detections([work / f"each_{k}" for k in range(len(sheets))])
        rows_out[way] = run | score(frame, transform, gt, thr, cols, rows)
        print(way, rows_out[way], flush=True)
    result = {"model": str(Path(args.model).resolve()), "image": str(Path(args.image).resolve()), "strip": args.strip,
              "scene_px": list(size), "repeat": args.repeat, "sheets": args.sheets ** 2, "score_threshold": thr,
              "threads": args.threads, "machine": platform.node(), "date": time.strftime("%Y-%m-%d"),
              "rows": rows_out}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
