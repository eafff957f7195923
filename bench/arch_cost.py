"""Cost of each CamNet architecture per tile: inference (tiles/s) and a training step, measured side by side.

    python bench/arch_cost.py [--tile 16] [--bands 6] [--batch 64] [--threads 2] [--seconds 3]

Prints a table (and JSON with --json); the archs run interleaved, so machine load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from geocamat.models.camnet import ARCHS, CamNet


def _rate(fn, batch: int, seconds: float) -> float:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=16)
    ap.add_argument("--bands", type=int, default=6)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.bands, args.tile, args.tile)
    y = torch.randint(0, args.classes, (args.batch,))
    models = {a: CamNet(args.bands, args.classes, args.tile, a, "dense") for a in ARCHS}
    opts = {a: torch.optim.AdamW(m.parameters(), 1e-3) for a, m in models.items()}
    rates: dict[str, dict[str, list[float]]] = {a: {"infer": [], "train": []} for a in models}

    def infer(m):
        with torch.no_grad():
            m.eval()
            m.dense_logits(x)

    def train(a):
        m = models[a]
        m.train()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opts[a].zero_grad()
        loss.backward()
        opts[a].step()

    for _ in range(args.rounds):
        for a, m in models.items():
            rates[a]["infer"].append(_rate(lambda m=m: infer(m), args.batch, args.seconds))
            rates[a]["train"].append(_rate(lambda a=a: train(a), args.batch, args.seconds))
    result = {a: {k: round(max(v), 1) for k, v in r.items()} for a, r in rates.items()}
    for a, m in models.items():
        result[a]["params"] = sum(p.numel() for p in m.parameters())
    if args.json:
        print(json.dumps(result, indent=2))
    print(f"tile {args.tile} px, {args.bands} bands, batch {args.batch}, {args.threads} threads (best of "
          f"{args.rounds} rounds of {args.seconds} s)")
    print(f"{'arch':<10} {'params':>9} {'infer tiles/s':>14} {'train tiles/s':>14}")
    for a, r in result.items():
        print(f"{a:<10} {r['params']:>9} {r['infer']:>14} {r['train']:>14}")


if __name__ == "__main__":
    main()
