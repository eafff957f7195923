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
from geocamat.tasks.landuse.cutmix import cutmix  # noqa: E402


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


def context_stack(stack, sizes, path: Path) -> Path:
    """Write the scene's bands followed by their means over ``size`` x ``size`` windows (valid pixels only)."""
    import rasterio

    with rasterio.open(stack.paths[0]) as src:
        img, profile = torch.from_numpy(src.read().astype("float32")), src.profile
    valid = stack.valid_mask(img).float()
    x = torch.where(valid.bool(), img, torch.zeros(()))
    out = [img]
    for k in sizes:
        pad = [k // 2] * 4
        num = F.avg_pool2d(F.pad(x[None], pad), k, stride=1)[0]
        den = F.avg_pool2d(F.pad(valid[None, None], pad), k, stride=1)[0]
        out.append(torch.where(valid.bool(), num / den.clamp_min(1e-6), img))
    arr = torch.cat(out).numpy()
    profile.update(driver="GTiff", count=arr.shape[0], dtype="float32")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
    return path


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


def make_loss(setting: dict, weight):
    """Cross-entropy with optional class weights, focal term and label smoothing (setting "ls", default 0.05)."""
    ls, gamma = setting.get("ls", 0.05), setting.get("focal", 0.0)

    def loss(logits, target):
        if not gamma:
            return F.cross_entropy(logits, target, weight=weight, ignore_index=-1, label_smoothing=ls)
        ce = F.cross_entropy(logits, target, weight=weight, ignore_index=-1, label_smoothing=ls, reduction="none")
        logp = logits.log_softmax(1)
        pt = logp.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1).exp()
        keep = target != -1
        w = (1 - pt).pow(gamma) * keep
        if weight is not None:
            denom = (weight[target.clamp_min(0)] * keep).sum().clamp_min(1e-8)
        else:
            denom = keep.sum().clamp_min(1)
        return (w * ce).sum() / denom

    return loss


class Averager:
    """Average of a model's states over training (float tensors; integer buffers copied).

    ``decay``: exponential moving average with bias correction (sum of d^(n-i) w_i / sum of d^(n-i)), so no
    weight stays on the initial state; ``None``: equal-weight average of the states seen (SWA).
    """

    def __init__(self, model, decay: float | None = None) -> None:
        import copy

        self.model = copy.deepcopy(model)
        self.decay, self.n, self.norm = decay, 0, 0.0

    @torch.no_grad()
    def update(self, model) -> None:
        d = 1.0 if self.decay is None else self.decay
        new_norm = d * self.norm + 1.0
        a = 1.0 / new_norm  # weight of the new state in the normalised average
        for v, w in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if v.dtype.is_floating_point:
                v.mul_(1 - a).add_(w, alpha=a)
            else:
                v.copy_(w)
        self.n, self.norm = self.n + 1, new_norm


@torch.no_grad()
def bn_update(model, x_all, bs: int = 256) -> None:
    """Recompute BatchNorm running statistics over the training tiles (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(x_all), bs):
        full_logits(model, x_all[i:i + bs])
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()


@torch.no_grad()
def predict_map(model, xn, k: int, tile: int, fp: float, tta: bool, window: bool = True) -> dict:
    """Blended per-pixel class probabilities of the whole scene: {"dense": (K, H, W)[, "window": ...]}.

    ``tile``/``fp`` are the inference window and its footprint (they may differ from training: a fully
    convolutional model maps larger windows, giving each pixel more real context)."""
    model.eval()
    device = xn.device
    h, w = xn.shape[-2:]
    sigma = max(fp * tile / 2, 0.5)
    g = torch.exp(-0.5 * ((torch.arange(tile, device=device) - (tile - 1) / 2) / sigma) ** 2)
    gauss = g[:, None] * g[None, :]
    hann1 = torch.sin(math.pi * (torch.arange(tile, device=device) + 0.5) / tile) ** 2
    hann = hann1[:, None] * hann1[None, :]
    st = max(1, int(fp * tile) // 2) if fp < 1 else max(1, tile // 4)
    ys = list(range(0, h - tile + 1, st)) + [h - tile]
    xs = list(range(0, w - tile + 1, st)) + [w - tile]
    coords = [(y, x) for y in sorted(set(ys)) for x in sorted(set(xs))]
    modes = ("dense", "window") if window else ("dense",)
    acc = {m: torch.zeros(k, h, w, device=device) for m in modes}
    weight = gauss if fp < 1 else hann
    from geocamat.camat.geometry import dihedral_inverse

    for b in range(0, len(coords), 1024):
        cs = coords[b:b + 1024]
        batch = torch.stack([xn[:, y:y + tile, x:x + tile] for y, x in cs])
        dense, logits = full_logits(model, batch)
        dense = dense.softmax(1)
        win = logits.softmax(1)
        if tta:
            for t in range(1, 8):
                d2, l2 = full_logits(model, dihedral(batch, t))
                dense += dihedral_inverse(d2.softmax(1), t)
                win += l2.softmax(1)
            dense, win = dense / 8, win / 8
        for (y, x), d, q in zip(cs, dense, win, strict=True):
            acc["dense"][:, y:y + tile, x:x + tile] += d * weight
            if window:
                acc["window"][:, y:y + tile, x:x + tile] += q[:, None, None] * weight
    return acc


def run(setting: dict, device: str, work: Path, seed: int) -> dict:
    import rasterio

    torch.manual_seed(seed)
    tile, fp = setting["tile"], setting["footprint"]
    stack = open_stack([str(ROOT / "samples/nc_landsat/lsat7_2000_*.tif")], work)
    if setting.get("ctx"):  # the bands plus their box means over large windows, as extra input bands
        stack = open_stack([str(context_stack(stack, setting["ctx"], work / f"ctx_{seed}.tif"))], work)
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
    cw = None
    if setting.get("cb"):  # class-balanced weights: pixel frequency ** -cb, mean 1 over the classes present
        counts = torch.bincount(m_all[m_all >= 0].flatten(), minlength=k).float()
        cw = torch.where(counts > 0, counts.clamp_min(1) ** -setting["cb"], torch.zeros(()))
        cw = (cw / cw[counts > 0].mean()).to(device)
    ce = make_loss(setting, cw)
    epochs, bs = setting["epochs"], 64
    opt = torch.optim.AdamW(model.parameters(), setting.get("lr", 2e-3), weight_decay=setting.get("wd", 1e-4))
    steps = math.ceil(len(x_all) / bs) * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, setting.get("lr", 2e-3), total_steps=steps)
    reg = build_regulariser(setting["reg"], **(setting.get("camat", {}) if setting["reg"] == "camat" else {}))
    emas = {f"ema{d}": Averager(model, d) for d in setting.get("ema", [])}
    swa_frac = setting.get("swa", 0)
    swa = Averager(model) if swa_frac else None
    swa_from = epochs - max(1, round(swa_frac * epochs)) if swa_frac else epochs
    t0 = time.perf_counter()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x_all), device=device)
        for i in range(0, len(x_all), bs):
            idx = perm[i:i + bs]
            turns = torch.randint(0, 8, (len(idx),), device=device)
            if setting.get("aug") == "none":  # no flips/turns: the scene's orientation (sun, label offset) is kept
                turns = torch.zeros_like(turns)
            x = dihedral(x_all[idx], turns)
            if setting.get("jitter"):  # per-sample, per-band gain and offset (in normalised units)
                j = setting["jitter"]
                x = x * (1 + j * torch.randn(len(idx), x.shape[1], 1, 1, device=device)) + j * torch.randn(
                    len(idx), x.shape[1], 1, 1, device=device)
            y = y_all[idx]
            m_batch = dihedral(m_all[idx], turns)
            lam, y2 = 1.0, y
            if setting.get("cutmix") and torch.rand(()) < setting["cutmix"]:
                x, m_batch, y2, lam = cutmix(x, m_batch, y, fp)
            clean = x
            x = reg(x, y, model=model, epoch=ep, max_epochs=epochs)
            if pixel:
                m = m_batch.masked_fill((x != clean).any(dim=1), -1)
                up, logits = full_logits(model, x)
                loss = lam * ce(logits, y) + (1 - lam) * ce(logits, y2) + pixel * ce(up, m)
            else:
                loss = ce(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for e in emas.values():
                e.update(model)
            if swa is not None and ep >= swa_from and setting.get("swa_every", "step") == "step":
                swa.update(model)
        if swa is not None and ep >= swa_from and setting.get("swa_every", "step") == "epoch":
            swa.update(model)
    train_s = time.perf_counter() - t0
    variants = {"": model, **{"_" + n: e.model for n, e in emas.items()}}
    if swa is not None:
        variants["_swa"] = swa.model
    t1 = time.perf_counter()
    if setting.get("bn_update"):  # True: recompute the averaged models' BN statistics; "both": keep both
        import copy

        for n, v in list(variants.items()):
            if n:
                if setting["bn_update"] == "both":
                    v = variants[n + "_bn"] = copy.deepcopy(v)
                bn_update(v, x_all)
    avg_s = time.perf_counter() - t1
    model.eval()
    with rasterio.open(stack.paths[0]) as src:
        img = torch.from_numpy(src.read().astype("float32"))
    if setting.get("nd"):
        img = with_differences(img[None])[0]
    valid = stack.valid_mask(img)
    xn = normalise(img[None], mean, std)[0].to(device)
    t2 = time.perf_counter()
    acc = {}
    for n, v in variants.items():
        map_tile = setting.get("map_tile", tile)
        map_fp = setting.get("map_fp", fp)
        for m, a in predict_map(v, xn, k, map_tile, map_fp, setting.get("tta", False),
                                window=not n and map_tile == tile).items():
            acc[m + n] = a
    map_s = time.perf_counter() - t2
    my, mx = setting.get("map_shift", (dy, dx))
    if my or mx:  # the map back into the labels' frame: S[i, j] = P[i + dy, j + dx] (edges: no change)
        acc = {m: shift_map(a, my, mx) for m, a in acc.items()}
    out = score(acc, reference, valid.numpy(), setting.get("parity", "odd"), setting.get("post", POSTS))
    return {"setting": setting, "seed": seed, "tiles": len(tr), "train_s": round(train_s, 1),
            "avg_s": round(avg_s, 1), "map_s": round(map_s, 1), **out,
            "_acc": {m: a.cpu() for m, a in acc.items()}, "_labels": reference, "_valid": valid.numpy()}


POSTS = ["mode3", "mode5", "gauss0.7", "gauss1", "gauss1.5"]


def mode_filter(pred_idx: torch.Tensor, k: int, size: int) -> torch.Tensor:
    """Majority of a size x size window on an index map (ties go to the centre's class, then the lower index)."""
    onehot = F.one_hot(pred_idx.long(), k).permute(2, 0, 1).float()[None]
    counts = F.avg_pool2d(F.pad(onehot, [size // 2] * 4, mode="replicate"), size, stride=1)[0] * size * size
    counts = counts + 0.5 * onehot[0]
    return counts.argmax(0)


def gauss_smooth(prob: torch.Tensor, sigma: float) -> torch.Tensor:
    """(K, H, W) probabilities convolved with a separable Gaussian (reflect padding)."""
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=prob.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    x = F.pad(prob[:, None], [r, r, r, r], mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1))
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return x[:, 0]


def post_process(a: torch.Tensor, post: str) -> torch.Tensor:
    """Class index map of accumulated probabilities after a post-processing step ("", modeN, gaussS)."""
    a = a.float().cpu()
    p = a / a.sum(0, keepdim=True).clamp_min(1e-8)
    if not post:
        return p.argmax(0)
    if post.startswith("mode"):
        return mode_filter(p.argmax(0), p.shape[0], int(post[4:]))
    if post.startswith("gauss"):
        return gauss_smooth(p, float(post[5:])).argmax(0)
    raise ValueError(post)


def score(acc: dict, labels, valid: np.ndarray, parity: str, posts=()) -> dict:
    """OA/kappa of each accumulated probability map on the validation blocks (dense maps: also post-processed,
    and OA on edge pixels (a different reference class within the 3x3 neighbourhood) vs interior pixels)."""
    import rasterio

    ref = rasterio.open(labels.path).read(1)
    ok = (checkerboard(ref.shape, 4, parity) == 1) & (ref >= 0) & valid
    r = np.where(ref >= 0, ref, -9999)
    rt = torch.from_numpy(r.astype("float32"))[None, None]
    hi = F.max_pool2d(F.pad(rt, [1] * 4, mode="replicate"), 3, stride=1)
    lo = -F.max_pool2d(F.pad(-rt, [1] * 4, mode="replicate"), 3, stride=1)
    edge = (hi != lo)[0, 0].numpy()
    ids = np.array(labels.class_ids)
    out = {}
    for mode, a in acc.items():
        for post in [""] + (list(posts) if mode.startswith("dense") else []):
            pred = ids[post_process(a, post).numpy()]
            cm = confusion_matrix(ref[ok], pred[ok], labels.class_ids)
            s = summarise(cm, labels.class_ids)
            row = {"oa": round(s["overall_accuracy"], 4), "kappa": round(s["kappa"], 4)}
            if mode.startswith("dense"):
                row["edge_oa"] = round(float((pred == ref)[ok & edge].mean()), 4)
                row["int_oa"] = round(float((pred == ref)[ok & ~edge].mean()), 4)
            if mode == "dense" and not post:
                row["cm"] = cm.tolist()
            out[mode + ("+" + post if post else "")] = row
    return out


def brief(r: dict) -> str:
    """One line: seed, times and the OA of every map."""
    head = {k: r[k] for k in ("seed", "train_s", "avg_s", "map_s") if k in r}
    oas = {m: v["oa"] for m, v in r.items() if isinstance(v, dict) and "oa" in v}
    return json.dumps({**head, **oas})


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
    p.add_argument("--save-maps", help="folder: each run's dense maps (probabilities as uint8) in one .npz per setting")
    p.add_argument("--save-modes", nargs="+", default=["dense_ema0.998"], help="which maps --save-maps keeps")
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
    results, saved = [], []
    for s in settings:
        setting = {**base, **s}
        runs = []
        for seed in args.seeds:
            r = run(setting, args.device, Path(args.work), seed=seed)
            runs.append(r)
            results.append({k: v for k, v in r.items() if not k.startswith("_")})
            print(brief(results[-1]), s, flush=True)
            Path(args.out).write_text(json.dumps(results, indent=1))
        if args.save_maps:
            Path(args.save_maps).mkdir(parents=True, exist_ok=True)
            arrays = {}
            for r in runs:
                for m in args.save_modes:
                    if m in r["_acc"]:
                        a = r["_acc"][m]
                        q = (a / a.sum(0, keepdim=True).clamp_min(1e-8) * 255).round().clamp(0, 255)
                        arrays[f"{m}_s{r['seed']}"] = q.to(torch.uint8).numpy()
            np.savez_compressed(Path(args.save_maps) / f"maps_{len(saved):02d}.npz", **arrays)
            saved.append({"file": f"maps_{len(saved):02d}.npz", "setting": setting})
            (Path(args.save_maps) / "maps_index.json").write_text(json.dumps(saved, indent=1))
        if len(runs) > 1:  # the ensemble: probabilities averaged over the seeds
            acc = {m: sum(r["_acc"][m] / r["_acc"][m].sum(0, keepdim=True).clamp_min(1e-8) for r in runs)
                   for m in runs[0]["_acc"]}
            ens = {"setting": setting, "seed": "ensemble", **score(acc, runs[0]["_labels"], runs[0]["_valid"],
                                                                   setting.get("parity", "odd"),
                                                                   setting.get("post", POSTS))}
            results.append(ens)
            print(brief(ens), s, flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
