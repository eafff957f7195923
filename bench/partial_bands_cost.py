"""What partial_bands.tif costs a land-use prediction: seconds and peak memory with and without it, side by side.

    python bench/partial_bands_cost.py [--size 2048] [--rounds 2] [--dir /tmp]

A SIZE x SIZE 6-band scene whose last band is nodata in a 64 px frame (a quarter of the NC sample's share);
a cheap per-pixel head (the first band's sign), so the model does not hide the cost of the outputs. Each run
in its own process, alternating: the mask written (default) and not (the engine's ``partial_pieces`` off).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from isolated import run_isolated


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(mask: bool, folder: Path) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from inference_helpers import make_bundle

    from geocamat.inference import engine as engine_module
    from geocamat.inference.heads import PixelHead
    from geocamat.inference.landuse import predict_landuse

    class Sign(PixelHead):
        outputs = {"probabilities": 3}

        def __call__(self, batch):
            above = (batch[:, :1] > 0).float()
            return {"probabilities": torch.cat([0.1 + 0.8 * above, 0.9 - 0.8 * above, torch.zeros_like(above)], 1)}

    if not mask:
        init = engine_module.Engine.__init__

        def without(self, *a, **k):
            init(self, *a, **k)
            self.partial_pieces = False

        engine_module.Engine.__init__ = without
    torch.set_num_threads(1)
    start = time.perf_counter()
    report = predict_landuse(make_bundle(bands=6, tile=16), [str(folder / "scene.tif")], folder / f"out_{mask}",
                             head=Sign(), vectorise=False, overwrite=True, progress=False)
    return {"mask": mask, "seconds": time.perf_counter() - start, "peak_rss_mib": _peak_mib(),
            "assemble_s": report["timings"]["assemble_s"], "stream_s": report["timings"]["stream_s"],
            "partial_bands": report["pixels"]["partial_bands"], "outputs": report["outputs"],
            "mask_mb": (folder / f"out_{mask}" / "partial_bands.tif").stat().st_size / 1e6 if mask else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/partial_bands_cost")
    ap.add_argument("--one", choices=["mask", "none"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    folder = Path(args.dir)
    if args.one:
        print(json.dumps(one(args.one == "mask", folder)))
        return
    folder.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from inference_helpers import make_raster

    make_raster(folder / "scene.tif", args.size, args.size, bands=6, collar=8, missing_frame=64, tiled=True)
    rows = []
    for _ in range(args.rounds):
        for which in ("mask", "none"):
            rows.append(run_isolated(__file__, "--one", which, "--dir", str(folder)))
    print(f"{args.size} x {args.size} px, 6 bands, last band missing in a 64 px frame")
    print("| partial_bands.tif | total s | streaming s | assembly s | peak RSS MiB | mask MB | partial pixels |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'written' if r['mask'] else 'not written'} | {r['seconds']:.2f} | {r['stream_s']:.2f} | "
              f"{r['assemble_s']:.2f} | {r['peak_rss_mib']:.0f} | {r['mask_mb']:.3f} | {r['partial_bands']} |")


if __name__ == "__main__":
    main()
