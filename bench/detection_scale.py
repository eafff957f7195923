"""Detection training at scale: peak memory of ``geocamat train --task detection`` as the scene grows.

The scenes are mosaics of the NEON crop OSBS_029 (400 x 400 px, 61 labelled crowns) repeated ``k`` x ``k`` times
(``k``^2 times its pixels; the crowns keep their size and their boxes are repeated with them), written as tiled
deflate GeoTIFFs with a CSV of boxes to ``--work``. Each case runs the real CLI in a fresh process for one
epoch of ``--max-tiles`` training tiles (so the work per case stays the same: what grows is the scene) and
reports the process's peak RSS (``ru_maxrss``: reading the labels, planning the tiles, training, validating
the right-hand strip, writing the bundle) and its wall time.

``--repo`` runs another checkout's code (e.g. a git worktree of an older commit) on the same scenes, so that
two versions are measured side by side.

Usage::

    python bench/detection_scale.py --scales 2 20 40 --work /tmp/det_scale --out bench/results/detection_scale.json
    python bench/detection_scale.py --scales 2 20 --repo /tmp/old_checkout --label before ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NEON = ROOT.parent / "shared" / "data" / "deepforest_neon_trees"


def make_mosaic(work: Path, k: int, source: Path = NEON / "OSBS_029.tif") -> tuple[Path, Path]:
    """(image, boxes CSV) of ``source`` repeated ``k`` x ``k`` times (kept when already there)."""
    import rasterio
    from rasterio.transform import Affine

    folder = work / f"k{k}"
    folder.mkdir(parents=True, exist_ok=True)
    image, labels = folder / f"mosaic_k{k}.tif", folder / f"mosaic_k{k}.csv"
    if image.exists() and labels.exists():
        return image, labels
    with rasterio.open(source) as src:
        pixels, profile, t = src.read(), src.profile.copy(), src.transform
    c, h, w = pixels.shape
    profile.update(driver="GTiff", width=w * k, height=h * k, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", zlevel=1, BIGTIFF="IF_SAFER", transform=Affine(t.a, t.b, t.c, t.d, t.e, t.f))
    with rasterio.open(image, "w", **profile) as dst:
        strip = np.tile(pixels, (1, 1, k))  # one row of copies at a time: bounded memory while writing
        for r in range(k):
            dst.write(strip, window=rasterio.windows.Window(0, r * h, w * k, h))
    import csv

    rows = list(csv.DictReader(open(source.with_suffix(".csv"))))
    with open(labels, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image_path", "xmin", "ymin", "xmax", "ymax", "label"])
        for i in range(k):
            for j in range(k):
                for b in rows:
                    out.writerow([image.name, int(b["xmin"]) + j * w, int(b["ymin"]) + i * h,
                                  int(b["xmax"]) + j * w, int(b["ymax"]) + i * h, b["label"]])
    return image, labels


def child(args: argparse.Namespace) -> None:
    """One case in this fresh process: the CLI's train command, then the peak RSS as one JSON line."""
    import resource

    sys.path.insert(0, str(Path(args.repo).resolve()))
    os.chdir(args.repo)
    from cli.main import cli

    started = time.perf_counter()
    cli.main(["train", "--task", "detection", "--images", args.image, "--labels", args.labels, "--epochs", "1",
              "--batch-size", str(args.batch_size), "--tile-size", str(args.tile_size), "--out", args.run,
              "--overwrite", "--quiet",
              "--set", f"max_tiles={args.max_tiles}", "--set", f"num_threads={args.threads}",
              "--set", "accelerator=cpu",
              *(["--set", f"scene_cache_mb={args.cache_mb:g}"] if args.cache_mb is not None else [])],
             standalone_mode=False)
    wall = time.perf_counter() - started
    metrics = json.loads((Path(args.run) / "metrics.json").read_text())
    print(json.dumps({"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 3),
                      "wall_s": round(wall, 1), "train_tiles": metrics.get("train_tiles"),
                      "val_tiles": metrics.get("val_tiles"), "map_50": metrics.get("map_50")}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 20], help="k: the mosaic is k x k crops")
    ap.add_argument("--work", default="/tmp/geocamat_detection_scale")
    ap.add_argument("--repo", default=str(ROOT), help="the checkout whose code runs (default: this one)")
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--max-tiles", type=int, default=32)
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--cache-mb", type=float, default=None,
                    help="scene_cache_mb (default: the setting's own; 0 reads every tile from the file)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="append the rows to this JSON file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--labels", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    work = Path(args.work)
    rows = []
    for k in args.scales:
        image, labels = make_mosaic(work, k)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--repo", args.repo, "--image", str(image),
               "--labels", str(labels), "--run", str(work / f"run_k{k}"), "--max-tiles", str(args.max_tiles),
               "--batch-size", str(args.batch_size), "--tile-size", str(args.tile_size), "--threads", str(args.threads),
               *(["--cache-mb", str(args.cache_mb)] if args.cache_mb is not None else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            row = {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        else:
            row = json.loads(done.stdout.strip().splitlines()[-1])
        with __import__("rasterio").open(image) as src:
            row.update({"k": k, "megapixels": round(src.width * src.height / 1e6, 2), "code": args.label,
                        "scene_cache_mb": args.cache_mb,
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        out = Path(args.out)
        old = json.loads(out.read_text()) if out.exists() else []
        out.write_text(json.dumps(old + rows, indent=2))


if __name__ == "__main__":
    main()
