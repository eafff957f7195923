"""What limits the NC sample map: analyses of the maps saved by ``nc_sweep.py --save-maps``.

For the odd (validation) blocks of the 4x4 checkerboard, against strata.tif in the labels' frame (the maps
are saved already shifted): OA of each saved map, its accuracy on the training blocks (how well the model fits
its own training labels), seed ensembles per setting and the ensemble of every map, per-block OA, and two
prior corrections (matching the training blocks' class shares, which uses no validation label, and the best
per-class logit bias found on the validation blocks themselves: an upper bound, not a method). With
``--gbm`` (needs scikit-learn, not a project dependency) it also trains a per-pixel gradient-boosting model
on multi-scale box means and standard deviations of the bands (training blocks only) and scores it alone
and averaged with the maps.

    python bench/nc_maps.py --maps /tmp/res/maps* --out bench/results/nc_maps.json [--gbm]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geocamat.data.labels import grid_of_dataset, labels_on_grid  # noqa: E402
from geocamat.data.registration import in_label_frame  # noqa: E402
from geocamat.data.splits import checkerboard  # noqa: E402
from geocamat.data.stack import open_stack  # noqa: E402


def load_scene(work: Path):
    """(image (C, H, W) float32, reference codes (H, W), valid (H, W), class ids)."""
    import rasterio

    stack = open_stack([str(ROOT / "samples/nc_landsat/lsat7_2000_*.tif")], work)
    labels = labels_on_grid(ROOT / "samples/nc_landsat/strata.tif", grid_of_dataset(stack.dataset()), work)
    with rasterio.open(labels.path) as src:
        ref = src.read(1)
    with rasterio.open(stack.paths[0]) as src:
        img = src.read().astype("float32")
    return img, ref, np.asarray(stack.valid_mask(img)), np.array(labels.class_ids)


def load_maps(folders: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """{setting label: {seed key: (K, H, W) probabilities}} from nc_sweep's maps_*.npz files."""
    out = {}
    for folder in folders:
        index = json.loads((Path(folder) / "maps_index.json").read_text())
        for entry in index:
            s = {k: v for k, v in entry["setting"].items() if not k.startswith("_")}
            data = np.load(Path(folder) / entry["file"])
            out[f"{Path(folder).name}:{json.dumps(s, sort_keys=True)}"] = {
                k: data[k].astype("float32") / 255 for k in data.files}
    return out


def gbm_probabilities(img: np.ndarray, valid: np.ndarray, ref: np.ndarray, ids: np.ndarray, train: np.ndarray,
                      seed: int = 0, class_weight: str | None = None) -> np.ndarray:
    """Per-pixel HistGradientBoosting on box means (3-129 px) and standard deviations of the bands plus four
    normalised differences, trained on the training-block pixels; (K, H, W) in the labels' frame.
    ``class_weight="balanced"`` weights every class's pixels equally in total."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = torch.from_numpy(np.where(valid, img, 0.0).astype("float32"))
    feats = [x]
    for k in (3, 5, 9, 17, 33, 65, 129):
        mean = F.avg_pool2d(F.pad(x[None], [k // 2] * 4, mode="reflect"), k, stride=1)[0]
        feats.append(mean)
        if k in (5, 9, 17, 33, 65):
            sq = F.avg_pool2d(F.pad((x ** 2)[None], [k // 2] * 4, mode="reflect"), k, stride=1)[0]
            feats.append((sq - mean ** 2).clamp_min(0).sqrt())

    def nd(a, b):
        return (x[a] - x[b]) / (x[a] + x[b]).abs().clamp_min(1e-6)

    feats.append(torch.stack([nd(3, 2), nd(3, 4), nd(4, 5), nd(1, 3)]))
    table = torch.cat(feats).numpy().reshape(-1, ref.size).T
    target = np.searchsorted(ids, ref.reshape(-1))
    rows = train.reshape(-1)
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, l2_regularization=1.0, random_state=seed,
                                           class_weight=class_weight)
    model.fit(table[rows], target[rows])
    proba = np.zeros((len(ids), ref.size), dtype="float32")
    proba[np.searchsorted(ids, ids[model.classes_])] = model.predict_proba(table).T
    proba = proba.reshape(len(ids), *ref.shape)
    moved = in_label_frame(proba, (1, 1), np.nan)  # into the labels' frame, like the saved maps
    return np.where(np.isnan(moved), proba, moved)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--maps", nargs="+", required=True, help="folders written by nc_sweep.py --save-maps")
    p.add_argument("--out", default="nc_maps.json")
    p.add_argument("--work", default="/tmp/nc_maps")
    p.add_argument("--gbm", action="store_true", help="also the gradient-boosting model (needs scikit-learn)")
    args = p.parse_args()
    img, ref, valid, ids = load_scene(Path(args.work))
    parity = checkerboard(ref.shape, 4, "odd") == 1
    val, train = parity & (ref >= 0) & valid, ~parity & (ref >= 0) & valid

    def oa(prob, mask=val, bias=None):
        logp = np.log(prob + 1e-3) + (0 if bias is None else bias[:, None, None])
        return round(float((ids[logp.argmax(0)] == ref)[mask].mean()), 4)

    settings = load_maps(args.maps)
    result = {"settings": [], "maps": sum(len(v) for v in settings.values())}
    every = []
    for name, runs in settings.items():
        maps = list(runs.values())
        every += maps
        row = {"setting": name, "seeds": {k: oa(m) for k, m in runs.items()},
               "train_blocks": {k: oa(m, train) for k, m in runs.items()}}
        row["mean"] = round(float(np.mean(list(row["seeds"].values()))), 4)
        if len(maps) > 1:
            row["ensemble"] = oa(sum(maps) / len(maps))
        result["settings"].append(row)
        print(json.dumps({k: row[k] for k in ("setting", "mean", "ensemble") if k in row}), flush=True)
    everything = sum(every) / len(every)
    result["ensemble_of_all"] = oa(everything)
    pred = ids[everything.argmax(0)]
    h, w = ref.shape
    result["blocks"] = [[{"validation": bool((bi + bj) % 2), "oa": round(float((pred == ref)[
        slice(bi * h // 4, (bi + 1) * h // 4), slice(bj * w // 4, (bj + 1) * w // 4)][
        ((ref >= 0) & valid)[bi * h // 4:(bi + 1) * h // 4, bj * w // 4:(bj + 1) * w // 4]].mean()), 3)}
        for bj in range(4)] for bi in range(4)]
    first = every[0]
    prior = np.bincount(np.searchsorted(ids, ref[train]), minlength=len(ids)) / train.sum()
    bias = np.zeros(len(ids))
    for _ in range(200):  # match the scene's predicted class shares to the training blocks' label shares
        shares = np.bincount((np.log(first + 1e-3) + bias[:, None, None]).argmax(0)[valid], minlength=len(ids))
        bias += 0.5 * (np.log(prior + 1e-4) - np.log(shares / valid.sum() + 1e-4))
    oracle = np.zeros(len(ids))
    for _ in range(3):  # coordinate search of a per-class bias on the validation blocks (an upper bound)
        for c in range(len(ids)):
            best = (oa(first, bias=oracle), oracle[c])
            for d in np.linspace(-1.5, 1.5, 13):
                trial = oracle.copy()
                trial[c] = d
                if (s := oa(first, bias=trial)) > best[0]:
                    best = (s, d)
            oracle[c] = best[1]
    result["prior"] = {"map": oa(first), "matched_to_training_shares": oa(first, bias=bias),
                       "best_bias_on_validation": oa(first, bias=oracle)}
    print(json.dumps({k: result[k] for k in ("maps", "ensemble_of_all", "prior")}), flush=True)
    if args.gbm:
        g = gbm_probabilities(img, valid, ref, ids, train)
        result["gbm"] = {"alone": oa(g), "alone_train_blocks": oa(g, train),
                         "with_first_map": {str(wt): oa((1 - wt) * first + wt * g) for wt in (0.15, 0.25, 0.35)},
                         "with_all_maps": {str(wt): oa((1 - wt) * everything + wt * g) for wt in (0.15, 0.25, 0.35)}}
        print(json.dumps(result["gbm"]), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
