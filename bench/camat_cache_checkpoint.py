"""What cached CAMAT maps cost in a checkpoint: bytes per window, save and load seconds, peak memory.

    python bench/camat_cache_checkpoint.py [--windows 100000 1000000] [--map 8] [--dir /tmp]

Each size runs in its own process (peak RSS is per process): a cache of WINDOWS samples, every one with a
map of MAP x MAP (the CamNets' feature map at 16-256 px tiles is 8 x 8), saved inside a checkpoint-like dict
with ``torch.save`` and loaded back with ``torch.load(weights_only=True)`` + ``CAMAT.load_state_dict``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from isolated import run_isolated


def _rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(windows: int, side: int, folder: Path) -> dict:
    import torch

    from geocamat.camat import CAMAT

    reg = CAMAT(source="cached")
    reg._cache = torch.empty(windows, side, side, dtype=torch.float16).uniform_()  # no float32 temporary
    reg._seen = torch.ones(windows, dtype=torch.bool)
    base = _rss_mib()
    path = folder / f"camat_cache_{windows}.ckpt"
    start = time.perf_counter()
    torch.save({"geocamat": {"regulariser": reg.state_dict()}}, path)
    save_s = time.perf_counter() - start
    after_save = _rss_mib()
    size = path.stat().st_size
    back = CAMAT(source="cached")
    start = time.perf_counter()
    back.load_state_dict(torch.load(path, weights_only=True)["geocamat"]["regulariser"])
    load_s = time.perf_counter() - start
    equal = bool(torch.equal(back._cache, reg._cache))
    path.unlink()
    return {"windows": windows, "map": side, "bytes": size, "bytes_per_window": size / windows,
            "save_s": save_s, "load_s": load_s, "cache_mib": reg._cache.numel() * 2 / 2**20,
            "extra_rss_mib_save": after_save - base, "extra_rss_mib_total": _rss_mib() - base, "equal": equal}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--map", type=int, default=8)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.windows[0], args.map, Path(args.dir))))
        return
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.windows:
        rows.append(run_isolated(__file__, "--one", "--windows", str(n), "--map", str(args.map), "--dir", args.dir,
                                 env={"OMP_NUM_THREADS": "1"}))
    print("| windows | map | cache MiB | checkpoint bytes/window | save s | load s | extra peak RSS MiB | equal |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['windows']:,} | {r['map']}x{r['map']} | {r['cache_mib']:.1f} | {r['bytes_per_window']:.1f} | "
              f"{r['save_s']:.2f} | {r['load_s']:.2f} | {r['extra_rss_mib_total']:.0f} | {r['equal']} |")


if __name__ == "__main__":
    main()
