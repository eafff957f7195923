"""Benchmark: land-use inference over a scene, three ways, on the same synthetic deflate GeoTIFF and model.

(a) TorchGeo's GriddedPatchSampler + DataLoader (``--loader-workers`` processes), model on each batch;
(b) ``geocamat.inference.landuse.predict_landuse`` (reads, blending, COG/GeoPackage writing included);
(c) the model alone on tiles already in memory (same number of tiles, same batch size, same precision).
Then the peak RSS of (b) at two scene sizes, each in a fresh subprocess (``ru_maxrss``), to show that
memory does not grow with the scene.

CPU example (what docs/bench_inference.md reports):
    nice python bench/inference.py --size 2048 --threads 2 --rss-sizes 4096,16384 --rss-arch camnet-s
GPU example (one H100, < 3 min):
    python bench/inference.py --device cuda --size 8192 --batch-size 256 --loader-workers 12 --workers 16 \
        --rss-sizes 4096,8192 --out /tmp/geocamat-bench
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
sys.path.insert(0, str(ROOT))


def make_scene(path: Path, size: int, seed: int = 0) -> Path:
    """A 3-band uint8 tiled (256 px) deflate GeoTIFF of ``size`` x ``size`` px, written in strips."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".part")
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "crs": "EPSG:32618",
               "transform": from_origin(300000, 4500000, 1.0, 1.0), "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "nodata": None, "BIGTIFF": "IF_SAFER"}
    strip = 1024
    xx = np.arange(size, dtype=np.float32)[None, :]
    with rasterio.open(tmp, "w", **profile) as dst:
        for r in range(0, size, strip):
            h = min(strip, size - r)
            yy = np.arange(r, r + h, dtype=np.float32)[:, None]
            bands = []
            for b in range(3):
                field = 128 + 60 * np.sin(xx / (90 + 30 * b)) * np.cos(yy / (70 + 20 * b)) + 40 * np.sin(
                    (xx + yy) / 400)
                bands.append((field + rng.normal(0, 8, (h, size))).clip(0, 255).astype(np.uint8))
            dst.write(np.stack(bands), window=Window(0, r, size, h))
    os.replace(tmp, path)
    return path


def make_bundle(arch: str, tile: int, classes: int = 7):
    import torch

    from geocamat.bundle import Bundle, ClassInfo
    from geocamat.models.camnet import CamNet

    torch.manual_seed(0)
    model = CamNet(3, classes, tile, arch=arch).eval()
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    return Bundle(task="landuse", model={"name": "camnet", "in_channels": 3, "num_classes": classes, "tile_size": tile,
                                         "arch": arch}, state_dict=model.state_dict(), bands=["r", "g", "b"],
                  mean=[128.0] * 3, std=[50.0] * 3,
                  classes=[ClassInfo(i + 1, f"class {i + 1}", colors[i % 7]) for i in range(classes)], tile_size=tile)


def _model(bundle, dev):
    import torch

    model = bundle.build_model().to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def _forward(model, x, dev):
    import torch

    from geocamat.models import camnet

    tile_probabilities = camnet.tile_probabilities
    with torch.inference_mode():
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return tile_probabilities(model, x)
        return tile_probabilities(model, x)


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_torchgeo(scene: Path, bundle, dev, tile: int, stride: int, batch: int, workers: int) -> dict:
    """(a) TorchGeo dataset + GriddedPatchSampler + DataLoader, then the model."""
    import torch
    from torch.utils.data import DataLoader
    from torchgeo.datasets import stack_samples
    from torchgeo.samplers import GriddedPatchSampler

    from geocamat.data.torchgeo_datasets import stack_dataset

    model = _model(bundle, dev)
    mean = torch.tensor(bundle.mean, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std, device=dev).view(1, -1, 1, 1)
    start = time.perf_counter()
    ds = stack_dataset([scene])
    sampler = GriddedPatchSampler(ds, size=tile, stride=stride)
    loader = DataLoader(ds, sampler=sampler, batch_size=batch, num_workers=workers, collate_fn=stack_samples,
                        pin_memory=dev.type == "cuda", persistent_workers=False)
    tiles = 0
    for sample in loader:
        x = sample["image"].to(dev, non_blocking=True)
        x = torch.nan_to_num((x - mean) / std)
        _forward(model, x, dev)
        tiles += x.shape[0]
    _sync(dev)
    seconds = time.perf_counter() - start
    return {"tiles": tiles, "seconds": seconds, "tiles_per_s": tiles / seconds}


def bench_geocamat(scene: Path, bundle, dev, overlap: float, batch: int, workers: int, out: Path,
                   vectorise: bool = True, **engine) -> dict:
    """(b) the geocamat engine, end to end (reads, model, blending, COG + GeoPackage + report)."""
    from geocamat.inference.landuse import predict_landuse

    start = time.perf_counter()
    report = predict_landuse(bundle, [str(scene)], out, overlap=overlap, batch_size=batch, workers=workers,
                             device=str(dev), overwrite=True, progress=False, vectorise=vectorise, **engine)
    seconds = time.perf_counter() - start
    tiles = report["tiles"]["tiles_processed"] + report["tiles"]["recomputed_at_seams"]
    stream = report["timings"]["stream_s"]
    return {"tiles": tiles, "seconds": seconds, "tiles_per_s": tiles / seconds, "stream_s": stream,
            "tiles_per_s_stream": tiles / stream, "assemble_s": report["timings"]["assemble_s"],
            "model_s": report["timings"]["model_s"], "polygons": report["polygons"],
            "stream_stages": report["timings"]["stream_stages"],
            "assemble_stages": report["timings"]["assemble_stages"], "memory": report["memory"]}


def bench_model(bundle, dev, tiles: int, batch: int, tile: int) -> dict:
    """(c) the model alone on tiles already on the device."""
    import torch

    model = _model(bundle, dev)
    x = torch.randn(batch, 3, tile, tile, device=dev)
    _forward(model, x, dev)  # warm-up
    _sync(dev)
    start = time.perf_counter()
    done = 0
    while done < tiles:
        n = min(batch, tiles - done)
        _forward(model, x[:n], dev)
        done += n
    _sync(dev)
    seconds = time.perf_counter() - start
    return {"tiles": done, "seconds": seconds, "tiles_per_s": done / seconds}


class null_model:
    """Context: replace the model by one returning uniform probabilities (measures everything but the model)."""

    def __enter__(self):
        import torch

        import geocamat.models.camnet as camnet

        self.module, self.saved = camnet, camnet.tile_probabilities

        def uniform(model, x, tta=False):
            k = model.head.out_features
            n, _, h, w = x.shape
            return torch.full((n, k, h, w), 1.0 / k, device=x.device), torch.zeros((n, h, w), device=x.device)

        camnet.tile_probabilities = uniform
        return self

    def __exit__(self, *exc):
        self.module.tile_probabilities = self.saved


def rss_child(args: argparse.Namespace) -> None:
    """Run predict_landuse once and print the peak RSS (MiB) as JSON (called in a subprocess)."""
    import geopandas  # noqa: F401 - imported before measuring the baseline
    import pyogrio  # noqa: F401
    import torch
    import torchgeo.datasets  # noqa: F401

    from geocamat.inference.telemetry import peak_rss_mib

    torch.set_num_threads(args.threads)
    baseline = peak_rss_mib()
    dev = torch.device(args.device)
    bundle = make_bundle(args.rss_arch, args.tile)
    scene = Path(args.rss_scene)
    out = Path(args.out) / f"rss_out_{scene.stem}"
    result = bench_geocamat(scene, bundle, dev, args.rss_overlap, args.batch_size, args.workers, out)
    peak = peak_rss_mib()
    print(json.dumps({"peak_rss_mib": peak, "rss_after_imports_mib": baseline, **result}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=2048, help="scene side (px) for the throughput comparison")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--loader-workers", type=int, default=2, help="DataLoader processes for (a)")
    p.add_argument("--workers", type=int, default=4, help="reader threads for (b)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--rss-sizes", default="4096,16384", help="scene sides for the peak-RSS runs ('' to skip)")
    p.add_argument("--rss-arch", default="camnet-s")
    p.add_argument("--rss-overlap", type=float, default=0.0)
    p.add_argument("--out", default="/tmp/geocamat-bench")
    p.add_argument("--json", default=None, help="results file (default OUT/bench_inference.json)")
    p.add_argument("--also-no-vector", action="store_true", help="run (b) a second time without landuse.gpkg")
    p.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c")
    p.add_argument("--also-tile-blend", action="store_true",
                   help="run (b) a second time blending tile by tile (the CUDA path before block adds)")
    p.add_argument("--also-writers", type=int, default=0,
                   help="run (b) a second time with this many writer threads at most (MAX_WRITERS)")
    p.add_argument("--rss-scene", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_scene:
        rss_child(args)
        return
    import geopandas  # noqa: F401 - heavy imports done before any timing
    import pyogrio  # noqa: F401
    import torch
    import torchgeo.datasets  # noqa: F401
    import torchgeo.samplers  # noqa: F401

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    info = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu x{os.cpu_count()}",
            "torch_threads": args.threads, "size": args.size, "tile": args.tile, "arch": args.arch,
            "overlap": args.overlap, "batch_size": args.batch_size, "loader_workers": args.loader_workers,
            "reader_workers": args.workers, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    t0 = time.perf_counter()
    scene = make_scene(out / f"scene_{args.size}.tif", args.size)
    info["scene_seconds"] = time.perf_counter() - t0
    bundle = make_bundle(args.arch, args.tile)
    stride = max(1, round(args.tile * (1 - args.overlap)))
    results: dict = {"setup": info}
    # Warm the device once before any timed path (CUDA context, cuDNN algorithm choice for this model and
    # batch): otherwise whichever path runs first pays it (session 1's GPU runs timed (b) first, cold).
    t_warm = time.perf_counter()
    _forward(_model(bundle, dev), torch.randn(args.batch_size, 3, args.tile, args.tile, device=dev), dev)
    _sync(dev)
    info["warm_up_seconds"] = time.perf_counter() - t_warm
    if "b" not in skip:
        results["b_geocamat"] = bench_geocamat(scene, bundle, dev, args.overlap, args.batch_size, args.workers,
                                               out / "pred")
        print("b", results["b_geocamat"], flush=True)
        if args.also_no_vector:
            results["b_geocamat_no_vector"] = bench_geocamat(scene, bundle, dev, args.overlap, args.batch_size,
                                                             args.workers, out / "pred_nv", vectorise=False)
            print("b (no vector)", results["b_geocamat_no_vector"], flush=True)
    if args.also_tile_blend and "b" not in skip:
        results["b_geocamat_tile_blend"] = bench_geocamat(scene, bundle, dev, args.overlap, args.batch_size,
                                                          args.workers, out / "pred_tb", blend="tiles")
        print("b (tile-by-tile blending)", results["b_geocamat_tile_blend"], flush=True)
    if args.also_writers and "b" not in skip:
        from geocamat.inference.plan import UnitSizes

        results["b_geocamat_writers"] = bench_geocamat(scene, bundle, dev, args.overlap, args.batch_size,
                                                       args.workers, out / "pred_w",
                                                       units=UnitSizes(max_writers=args.also_writers))
        results["b_geocamat_writers"]["max_writers"] = args.also_writers
        print(f"b ({args.also_writers} writers at most)", results["b_geocamat_writers"], flush=True)
    if "a" not in skip:
        results["a_torchgeo"] = bench_torchgeo(scene, bundle, dev, args.tile, stride, args.batch_size,
                                               args.loader_workers)
        print("a", results["a_torchgeo"], flush=True)
    if "c" not in skip:
        n = results.get("b_geocamat", results.get("a_torchgeo", {"tiles": 256}))["tiles"]
        results["c_model"] = bench_model(bundle, dev, n, args.batch_size, args.tile)
        print("c", results["c_model"], flush=True)
    if "n" not in skip:  # the pipelines without the model: reading, tiling, blending, writing
        with null_model():
            results["a_torchgeo_null_model"] = bench_torchgeo(scene, bundle, dev, args.tile, stride, args.batch_size,
                                                              args.loader_workers)
            print("a (null model)", results["a_torchgeo_null_model"], flush=True)
            results["b_geocamat_null_model"] = bench_geocamat(scene, bundle, dev, args.overlap, args.batch_size,
                                                              args.workers, out / "pred_null")
            print("b (null model)", results["b_geocamat_null_model"], flush=True)
    a, b, c = (results.get(k, {}).get("tiles_per_s") for k in ("a_torchgeo", "b_geocamat", "c_model"))
    bs = results.get("b_geocamat", {}).get("tiles_per_s_stream")
    results["ratios"] = {"b/a": b / a if a and b else None, "b/c": b / c if b and c else None,
                         "b_stream/a": bs / a if a and bs else None, "b_stream/c": bs / c if c and bs else None}
    an, bn = (results.get(k, {}).get("tiles_per_s") for k in ("a_torchgeo_null_model", "b_geocamat_null_model"))
    results["ratios"]["b/a null model"] = bn / an if an and bn else None
    rss = {}
    for size in [int(s) for s in args.rss_sizes.split(",") if s.strip()]:
        rscene = make_scene(out / f"scene_{size}.tif", size)
        cmd = [sys.executable, __file__, "--rss-scene", str(rscene), "--device", args.device, "--tile", str(args.tile),
               "--rss-arch", args.rss_arch, "--rss-overlap", str(args.rss_overlap), "--batch-size",
               str(args.batch_size), "--workers", str(args.workers), "--threads", str(args.threads), "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rss[size] = json.loads(proc.stdout.strip().splitlines()[-1])
        print("rss", size, rss[size], flush=True)
    if rss:
        sizes = sorted(rss)
        results["rss"] = {str(k): v for k, v in rss.items()}
        results["rss_ratio_largest_smallest"] = rss[sizes[-1]]["peak_rss_mib"] / rss[sizes[0]]["peak_rss_mib"]
    results["total_seconds"] = time.perf_counter() - t0
    rows = [("(a) TorchGeo GriddedPatchSampler+DataLoader", results.get("a_torchgeo")),
            ("(b) geocamat predict_landuse (end to end)", results.get("b_geocamat")),
            ("(c) model alone (tensors in memory)", results.get("c_model")),
            ("(a) with a null model (pipeline only)", results.get("a_torchgeo_null_model")),
            ("(b) with a null model (pipeline only)", results.get("b_geocamat_null_model"))]
    print(f"\n{'path':48s} {'tiles':>7s} {'seconds':>9s} {'tiles/s':>9s}")
    for name, r in rows:
        if r:
            print(f"{name:48s} {r['tiles']:7d} {r['seconds']:9.2f} {r['tiles_per_s']:9.2f}")
    if "b_geocamat_no_vector" in results:
        r = results["b_geocamat_no_vector"]
        name = "(b) end to end without landuse.gpkg"
        print(f"{name:48s} {r['tiles']:7d} {r['seconds']:9.2f} {r['tiles_per_s']:9.2f}")
    if "b_geocamat_writers" in results:
        r = results["b_geocamat_writers"]
        name = f"(b) end to end, {r['max_writers']} writers at most"
        print(f"{name:48s} {r['tiles']:7d} {r['seconds']:9.2f} {r['tiles_per_s']:9.2f}")
    if "b_geocamat_tile_blend" in results:
        r = results["b_geocamat_tile_blend"]
        name = "(b) end to end, tile-by-tile blending"
        print(f"{name:48s} {r['tiles']:7d} {r['seconds']:9.2f} {r['tiles_per_s']:9.2f}")
    if "b_geocamat" in results:
        r = results["b_geocamat"]
        print(f"{'(b) streaming phase only (no COG/GeoPackage)':48s} {r['tiles']:7d} {r['stream_s']:9.2f} "
              f"{r['tiles_per_s_stream']:9.2f}")
    print("ratios:", {k: (round(v, 3) if v else v) for k, v in results["ratios"].items()})
    for size, r in rss.items():
        print(f"peak RSS {size}x{size}: {r['peak_rss_mib']:.0f} MiB (after imports "
              f"{r['rss_after_imports_mib']:.0f} MiB; {r['tiles']} tiles, {r['seconds']:.1f} s)")
    if rss:
        print(f"RSS ratio largest/smallest: {results['rss_ratio_largest_smallest']:.3f}")
    path = Path(args.json) if args.json else out / "bench_inference.json"
    path.write_text(json.dumps(results, indent=2))
    print("results:", path)


if __name__ == "__main__":
    main()
