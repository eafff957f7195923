"""Benchmark: land-use prediction of one scene by 1 process and by N processes (``devices=N``), side by side.

Each configuration runs in a fresh subprocess (so the N-process case pays for starting its ranks, as a user
would), alternating 1, N, 1, N... on the same synthetic scene (bench/inference.py's 3-band deflate GeoTIFF)
and the same untrained CamNet. Prints wall time, tiles/s (every rank's tiles over the streaming time until the
last rank finished), the tiles computed twice at the rank seams, the peak RSS per process, and whether the
maps are pixel-identical.

CPU example (what docs/benchmarks.md reports):
    nice python bench/predict_ranks.py --size 2048 --devices 2 --repeats 2
GPU (one process per GPU):
    python bench/predict_ranks.py --device cuda --size 8192 --devices 2 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def child(args: argparse.Namespace) -> None:
    """One prediction with ``args.run_devices`` processes; prints a JSON line (called in a subprocess)."""
    import torch
    from inference import make_bundle

    from geocamat.inference.landuse import predict_landuse

    torch.set_num_threads(args.threads)
    bundle = make_bundle(args.arch, args.tile)
    out = Path(args.out) / f"map_{args.run_devices}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    report = predict_landuse(bundle, [str(Path(args.out) / f"scene_{args.size}.tif")], out, overlap=args.overlap,
                             batch_size=args.batch_size, device=args.device, vectorise=False, progress=False,
                             devices=args.run_devices)
    wall = time.perf_counter() - start
    per_rank = (report.get("ranks") or {}).get("per_rank") or [{"rank": 0, **report["memory"]}]
    print(json.dumps({"devices": args.run_devices, "wall_s": wall, "total_s": report["timings"]["total_s"],
                      "stream_s": report["timings"]["stream_s"], "assemble_s": report["timings"]["assemble_s"],
                      "tiles_processed": report["tiles"]["tiles_processed"],
                      "recomputed": report["tiles"]["recomputed_at_seams"],
                      "tiles_per_s_stream": report["throughput"]["tiles_per_s_stream"],
                      "peak_rss_mib": max(r.get("peak_rss_mib", 0) for r in per_rank),
                      "units": report["plan"]["units"]}))


def same_maps(a: Path, b: Path) -> bool:
    import rasterio

    for name in ("landuse.tif", "confidence.tif", "cam.tif"):
        with rasterio.open(a / name) as x, rasterio.open(b / name) as y:
            if not np.array_equal(x.read(), y.read(), equal_nan=True):
                return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--devices", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="camnet-s")
    p.add_argument("--tile", type=int, default=32)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the one process (shared by N)")
    p.add_argument("--out", default="/tmp/geocamat-bench-ranks")
    p.add_argument("--run-devices", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run_devices is not None:
        child(args)
        return
    from inference import make_scene

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    make_scene(out / f"scene_{args.size}.tif", args.size)
    rows = []
    for rep in range(args.repeats):
        for devices in (1, args.devices):
            cmd = [sys.executable, __file__, *sys.argv[1:], "--run-devices", str(devices)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"run with {devices} devices failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["repeat"] = rep
            rows.append(row)
            print(json.dumps(row), flush=True)
    identical = same_maps(out / "map_1", out / f"map_{args.devices}")
    print(f"\n{args.size}^2 px, {args.arch} {args.tile} px tiles, overlap {args.overlap}, device {args.device}; "
          f"maps pixel-identical: {identical}")
    print("| processes | repeat | wall s | stream s | assemble s | tiles/s (stream) | tiles computed twice "
          "| peak RSS per process MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['devices']} | {r['repeat']} | {r['wall_s']:.1f} | {r['stream_s']:.1f} | {r['assemble_s']:.1f} "
              f"| {r['tiles_per_s_stream']:.0f} | {r['recomputed']} | {r['peak_rss_mib']:.0f} |")
    one = [r["wall_s"] for r in rows if r["devices"] == 1]
    many = [r["wall_s"] for r in rows if r["devices"] == args.devices]
    print(f"\nwall time {args.devices} processes / 1 process (median): "
          f"{float(np.median(many)) / float(np.median(one)):.2f}")


if __name__ == "__main__":
    main()
