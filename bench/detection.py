"""Benchmark: detection trained with none / object-aware Random Erasing / CAMAT / CAMAT from a transferred backbone.

Trains on the two YELL crops of the DeepForest NEON data (VOC boxes; a right-hand strip of each crop is the
validation split) and scores images never trained on, OSBS_029 (61 trees) and SOAP_061 (37 trees, Dead/Alive,
scored class-agnostic), each in five versions:

- ``clean``;
- ``mean``: one rectangle of 25-40% of each tree box filled with the band mean (a fill every regulariser
  trains with: "seen");
- ``noise``: the same rectangles filled with Gaussian noise of the band mean/std (never used in training);
- ``texture``: the same rectangles filled with the image itself shifted by half its size (a patch of the
  scene from elsewhere; never used in training);
- ``decoys``: the mean-filled rectangles pasted at random places instead, scored against the clean labels (a
  model that learned "a flat patch is a tree" loses precision).

Per test: mAP@0.5, mAP@[.5:.95] and precision / recall at IoU 0.4 (DeepForest's convention) at the model's
own score threshold (the validation split's best F1). Rows (``--rows``, ``label=regulariser[:key=value,...]``):

- ``none``; ``random-erasing`` (one rectangle of 2-40% per box, p 0.5, mean fill);
- ``camat``: the detection default (per-object CAM inside its box, tau 0.7, p 0.5, one negative occluder per
  occluded object outside the boxes), except that its mixed fill draws from ``mean white blur`` only, so that
  ``noise`` and ``texture`` stay unseen;
- ``camat-init``: the same, started from the backbone of a scene model trained here on RSSCN7 (``--init-from``
  PATH, or built by the bench when not given: ``--scene-*`` options); ``none-init``: ``none`` from that start.

Seeds are the outer loop (a time limit cuts whole seeds, the comparison stays paired); step-time ratios are
taken per seed against the ``none`` run of the same seed, so they are measured side by side.

CPU quick mode (2 shared cores, about 15-20 min):
    nice python bench/detection.py --quick --out bench/results_detection_quick.json
GPU (one H100; see bench/gpu_detection.sh, which writes under $OUT):
    python bench/detection.py --device cuda --out $OUT/results_detection_gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "deepforest_neon_trees"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/deepforest_neon_trees")
RSSCN7 = DATA.parent / "rsscn7"
YELL = ["2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop"]
SITES = {"osbs": ("OSBS_029.tif", "OSBS_029.xml", False), "soap": ("SOAP_061.png", "SOAP_061.xml", True)}
TESTS = ("clean", "mean", "noise", "texture", "decoys")
#: training fills of the CAMAT rows: noise and texture are kept unseen for the occlusion tests
SEEN_MIX = ["mean", "white", "blur"]
DEFAULT_ROWS = ["none=none", "random-erasing=random-erasing", f"camat=camat:camat.mix={SEEN_MIX}",
                f"camat-init=camat:camat.mix={SEEN_MIX},init_from=SCENE", "none-init=none:init_from=SCENE"]
#: per mode: training settings of every row (a row's own keys override them)
MODES = {
    "quick": {"tile_size": 256, "backbone": "tiny", "fpn_channels": 32, "epochs": 4, "max_tiles": 48,
              "batch_size": 4, "lr": 0.002, "num_workers": 0},
    "gpu": {"tile_size": 400, "backbone": "resnet10", "fpn_channels": 64, "epochs": 30, "max_tiles": None,
            "batch_size": 8, "lr": 0.002, "num_workers": 3},
}
SCENE_MODES = {
    "quick": {"arch": "resnet10", "image_size": 64, "epochs": 3, "batch_size": 32, "train_fraction": 0.5},
    "gpu": {"arch": "resnet10", "image_size": 128, "epochs": 30, "batch_size": 64, "train_fraction": 0.8},
}


def prepare(data: Path, rsscn7: Path, dest: Path, side: int = 144) -> None:
    """Copy the NEON files and a resized RSSCN7 (same images and classes, ``side`` px: the size of the GPU CAMAT
    benchmark, which the scene model's 128 px are resized from) to ``dest``, small enough to travel."""
    import shutil

    from PIL import Image

    neon = dest / "deepforest_neon_trees"
    neon.mkdir(parents=True, exist_ok=True)
    for name in [f"{n}.{ext}" for n in YELL for ext in ("png", "xml")] + [f for v in SITES.values() for f in v[:2]]:
        shutil.copy2(data / name, neon / name)
    count = 0
    for cls in sorted(p for p in rsscn7.iterdir() if p.is_dir()):
        (dest / "rsscn7" / cls.name).mkdir(parents=True, exist_ok=True)
        for img in sorted(cls.iterdir()):
            if img.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif"):
                Image.open(img).convert("RGB").resize((side, side), Image.BILINEAR).save(
                    dest / "rsscn7" / cls.name / f"{img.stem}.jpg", quality=95)
                count += 1
    print(f"prepared {dest}: NEON files and {count} RSSCN7 images at {side} px")


def occluded_copy(src: Path, labels: Path, dst: Path, fill: str = "mean", where: str = "boxes",
                  seed: int = 123) -> None:
    """Write ``src`` with one rectangle (25-40% of a box) per labelled box replaced by a fill.

    Args:
        fill: ``mean`` (band mean), ``noise`` (Gaussian with the band mean and std) or ``texture`` (the image
            shifted by half its height and width: a patch of the same scene from elsewhere).
        where: ``boxes`` (inside each tree box: occluded objects) or ``anywhere`` (the same rectangles at
            random places: decoys that a model which learned "filled patch = object" will detect).
    """
    import rasterio
    import torch
    from PIL import Image

    from geocamat.camat.detection import object_random_masks
    from geocamat.data.boxes import load_boxes
    from geocamat.data.detection_images import image_info

    (ib,), _ = load_boxes([labels], [image_info(str(src))])
    png = src.suffix.lower() == ".png"
    if png:
        arr = np.asarray(Image.open(src).convert("RGB")).transpose(2, 0, 1).copy()
    else:
        with rasterio.open(src) as s:
            arr, profile = s.read(), s.profile
    _, h, w = arr.shape
    g = torch.Generator().manual_seed(seed)
    boxes = torch.as_tensor(ib.boxes)
    if where == "anywhere":
        size = boxes[:, 2:] - boxes[:, :2]
        start = torch.rand(len(boxes), 2, generator=g) * (torch.tensor([w, h]) - size).clamp_min(0)
        boxes = torch.cat([start, start + size], dim=1)
    mask = object_random_masks((1, h, w), [boxes], p=1.0, area=(0.25, 0.4), generator=g)[0, 0].numpy()
    flat = arr.reshape(arr.shape[0], -1).astype(np.float64)
    if fill == "noise":
        rng = np.random.default_rng(seed)
        vals = rng.normal(flat.mean(1)[:, None], flat.std(1)[:, None], (arr.shape[0], int(mask.sum())))
        arr[:, mask] = np.clip(vals, 0, 255).round().astype(arr.dtype)
    elif fill == "texture":
        arr[:, mask] = np.roll(arr, (h // 2, w // 2), axis=(1, 2))[:, mask]
    else:
        arr[:, mask] = flat.mean(1).round().astype(arr.dtype)[:, None]
    if png:
        Image.fromarray(arr.transpose(1, 2, 0)).save(dst)
    else:
        with rasterio.open(dst, "w", **profile) as d:
            d.write(arr)


def make_tests(data: Path, work: Path) -> dict:
    """(site, test) -> (images, labels, class_agnostic). Altered copies keep the file name (labels match)."""
    tests = {}
    for site, (image, xml, agnostic) in SITES.items():
        tests[(site, "clean")] = ([str(data / image)], [str(data / xml)], agnostic)
        for test, fill, where in (("mean", "mean", "boxes"), ("noise", "noise", "boxes"),
                                  ("texture", "texture", "boxes"), ("decoys", "mean", "anywhere")):
            (work / f"{site}_{test}").mkdir(parents=True, exist_ok=True)
            dst = work / f"{site}_{test}" / image
            occluded_copy(data / image, data / xml, dst, fill=fill, where=where)
            tests[(site, test)] = ([str(dst)], [str(data / xml)], agnostic)
    return tests


def parse_row(spec: str) -> tuple[str, str, dict]:
    """``label=regulariser[:key=value,...]`` -> (label, regulariser, overrides); values parsed as YAML."""
    import yaml

    label, _, rest = spec.partition("=")
    reg, _, opts = rest.partition(":")
    overrides: dict = {}
    depth, start, parts = 0, 0, []
    for i, ch in enumerate(opts):  # split on commas outside brackets
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(opts[start:i])
            start = i + 1
    if opts:
        parts.append(opts[start:])
    for part in parts:
        key, _, value = part.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    return label, reg or label, overrides


def train_scene_model(args, mode: str, work: Path) -> Path:
    """A scene model on the shared RSSCN7 (its backbone starts the ``camat-init`` row)."""
    from geocamat.settings import build
    from geocamat.tasks import get_task

    scenes = get_task("scenes")
    out = work / "scene_rsscn7"
    if (out / "model.geocamat").is_file():
        return out / "model.geocamat"
    import yaml

    values = {"scenes": str(args.rsscn7), "seed": 0, "regulariser": "none", "accelerator": args.device,
              **SCENE_MODES[mode]}
    for item in args.scene_set:
        key, _, value = item.partition("=")
        values[key] = yaml.safe_load(value)
    t0 = time.perf_counter()
    m = scenes.train(build(scenes.Config, values, what="scene training"), out, overwrite=True, progress=False,
                     log=lambda _: None)
    print(f"scene model (RSSCN7, {values['arch']}, {values['epochs']} epochs): held-out OA "
          f"{m['held_out']['overall_accuracy']} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out / "model.geocamat"


def score(bundle, metrics: dict, label: str, seed: int, tests: dict, device: str) -> dict:
    """One result row: training metrics and every test's scene metrics."""
    from geocamat.tasks.detection.config import EvaluateOptions
    from geocamat.tasks.detection.evaluating import evaluate_detection

    row = {"row": label, "seed": seed, "val_map_50": metrics.get("map_50"), "val_map": metrics.get("map"),
           "step_time_s": metrics["step_time_s"], "fit_seconds": metrics["fit_seconds"],
           "steps": metrics["steps"], "train_tiles": metrics["train_tiles"],
           "occluded_pixel_fraction": metrics["occluded_pixel_fraction"], "anchor_sizes": metrics.get("anchor_sizes"),
           "ema_decay": metrics.get("ema_decay"), "score_threshold": bundle.extra.get("score_threshold")}
    for (site, test), (imgs, labs, agn) in tests.items():
        e = evaluate_detection(bundle, imgs, EvaluateOptions(reference=labs, device=device, class_agnostic=agn))
        sc = e["scene"]
        row[f"{site}_{test}"] = {"map_50": sc["map_50"], "map": sc["map"], "p40": sc["iou_40"]["precision"],
                                 "r40": sc["iou_40"]["recall"], "found": sc["found"], "labelled": sc["labelled"]}
    return row


def summarise(rows: list[dict], labels: list[str]) -> tuple[dict, str]:
    """Mean +- std over seeds per row; OSBS+SOAP = the mean of the two sites; step ratios per seed vs none."""
    def stats(values: list[float]) -> dict:
        v = [x for x in values if x is not None]
        return {"mean": statistics.mean(v) if v else float("nan"),
                "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}

    def site_mean(r: dict, test: str, key: str) -> float:
        return statistics.mean(r[f"{site}_{test}"][key] for site in SITES)

    base = {r["seed"]: r["step_time_s"] for r in rows if r["row"] == "none"}
    summary = {}
    for label in labels:
        rs = [r for r in rows if r["row"] == label]
        if not rs:
            continue
        s = {"val_map_50": stats([r["val_map_50"] for r in rs]), "step_time_s": stats([r["step_time_s"] for r in rs]),
             "step_ratio": stats([r["step_time_s"] / base[r["seed"]] for r in rs if r["seed"] in base])}
        for test in TESTS:
            for key in ("map_50", "map", "p40", "r40"):
                s[f"{test}_{key}"] = stats([site_mean(r, test, key) for r in rs])
                for site in SITES:
                    s[f"{site}_{test}_{key}"] = stats([r[f"{site}_{test}"][key] for r in rs])
        summary[label] = s

    def cell(s: dict, key: str) -> str:
        return f"{s[key]['mean']:.3f} ± {s[key]['std']:.3f}"

    cols = [("val_map_50", "val mAP50"), ("clean_map_50", "clean mAP50"), ("clean_map", "clean mAP"),
            ("clean_p40", "clean P@.4"), ("clean_r40", "clean R@.4"), ("mean_map_50", "occl. mean (seen) mAP50"),
            ("noise_map_50", "occl. noise (unseen) mAP50"), ("texture_map_50", "occl. texture (unseen) mAP50"),
            ("decoys_map_50", "decoys mAP50"), ("decoys_p40", "decoys P@.4")]
    lines = ["| row | seeds | " + " | ".join(c[1] for c in cols) + " | step s | step ratio |",
             "|" + "---|" * (len(cols) + 4)]
    for label, s in summary.items():
        ratio = s["step_ratio"]
        lines.append(f"| {label} | {s['val_map_50']['n']} | " + " | ".join(cell(s, k) for k, _ in cols)
                     + f" | {s['step_time_s']['mean']:.3f} | "
                     + (f"{ratio['mean']:.2f}x ± {ratio['std']:.2f}" if ratio["n"] else "-") + " |")
    return summary, "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="CPU quick mode (small tiles, tiny backbone, 48 steps)")
    ap.add_argument("--mode", choices=list(MODES), default=None,
                    help="settings of every row: quick (default on the CPU) or gpu (default with cuda)")
    ap.add_argument("--scene-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="settings of the bench's scene model (override the mode's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", default=DEFAULT_ROWS,
                    help="label=regulariser[:key=value,...]; init_from=SCENE means the bench's scene model")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="training settings for every row (override the mode's)")
    ap.add_argument("--init-from", default=None, help="scene (or land-use) bundle for the camat-init row "
                    "(default: train one on RSSCN7 here)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: 1 on the CPU, 8 with cuda)")
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="start no seed that would end after this many minutes, judged by the last seed's "
                    "duration (0: no limit); the summary uses the runs done")
    ap.add_argument("--data", default=str(DATA), help="folder with the DeepForest NEON files")
    ap.add_argument("--rsscn7", default=str(RSSCN7), help="RSSCN7 folder (one sub-folder per class)")
    ap.add_argument("--work", default="/tmp/geocamat_bench_detection")
    ap.add_argument("--prepare", metavar="DIR", default=None,
                    help="only copy what a GPU machine needs into DIR (the NEON files and RSSCN7 resized to "
                    "the GPU scene size as JPEG, about 25 MB) and exit; see bench/gpu_detection.sh")
    ap.add_argument("--prepare-size", type=int, default=144, help="side of the RSSCN7 copy --prepare writes")
    ap.add_argument("--out", default="bench/results_detection.json")
    args = ap.parse_args()
    data = Path(args.data)
    mode = args.mode or ("quick" if args.quick or args.device == "cpu" else "gpu")
    if args.prepare:
        prepare(data, Path(args.rsscn7), Path(args.prepare), args.prepare_size)
        return

    import torch

    torch.set_num_threads(args.threads or (1 if args.device == "cpu" else 8))
    from geocamat.bundle import Bundle
    from geocamat.settings import build
    from geocamat.tasks import get_task
    from geocamat.tasks.training import quiet_lightning

    quiet_lightning(False)
    det = get_task("detection")
    base = dict(MODES[mode])
    for item in args.set:
        import yaml

        key, _, value = item.partition("=")
        base[key] = yaml.safe_load(value)
    rows_spec = [parse_row(r) for r in args.rows]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    tests = make_tests(data, work)
    scene_bundle = None
    if any(o.get("init_from") == "SCENE" for _, _, o in rows_spec):
        scene_bundle = Path(args.init_from) if args.init_from else train_scene_model(args, mode, work)
    rows: list[dict] = []
    seed_seconds = 0.0
    for seed in args.seeds:
        elapsed = time.perf_counter() - t_all
        if args.max_minutes and rows and elapsed + seed_seconds > 60 * args.max_minutes:
            print(f"time limit: seed {seed} would end after {(elapsed + seed_seconds) / 60:.1f} min; skipped",
                  flush=True)
            continue
        t_seed = time.perf_counter()
        for label, reg, overrides in rows_spec:
            values = {**base, "images": [str(data / f"{n}.png") for n in YELL],
                      "labels": [str(data / f"{n}.xml") for n in YELL], "seed": seed, "regulariser": reg,
                      "accelerator": args.device}
            camat = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("camat.")}
            values.update({k: v for k, v in overrides.items() if not k.startswith("camat.")})
            if camat:
                values["camat"] = camat
            if values.get("init_from") == "SCENE":
                values["init_from"] = str(scene_bundle)
                values["backbone"] = None  # the scene model's own
            out = work / f"{label}_{seed}"
            m = det.train(build(det.Config, values, what="detection training"), out, overwrite=True,
                          progress=False, log=lambda _: None)
            bundle = Bundle.load(out / "model.geocamat")
            row = score(bundle, m, label, seed, tests, args.device)
            row["backbone"] = bundle.model.get("backbone")
            rows.append(row)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out + ".partial").write_text(json.dumps(rows, indent=1, default=str))
            mean50 = statistics.mean(row[f"{s}_clean"]["map_50"] for s in SITES)
            print(f"{label:15s} seed {seed}: val mAP50 {row['val_map_50'] or 0:.3f}  OSBS+SOAP mAP50 {mean50:.3f}  "
                  + "  ".join(f"{t} {statistics.mean(row[f'{s}_{t}']['map_50'] for s in SITES):.3f}"
                              for t in TESTS[1:])
                  + f"  step {row['step_time_s']:.3f} s  fit {row['fit_seconds']:.0f} s", flush=True)
        seed_seconds = time.perf_counter() - t_seed

    summary, table = summarise(rows, [label for label, _, _ in rows_spec])
    print(table)
    cpu = f"CPU {platform.processor() or platform.machine()}"
    dev = torch.cuda.get_device_name(0) if args.device == "cuda" else cpu
    result = {"args": vars(args), "mode": mode, "settings": base, "rows_spec": args.rows, "device": dev,
              "threads": torch.get_num_threads(), "host": platform.node(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "scene_bundle": str(scene_bundle),
              "total_seconds": time.perf_counter() - t_all, "rows": rows, "summary": summary, "table": table,
              "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=lambda o: o.item() if isinstance(o, np.generic)
                                         else str(o)))
    print(f"wrote {args.out} in {result['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
