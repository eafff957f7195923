"""Sweep tile size, label footprint, architecture and regulariser on the NC Landsat sample.

Trains a tile classifier per setting (plain torch loop, same data path as `geocamat train`), maps the whole
scene with blended windows, and scores OA/kappa on the odd blocks of the 4x4 checkerboard against
strata.tif. Used to choose the defaults of samples/nc_landsat.yaml; prints one line per setting.

    python bench/nc_sweep.py --device cuda --out results.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geocamat.camat import build_regulariser  # noqa: E402
from geocamat.camat.geometry import dihedral  # noqa: E402
from geocamat.data.labels import grid_of_dataset, labels_on_grid  # noqa: E402
from geocamat.data.splits import checkerboard  # noqa: E402
from geocamat.data.stack import open_stack  # noqa: E402
from geocamat.data.tiles import TileOptions, band_statistics, extract_tiles, normalise  # noqa: E402
from geocamat.metrics import confusion_matrix, summarise  # noqa: E402
from geocamat.models.camnet import CamNet  # noqa: E402


def run(setting: dict, device: str, work: Path, seed: int) -> dict:
    import rasterio

    torch.manual_seed(seed)
    tile, fp = setting["tile"], setting["footprint"]
    stack = open_stack([str(ROOT / "samples/nc_landsat/lsat7_2000_*.tif")], work)
    grid = grid_of_dataset(stack.dataset())
    labels = labels_on_grid(ROOT / "samples/nc_landsat/strata.tif", grid, work)
    tr, _ = extract_tiles(stack, labels, TileOptions(tile_size=tile, stride=setting["stride"],
                                                      purity=setting["purity"], footprint=fp, seed=seed))
    mean, std = band_statistics(tr)
    x_all, y_all = normalise(tr.images, mean, std).to(device), tr.labels.to(device)
    k = len(labels.class_ids)
    model = CamNet(6, k, tile, setting["arch"]).to(device)
    epochs, bs = setting["epochs"], 64
    opt = torch.optim.AdamW(model.parameters(), setting.get("lr", 2e-3), weight_decay=1e-4)
    steps = math.ceil(len(x_all) / bs) * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, setting.get("lr", 2e-3), total_steps=steps)
    reg = build_regulariser(setting["reg"], **setting.get("camat", {}))
    t0 = time.perf_counter()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x_all), device=device)
        for i in range(0, len(x_all), bs):
            idx = perm[i:i + bs]
            turns = torch.randint(0, 8, (len(idx),), device=device)
            x = dihedral(x_all[idx], turns)
            y = y_all[idx]
            x = reg(x, y, model=model, epoch=ep, max_epochs=epochs)
            loss = F.cross_entropy(model(x), y, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.perf_counter() - t0
    model.eval()
    with rasterio.open(stack.paths[0]) as src:
        img = torch.from_numpy(src.read().astype("float32"))
    valid = stack.valid_mask(img)
    xn = normalise(img[None], mean, std)[0].to(device)
    h, w = valid.shape
    out = {}
    sigma = max(fp * tile / 2, 0.5)
    g = torch.exp(-0.5 * ((torch.arange(tile, device=device) - (tile - 1) / 2) / sigma) ** 2)
    gauss = g[:, None] * g[None, :]
    hann1 = torch.sin(math.pi * (torch.arange(tile, device=device) + 0.5) / tile) ** 2
    hann = hann1[:, None] * hann1[None, :]
    st = max(1, int(fp * tile) // 2) if fp < 1 else max(1, tile // 4)
    ys = list(range(0, h - tile + 1, st)) + [h - tile]
    xs = list(range(0, w - tile + 1, st)) + [w - tile]
    coords = [(y, x) for y in sorted(set(ys)) for x in sorted(set(xs))]
    acc = {m: torch.zeros(k, h, w, device=device) for m in ("dense", "window")}
    weight = gauss if fp < 1 else hann
    with torch.no_grad():
        for b in range(0, len(coords), 1024):
            cs = coords[b:b + 1024]
            batch = torch.stack([xn[:, y:y + tile, x:x + tile] for y, x in cs])
            dense, logits = model.dense_logits(batch)
            dense = F.interpolate(dense, size=(tile, tile), mode="bilinear", align_corners=False).softmax(1)
            win = logits.softmax(1)
            for (y, x), d, q in zip(cs, dense, win, strict=True):
                acc["dense"][:, y:y + tile, x:x + tile] += d * weight
                acc["window"][:, y:y + tile, x:x + tile] += q[:, None, None] * weight
    ref = rasterio.open(labels.path).read(1)
    split = checkerboard(ref.shape, 4)
    ok = (split == 1) & (ref >= 0) & valid.numpy()
    ids = np.array(labels.class_ids)
    for mode, a in acc.items():
        pred = ids[a.argmax(0).cpu().numpy()]
        s = summarise(confusion_matrix(ref[ok], pred[ok], labels.class_ids), labels.class_ids)
        out[mode] = {"oa": s["overall_accuracy"], "kappa": s["kappa"]}
    return {"setting": setting, "seed": seed, "tiles": len(tr), "train_s": round(train_s, 1), **out}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="nc_sweep.json")
    p.add_argument("--work", default="/tmp/nc_sweep")
    p.add_argument("--quick", action="store_true", help="one tiny setting (CPU smoke test)")
    args = p.parse_args()
    base = {"tile": 16, "footprint": 1.0, "stride": 4, "purity": 0.5, "arch": "camnet-s", "epochs": 30,
            "reg": "none"}
    camat = {"reg": "camat", "camat": {"tau": 0.7, "p": 0.5, "warmup": 0.2}}
    settings = [
        {},
        {"footprint": 0.25},
        {"footprint": 0.25, **camat},
        {"footprint": 0.125, "stride": 2},
        {"footprint": 0.125, "stride": 2, **camat},
        {"tile": 24, "footprint": 0.167, "stride": 3},
        {"tile": 32, "footprint": 0.125, "stride": 4},
        {"tile": 32, "footprint": 0.125, "stride": 4, **camat},
        {"footprint": 0.25, "arch": "resnet18"},
        {"footprint": 0.25, "arch": "camnet-xs"},
        {"footprint": 0.25, "arch": "camnet-xs", "epochs": 12},
        {"footprint": 0.25, "arch": "camnet-xs", "epochs": 12, **camat},
        {"footprint": 0.125, "stride": 2, "arch": "camnet-xs", "epochs": 12},
        {"footprint": 0.125, "stride": 2, "arch": "camnet-xs", "epochs": 12, **camat},
    ]
    if args.quick:
        settings = [{"epochs": 1, "arch": "camnet-xs", "stride": 8}]
    results = []
    for s in settings:
        setting = {**base, **s}
        r = run(setting, args.device, Path(args.work), seed=0)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "setting"}), {k: v for k, v in s.items()}, flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
