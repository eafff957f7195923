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
from geocamat.data.registration import in_label_frame  # noqa: E402
from geocamat.data.splits import checkerboard  # noqa: E402
from geocamat.data.stack import open_stack  # noqa: E402
from geocamat.data.tiles import TileOptions, band_statistics, extract_tiles, normalise  # noqa: E402
from geocamat.metrics import confusion_matrix, summarise  # noqa: E402
from geocamat.models.camnet import CamNet  # noqa: E402


class SpectralSkip(torch.nn.Module):
    """CamNet plus a per-pixel MLP of the bands whose logits are added to the upsampled CAM logits."""

    def __init__(self, net, bands: int, classes: int, hidden: int) -> None:
        super().__init__()
        self.net, self.head = net, net.head
        self.skip = torch.nn.Sequential(torch.nn.Conv2d(bands, hidden, 1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(hidden, classes, 1))

    def forward_features(self, x):
        return self.net.forward_features(x)

    def forward(self, x):
        return full_logits(self, x)[1]


def full_logits(model, x):
    """Per-pixel logits at the tile size and tile logits (their mean)."""
    if isinstance(model, SpectralSkip):
        dense, _ = model.net.dense_logits(x)
        up = F.interpolate(dense, size=x.shape[-2:], mode="bilinear", align_corners=False) + model.skip(x)
        return up, up.mean(dim=(2, 3))
    dense, logits = model.dense_logits(x)
    return F.interpolate(dense, size=x.shape[-2:], mode="bilinear", align_corners=False), logits


def shifted_labels(labels, dy: int, dx: int, path: Path):
    """A copy of the label raster moved by (dy, dx) pixels (uncovered border: unlabelled)."""
    import dataclasses

    import rasterio

    with rasterio.open(labels.path) as src:
        a, profile = src.read(1), src.profile
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(in_label_frame(a, (-dy, -dx), -1), 1)
    return dataclasses.replace(labels, path=path)


def shift_map(a: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(K, H, W) map read at (i + dy, j + dx); rows/columns without a source keep their own value."""
    own = a.cpu().numpy()
    moved = in_label_frame(own, (dy, dx), np.nan)
    return torch.from_numpy(np.where(np.isnan(moved), own, moved))


def with_differences(x: torch.Tensor) -> torch.Tensor:
    """Append the normalised difference (a - b) / (a + b) of every band pair to (N, C, H, W) raw values."""
    c = x.shape[1]
    nds = [(x[:, a] - x[:, b]) / (x[:, a] + x[:, b]).abs().clamp_min(1e-6) for a in range(c) for b in range(a + 1, c)]
    return torch.cat([x, torch.stack(nds, dim=1)], dim=1)


def run(setting: dict, device: str, work: Path, seed: int) -> dict:
    import rasterio

    torch.manual_seed(seed)
    tile, fp = setting["tile"], setting["footprint"]
    stack = open_stack([str(ROOT / "samples/nc_landsat/lsat7_2000_*.tif")], work)
    grid = grid_of_dataset(stack.dataset())
    labels = labels_on_grid(ROOT / "samples/nc_landsat/strata.tif", grid, work)
    reference = labels
    dy, dx = setting.get("label_shift", (0, 0))
    if dy or dx:  # train on labels moved by (dy, dx) px: label'[i, j] = label[i - dy, j - dx]
        labels = shifted_labels(labels, dy, dx, work / "shifted_labels.tif")
    tr, _ = extract_tiles(stack, labels, TileOptions(tile_size=tile, stride=setting["stride"],
                                                      purity=setting["purity"], footprint=fp, seed=seed,
                                                      val_parity=setting.get("parity", "odd")))
    if setting.get("nd"):
        tr.images = with_differences(tr.images)
    mean, std = band_statistics(tr)
    x_all, y_all = normalise(tr.images, mean, std).to(device), tr.labels.to(device)
    m_all = tr.masks.long().to(device)
    pixel = setting.get("pixel", 0.0)
    k = len(labels.class_ids)
    if setting.get("min_cells"):  # keep a finer last feature map (e.g. tile // 2 cells: output stride 2)
        import geocamat.models.camnet as camnet_module

        original = camnet_module.plan_strides
        camnet_module.plan_strides = lambda t, **kw: original(t, min_cells=setting["min_cells"])
        try:
            model = CamNet(tr.images.shape[1], k, tile, setting["arch"]).to(device)
        finally:
            camnet_module.plan_strides = original
    else:
        model = CamNet(tr.images.shape[1], k, tile, setting["arch"]).to(device)
    if setting.get("skip"):  # a per-pixel spectral term added to the upsampled CAM logits
        model = SpectralSkip(model, tr.images.shape[1], k, setting["skip"]).to(device)
    epochs, bs = setting["epochs"], 64
    opt = torch.optim.AdamW(model.parameters(), setting.get("lr", 2e-3), weight_decay=setting.get("wd", 1e-4))
    steps = math.ceil(len(x_all) / bs) * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, setting.get("lr", 2e-3), total_steps=steps)
    reg = build_regulariser(setting["reg"], **(setting.get("camat", {}) if setting["reg"] == "camat" else {}))
    t0 = time.perf_counter()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x_all), device=device)
        for i in range(0, len(x_all), bs):
            idx = perm[i:i + bs]
            turns = torch.randint(0, 8, (len(idx),), device=device)
            x = dihedral(x_all[idx], turns)
            if setting.get("jitter"):  # per-sample, per-band gain and offset (in normalised units)
                j = setting["jitter"]
                x = x * (1 + j * torch.randn(len(idx), x.shape[1], 1, 1, device=device)) + j * torch.randn(
                    len(idx), x.shape[1], 1, 1, device=device)
            y = y_all[idx]
            clean = x
            x = reg(x, y, model=model, epoch=ep, max_epochs=epochs)
            if pixel:
                m = dihedral(m_all[idx], turns).masked_fill((x != clean).any(dim=1), -1)
                up, logits = full_logits(model, x)
                loss = F.cross_entropy(logits, y, label_smoothing=0.05) + pixel * F.cross_entropy(
                    up, m, ignore_index=-1, label_smoothing=0.05)
            else:
                loss = F.cross_entropy(model(x), y, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.perf_counter() - t0
    model.eval()
    with rasterio.open(stack.paths[0]) as src:
        img = torch.from_numpy(src.read().astype("float32"))
    if setting.get("nd"):
        img = with_differences(img[None])[0]
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
            dense, logits = full_logits(model, batch)
            dense = dense.softmax(1)
            win = logits.softmax(1)
            for (y, x), d, q in zip(cs, dense, win, strict=True):
                acc["dense"][:, y:y + tile, x:x + tile] += d * weight
                acc["window"][:, y:y + tile, x:x + tile] += q[:, None, None] * weight
    my, mx = setting.get("map_shift", (dy, dx))
    if my or mx:  # the map back into the labels' frame: S[i, j] = P[i + dy, j + dx] (edges: no change)
        acc = {m: shift_map(a, my, mx) for m, a in acc.items()}
    out = score(acc, reference, valid.numpy(), setting.get("parity", "odd"))
    return {"setting": setting, "seed": seed, "tiles": len(tr), "train_s": round(train_s, 1), **out,
            "_acc": {m: a.cpu() for m, a in acc.items()}, "_labels": labels, "_valid": valid.numpy()}


def score(acc: dict, labels, valid: np.ndarray, parity: str) -> dict:
    """OA/kappa of each accumulated probability map on the validation blocks."""
    import rasterio

    ref = rasterio.open(labels.path).read(1)
    ok = (checkerboard(ref.shape, 4, parity) == 1) & (ref >= 0) & valid
    ids = np.array(labels.class_ids)
    out = {}
    for mode, a in acc.items():
        pred = ids[a.argmax(0).cpu().numpy()]
        s = summarise(confusion_matrix(ref[ok], pred[ok], labels.class_ids), labels.class_ids)
        out[mode] = {"oa": s["overall_accuracy"], "kappa": s["kappa"]}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="nc_sweep.json")
    p.add_argument("--work", default="/tmp/nc_sweep")
    p.add_argument("--quick", action="store_true", help="one tiny setting (CPU smoke test)")
    p.add_argument("--settings", help="JSON list of settings (each merged onto the base) instead of the built-in sweep")
    p.add_argument("--base", help="JSON object merged onto the base setting")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
    if args.base:
        base.update(json.loads(args.base))
    if args.settings:
        settings = json.loads(args.settings)
    if args.quick:
        settings = [{"epochs": 1, "arch": "camnet-xs", "stride": 8}]
    results = []
    for s in settings:
        setting = {**base, **s}
        runs = []
        for seed in args.seeds:
            r = run(setting, args.device, Path(args.work), seed=seed)
            runs.append(r)
            results.append({k: v for k, v in r.items() if not k.startswith("_")})
            print(json.dumps({k: v for k, v in results[-1].items() if k != "setting"}), s, flush=True)
        if len(runs) > 1:  # the ensemble: probabilities averaged over the seeds
            acc = {m: sum(r["_acc"][m] / r["_acc"][m].sum(0, keepdim=True).clamp_min(1e-8) for r in runs)
                   for m in runs[0]["_acc"]}
            ens = {"setting": setting, "seed": "ensemble", **score(acc, runs[0]["_labels"], runs[0]["_valid"],
                                                                   setting.get("parity", "odd"))}
            results.append(ens)
            print(json.dumps({k: v for k, v in ens.items() if k != "setting"}), s, flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
