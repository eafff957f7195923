"""Benchmark: object detection trained with none / object-aware Random Erasing / object-aware CAMAT.

Trains on the two YELL crops of the DeepForest NEON data (VOC boxes; a right-hand strip of each crop is the
validation split), then scores on OSBS_029.tif (georeferenced, 61 trees), SOAP_061.png (37 trees labelled
Dead/Alive, scored class-agnostic) and an occluded copy of OSBS_029 (a random rectangle of 25-40% of
each tree box filled with the band mean: how much a detector relies on the whole crown). Several seeds per
regulariser; prints mean +- std and writes a JSON.

CPU (2 shared cores, about 45 min):
    nice python bench/detection.py --max-minutes 55 --out bench/results_detection_cpu.json
H100 (< 3 min; --max-minutes stops starting new runs, seeds are the outer loop so whole seeds are cut):
    python bench/detection.py --device cuda --threads 8 --tile-size 400 --backbone small --epochs 10 \
        --max-tiles 0 --batch-size 16 --lr 0.002 --max-minutes 2.2 --out bench/results_detection_h100.json
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
YELL = ["2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop"]


def occluded_copy(src: Path, labels: Path, dst: Path, fill: str = "mean", where: str = "boxes",
                  seed: int = 123) -> None:
    """Write ``src`` with one rectangle (25-40% of a box) per labelled box replaced by a fill.

    Args:
        fill: ``mean`` (band mean, the training fill) or ``noise`` (Gaussian with the band mean and std).
        where: ``boxes`` (inside each tree box: occluded objects) or ``anywhere`` (the same rectangles at
            random places: decoys that a model which learned "filled patch = object" will detect).
    """
    import rasterio
    import torch

    from geocamat.camat.detection import object_random_masks
    from geocamat.data.boxes import load_boxes
    from geocamat.data.detection_images import image_info

    (ib,), _ = load_boxes([labels], [image_info(str(src))])
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
    else:
        arr[:, mask] = flat.mean(1).round().astype(arr.dtype)[:, None]
    with rasterio.open(dst, "w", **profile) as d:
        d.write(arr)


def make_tests(data: Path, work: Path) -> dict:
    """Test sets: name -> (images, labels, class_agnostic). Altered copies keep the file name (labels match)."""
    tests = {
        "osbs": ([str(data / "OSBS_029.tif")], [str(data / "OSBS_029.xml")], False),
        "soap": ([str(data / "SOAP_061.png")], [str(data / "SOAP_061.xml")], True),
    }
    for name, fill, where in (("osbs_occluded", "mean", "boxes"), ("osbs_noise", "noise", "boxes"),
                              ("osbs_decoys", "mean", "anywhere")):
        (work / name).mkdir(parents=True, exist_ok=True)
        dst = work / name / "OSBS_029.tif"
        occluded_copy(data / "OSBS_029.tif", data / "OSBS_029.xml", dst, fill=fill, where=where)
        tests[name] = ([str(dst)], [str(data / "OSBS_029.xml")], False)
    return tests


def score(bundle, metrics: dict, reg: str, seed: int, tests: dict, device: str) -> dict:
    """One result row: training metrics and every test's scene/tile metrics."""
    from geocamat.tasks.detection.config import EvaluateOptions
    from geocamat.tasks.detection.workflow import evaluate_detection

    row = {"regulariser": reg, "seed": seed, "val_map_50": metrics.get("map_50"), "val_map": metrics.get("map"),
           "step_time_s": metrics["step_time_s"], "fit_seconds": metrics["fit_seconds"],
           "train_tiles": metrics["train_tiles"], "occluded_pixel_fraction": metrics["occluded_pixel_fraction"]}
    for name, (imgs, labs, agn) in tests.items():
        e = evaluate_detection(bundle, imgs, EvaluateOptions(reference=labs, device=device, class_agnostic=agn))
        for level in ("scene", "tiles"):
            for k in ("map_50", "map", "precision", "recall"):
                row[f"{name}_{level}_{k}"] = e[level][k]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--regularisers", nargs="+", default=["none", "random-erasing", "camat"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--detector", default="fasterrcnn")
    ap.add_argument("--max-tiles", type=int, default=48, help="training tiles per run (0: all)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1 is faster on a shared, busy CPU)")
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="start no new run after this many minutes (0: no limit); the summary uses the runs done")
    ap.add_argument("--eval-only", action="store_true",
                    help="re-score the models already in --work (no training)")
    ap.add_argument("--data", default=str(DATA), help="folder with the DeepForest NEON files")
    ap.add_argument("--work", default="/tmp/geocamat_bench_detection")
    ap.add_argument("--out", default="bench/results_detection.json")
    args = ap.parse_args()
    data = Path(args.data)

    import torch

    torch.set_num_threads(args.threads)
    from geocamat.bundle import Bundle
    from geocamat.settings import build
    from geocamat.tasks import get_task

    det = get_task("detection")

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tests = make_tests(data, work)
    rows = []
    t_all = time.perf_counter()
    # seeds outer, regularisers inner: a time limit then cuts whole seeds, keeping the comparison paired
    for seed in args.seeds:
        for reg in args.regularisers:
            if args.max_minutes and time.perf_counter() - t_all > 60 * args.max_minutes:
                print(f"time limit reached: skipping {reg} seed {seed}", flush=True)
                continue
            cfg = {
                "images": [str(data / f"{n}.png") for n in YELL], "labels": [str(data / f"{n}.xml") for n in YELL],
                "tile_size": args.tile_size, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                "seed": seed, "regulariser": reg, "detector": args.detector, "backbone": args.backbone,
                "max_tiles": args.max_tiles or None, "accelerator": args.device,
            }
            out = work / f"{reg}_{seed}"
            if args.eval_only:
                if not (out / "model.geocamat").is_file():
                    continue
                m = json.loads((out / "metrics.json").read_text())
            else:
                m = det.train(build(det.Config, cfg, what="detection training"), out, overwrite=True, progress=False)
            bundle = Bundle.load(out / "model.geocamat")
            row = score(bundle, m, reg, seed, tests, args.device)
            rows.append(row)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out + ".partial").write_text(json.dumps(rows, indent=1, default=str))
            print(f"{reg:15s} seed {seed}: val mAP50 {row['val_map_50']:.3f}  OSBS mAP50 {row['osbs_scene_map_50']:.3f}"
                  f"  SOAP {row['soap_scene_map_50']:.3f}  occluded {row['osbs_occluded_scene_map_50']:.3f}"
                  f"  noise {row['osbs_noise_scene_map_50']:.3f}  decoys {row['osbs_decoys_scene_map_50']:.3f}"
                  f"  step {row['step_time_s']:.3f} s  fit {row['fit_seconds']:.0f} s", flush=True)

    def agg(reg: str, key: str) -> tuple[float, float]:
        v = [r[key] for r in rows if r["regulariser"] == reg and r[key] is not None]
        return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else (float("nan"), 0.0)

    base_step = agg("none", "step_time_s")[0] if "none" in args.regularisers else float("nan")
    keys = [("val_map_50", "val mAP50"), ("osbs_scene_map_50", "OSBS mAP50"), ("osbs_scene_map", "OSBS mAP"),
            ("osbs_tiles_map_50", "OSBS tiles mAP50"), ("soap_scene_map_50", "SOAP mAP50"),
            ("osbs_occluded_scene_map_50", "OSBS-occl (mean) mAP50"),
            ("osbs_noise_scene_map_50", "OSBS-occl (noise) mAP50"), ("osbs_decoys_scene_map_50", "OSBS+decoys mAP50"),
            ("osbs_scene_recall", "OSBS recall@0.3")]
    summary = {}
    header = "| regulariser | " + " | ".join(k[1] for k in keys) + " | step s | step ratio |"
    lines = [header, "|" + "---|" * (len(keys) + 3)]
    for reg in args.regularisers:
        s = {k: agg(reg, k) for k, _ in keys}
        st = agg(reg, "step_time_s")[0]
        s["step_time_s"] = (st, 0.0)
        summary[reg] = {k: {"mean": v[0], "std": v[1]} for k, v in s.items()}
        summary[reg]["step_ratio"] = st / base_step if base_step == base_step else None
        cells = [f"{s[k][0]:.3f} ± {s[k][1]:.3f}" for k, _ in keys]
        lines.append(f"| {reg} | " + " | ".join(cells) + f" | {st:.3f} | {st / base_step:.2f}x |")
    table = "\n".join(lines)
    print(table)
    cpu = f"CPU {platform.processor() or platform.machine()}"
    dev = torch.cuda.get_device_name(0) if args.device == "cuda" else cpu
    result = {"args": vars(args), "device": dev, "threads": torch.get_num_threads(), "host": platform.node(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "total_seconds": time.perf_counter() - t_all, "rows": rows, "summary": summary, "table": table,
              "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=lambda o: o.item() if isinstance(o, np.generic)
                                         else str(o)))
    print(f"wrote {args.out} in {result['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
