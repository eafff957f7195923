"""Band files at two pixel sizes on a scene 100x the NC sample: `geocamat predict` time and peak memory, side by
side with the same scene whose bands all share one grid.

The NC sample's six band files are upsampled 10x per side (4890 x 4430 px); in the "two grids" case bands 40, 50
and 70 are written at half that resolution (2x coarser pixels, as Sentinel-2's 20 m bands beside its 10 m ones),
so `geocamat predict` stacks them on the fine grid through a resampling VRT. A model is trained (1 epoch) on the
sample cut the same way; both scenes are then mapped by it, one after the other, under /usr/bin/time.

    python bench/band_grids_scale.py --work /tmp/bg --out bench/results/band_grids_scale_cpu.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NC = ROOT / "samples" / "nc_landsat"
COARSE = ("lsat7_2000_40", "lsat7_2000_50", "lsat7_2000_70")


def write_band(src_path: Path, dst_path: Path, scale: float) -> None:
    """``src_path``'s band resampled by ``scale`` per side (>= 1: pixels repeated; 0.5: 2 x 2 means), in strips."""
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(src_path) as src:
        a, profile, t = src.read(1), src.profile.copy(), src.transform
        nodata = src.nodata
    if scale < 1:
        step = round(1 / scale)
        h, w = a.shape[0] // step * step, a.shape[1] // step * step
        valid = a[:h, :w] != nodata if nodata is not None else np.ones((h, w), bool)
        blocks = np.where(valid, a[:h, :w], 0).reshape(h // step, step, w // step, step).astype("float64")
        count = valid.reshape(h // step, step, w // step, step).sum(axis=(1, 3))
        a = np.where(count > 0, blocks.sum(axis=(1, 3)) / np.maximum(count, 1), nodata).astype(a.dtype)
        factor = step
    else:
        factor = 1 / scale
    profile.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate", zlevel=1,
                   transform=Affine(t.a * factor, t.b, t.c, t.d, t.e * factor, t.f))
    rows = a.shape[0] * (int(scale) if scale >= 1 else 1)
    cols = a.shape[1] * (int(scale) if scale >= 1 else 1)
    profile.update(width=cols, height=rows)
    with rasterio.open(dst_path, "w", **profile) as dst:
        if scale < 1:
            dst.write(a, 1)
            return
        s = int(scale)
        for r in range(0, a.shape[0], 64):
            strip = np.repeat(np.repeat(a[r:r + 64], s, axis=0), s, axis=1)
            dst.write(strip, 1, window=rasterio.windows.Window(0, r * s, cols, strip.shape[0]))


def scene(folder: Path, scale: int, two_grids: bool) -> str:
    """The band files of one case (kept when already there); returns their glob."""
    folder.mkdir(parents=True, exist_ok=True)
    for band in sorted(NC.glob("lsat7_2000_*.tif")):
        out = folder / band.name
        if out.exists():
            continue
        if scale == 1 and not (two_grids and band.stem in COARSE):
            out.symlink_to(band)
            continue
        if two_grids and band.stem in COARSE:
            if scale == 1:
                write_band(band, out, 0.5)
            else:
                tmp = folder / f"full_{band.name}"
                write_band(band, tmp, scale)
                write_band(tmp, out, 0.5)
                tmp.unlink()
        else:
            write_band(band, out, scale)
    return str(folder / "lsat7_2000_*.tif")


def timed(cmd: list[str], also: tuple[str, ...] = ()) -> dict:
    """Run ``cmd`` under /usr/bin/time -v: wall seconds, peak RSS (MiB), its note/wrote lines (and those holding
    any of ``also``)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(rss, 1),
            "said": [line for line in (proc.stdout + proc.stderr).splitlines()
                     if line.startswith(("note", "wrote")) or any(a in line for a in also)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--overlap", type=float, default=0.5)
    args = ap.parse_args()
    geocamat = str(Path(sys.executable).parent / "geocamat")
    work = args.work
    small = scene(work / "x1_two_grids", 1, True)
    model = work / "model" / "model.geocamat"
    if not model.exists():
        subprocess.run([geocamat, "train", "--images", small, "--labels", str(NC / "strata.tif"), "--out",
                        str(model.parent), "--epochs", "1", "--quiet", "--overwrite"], check=True)
    results = {"command": " ".join(sys.argv), "scale": args.scale, "overlap": args.overlap, "cases": {}}
    for name, two in (("one_grid", False), ("two_grids", True)):
        images = scene(work / f"x{args.scale}_{name}", args.scale, two)
        import rasterio

        sizes = []
        for p in sorted(Path(images).parent.glob("lsat7_2000_*.tif")):
            with rasterio.open(p) as src:
                sizes.append(f"{p.stem} {src.width}x{src.height}")
        run = timed([geocamat, "predict", "--model", str(model), "--out", str(work / f"map_{name}"), "--overwrite",
                     "--no-vector", "--overlap", str(args.overlap), "--quiet", "--force", images])
        report = json.loads((work / f"map_{name}" / "report.json").read_text())
        run.update(bands=sizes, tiles=report["tiles"], grid=[report["grid"]["width"], report["grid"]["height"]],
                   tiles_per_s=round(report["throughput"]["tiles_per_s_total"], 1))
        results["cases"][name] = run
        print(name, json.dumps(run), flush=True)
    one, two = results["cases"]["one_grid"], results["cases"]["two_grids"]
    results["ratio_two_over_one"] = {"wall": round(two["wall_s"] / one["wall_s"], 3),
                                     "peak_rss": round(two["peak_rss_mib"] / one["peak_rss_mib"], 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["ratio_two_over_one"]))


if __name__ == "__main__":
    main()
