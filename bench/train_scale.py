"""Training at scale: peak memory of one epoch on the NC sample upsampled 4x and 16x, and tiles/s side by side.

The scenes are made on the fly (same 6 bands and labels, every pixel repeated ``s`` x ``s`` times, pixel size
divided by ``s``; written to ``--work``). Every case runs in a fresh process, which prints its peak RSS
(``ru_maxrss``: the whole run, from reading the labels to the end of the epoch, validation included) and the
training loop's speed (windows trained per second, data reading included). Cases:

- ``stream`` on the 4x and 16x scenes, ``--samples`` windows per epoch (the ratio of the peak RSS,
  16x / 4x, should be <= 1.2: memory must not grow with the scene);
- ``memory`` (tiles cut into memory, the former pipeline) and ``stream`` on the sample itself, a full pass
  per epoch, ``--epochs`` epochs each, alternated ``--repeats`` times (speed within 20%).

Usage::

    python bench/train_scale.py                     # all cases; prints a table
    python bench/train_scale.py --scales 4 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NC = ROOT / "samples" / "nc_landsat"
YAML = ROOT / "samples" / "nc_landsat.yaml"


def upsample(src_path: Path, dst_path: Path, scale: int, bands: list[Path] | None = None) -> Path:
    """Write ``src_path`` (or the band files ``bands`` stacked) with every pixel repeated ``scale`` x ``scale``."""
    import rasterio
    from rasterio.transform import Affine

    sources = bands or [src_path]
    with rasterio.open(sources[0]) as first:
        profile = first.profile.copy()
        t = first.transform
        h, w = first.height, first.width
    profile.update(driver="GTiff", width=w * scale, height=h * scale, count=len(sources), tiled=True,
                   blockxsize=256, blockysize=256, compress="deflate", zlevel=1, BIGTIFF="IF_SAFER",
                   transform=Affine(t.a / scale, t.b, t.c, t.d, t.e / scale, t.f))
    arrays = []
    for p in sources:
        with rasterio.open(p) as src:
            arrays.append(src.read(1))
    with rasterio.open(dst_path, "w", **profile) as dst:
        for b, a in enumerate(arrays, start=1):
            for r in range(0, h, 64):  # strips of 64 source rows: bounded memory while writing
                strip = np.repeat(np.repeat(a[r:r + 64], scale, axis=0), scale, axis=1)
                dst.write(strip, b, window=rasterio.windows.Window(0, r * scale, w * scale, strip.shape[0]))
    return dst_path


def make_scene(work: Path, scale: int) -> tuple[Path, Path]:
    """(image, labels) of the NC sample upsampled ``scale`` x per side (kept when already there)."""
    folder = work / f"x{scale}"
    folder.mkdir(parents=True, exist_ok=True)
    image, labels = folder / "image.tif", folder / "strata.tif"
    if not image.exists():
        upsample(None, image, scale, bands=sorted(NC.glob("lsat7_2000_*.tif")))
    if not labels.exists():
        upsample(NC / "strata.tif", labels, scale)
    return image, labels


def child(spec: dict) -> dict:
    """One case in this (fresh) process: the run's data, the registration check, one Lightning fit."""
    import lightning as L

    from geocamat.data.labels import grid_of_dataset, labels_on_grid
    from geocamat.data.stack import open_stack
    from geocamat.settings import build, load_raw
    from geocamat.tasks.landuse.config import LandUseConfig
    from geocamat.tasks.landuse.workflow import (
        _check_registration,
        _classes,
        build_task,
        prepare_data,
        tile_options,
    )
    from geocamat.tasks.training import build_regulariser_from, build_trainer, quiet_lightning

    overrides = {"images": spec["images"], "labels": spec["labels"], "epochs": spec["epochs"],
                 "data_pipeline": spec["pipeline"], "samples_per_epoch": spec.get("samples"),
                 "accelerator": "cpu", "devices": 1, "label_offset": "check"}
    config = build(LandUseConfig, load_raw(YAML, overrides, spec.get("set", ())).values, what="land-use training")
    quiet_lightning(False)
    L.seed_everything(0, verbose=False)
    if config.data_pipeline == "stream":  # as train_landuse does
        from geocamat.data.chunks import bound_gdal_cache

        bound_gdal_cache()
    work = Path(spec["work"])
    started = time.perf_counter()
    stack = open_stack(config.images, work)
    grid = grid_of_dataset(stack.dataset())
    labels = labels_on_grid(config.labels, grid, work)
    classes = _classes(config, labels)
    data = prepare_data(config, stack, labels, len(classes), log=lambda m: None)
    _check_registration(config, data.sample_images, data.sample_masks, len(classes), log=lambda m: None)
    data.sample_images = data.sample_masks = None
    prepared = time.perf_counter() - started
    opts = tile_options(config)
    spec_model = {"name": "camnet", "in_channels": stack.num_bands, "num_classes": len(classes),
                  "tile_size": opts.tile_size, "arch": config.arch, "output": config.output}
    task = build_task(config, spec_model, data.counts, build_regulariser_from(config))

    class Speed(L.Callback):
        def __init__(self) -> None:
            self.epochs: list[tuple[int, float]] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self.n, self.t0, self.t1 = 0, time.perf_counter(), None

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.n += len(batch["label"])
            self.t1 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            self.epochs.append((self.n, self.t1 - self.t0))

    speed = Speed()
    extra = {"use_distributed_sampler": False} if config.data_pipeline == "stream" else {}
    trainer = build_trainer(config, work, [speed], False, logger=False, enable_checkpointing=False,
                            num_sanity_val_steps=0, **extra)
    trainer.fit(task, data.train_loader, data.val_loader)
    rows, cols = grid.shape
    return {"case": spec["name"], "pipeline": spec["pipeline"], "megapixels": round(rows * cols / 1e6, 2),
            "training_windows": data.n_train, "validation_windows": data.n_val,
            "prepare_s": round(prepared, 1), "epochs": [(n, round(s, 2)) for n, s in speed.epochs],
            "tiles_per_s": [round(n / s, 1) for n, s in speed.epochs],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_case(spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"case {spec['name']} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", default="/tmp/geocamat-train-scale", help="where the scenes are written")
    parser.add_argument("--scales", type=int, nargs="*", default=[4, 16])
    parser.add_argument("--samples", type=int, default=20000, help="windows per epoch on the upsampled scenes")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per speed case on the sample")
    parser.add_argument("--repeats", type=int, default=2, help="memory/stream alternations on the sample")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="settings over the sample config for every case (e.g. camat.source=cached cutmix=0)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    work = Path(args.work)
    results = []
    for scale in args.scales:
        image, labels = make_scene(work, scale)
        results.append(run_case({"name": f"stream {scale}x", "pipeline": "stream", "images": [str(image)],
                                 "labels": str(labels), "epochs": 1, "samples": args.samples,
                                 "work": str(work / f"x{scale}" / "run"), "set": args.set}))
    bands = str(NC / "lsat7_2000_*.tif")
    for r in range(args.repeats):
        for pipeline in ("memory", "stream"):
            results.append(run_case({"name": f"{pipeline} sample #{r + 1}", "pipeline": pipeline, "images": [bands],
                                     "labels": str(NC / "strata.tif"), "epochs": args.epochs,
                                     "work": str(work / f"sample-{pipeline}"), "set": args.set}))
    print("\n| case | Mpx | training windows | drawn/epoch | prepare s | peak RSS MB | tiles/s per epoch |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['case']} | {r['megapixels']} | {r['training_windows']} | {r['epochs'][0][0]} | "
              f"{r['prepare_s']} | {r['peak_rss_mb']} | {', '.join(str(v) for v in r['tiles_per_s'])} |")
    by = {r["case"]: r for r in results}
    if len(args.scales) >= 2:
        a, b = by[f"stream {args.scales[0]}x"], by[f"stream {args.scales[-1]}x"]
        print(f"\npeak RSS {args.scales[-1]}x / {args.scales[0]}x: {b['peak_rss_mb'] / a['peak_rss_mb']:.3f}")
    speeds = {p: [s for r in results if r["case"].startswith(f"{p} sample") for s in r["tiles_per_s"]]
              for p in ("memory", "stream")}
    if all(speeds.values()):
        ratio = np.mean(speeds["stream"]) / np.mean(speeds["memory"])
        print(f"tiles/s on the sample, stream / memory (mean of every epoch): {ratio:.3f}")


if __name__ == "__main__":
    main()
