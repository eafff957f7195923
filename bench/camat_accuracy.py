"""CAMAT vs baselines on RSSCN7: clean accuracy, accuracy under test-time occlusions, step-time overhead.

Same model (CamNet ResNet-18 from scratch), data split, schedule and augmentation for every method; only
the training-time regulariser changes. Results go to a JSON file (written after every run, so an
interrupted benchmark keeps what it finished; ``--resume`` skips finished runs) and a plot.

CPU (this machine)::

    nice python bench/camat_accuracy.py --size 56 --epochs 24 --seeds 3

GPU (H100)::

    python bench/camat_accuracy.py --device cuda --size 224 --epochs 40 --seeds 3 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geocamat.camat import build_regulariser  # noqa: E402
from geocamat.camat.consistency import consistency_loss, paired_batch  # noqa: E402
from geocamat.camat.geometry import dihedral, random_dihedral  # noqa: E402
from geocamat.camat.robustness import CONDITIONS, robustness_report  # noqa: E402
from geocamat.data.scenes import SceneDataset, split_scenes  # noqa: E402
from geocamat.models.camnet import CamNet  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rsscn7"
if not DATA.exists():
    DATA = Path("/work/shared/data/rsscn7")

# method name -> (regulariser name, options)
METHODS: dict[str, tuple[str, dict]] = {
    "none": ("none", {}),
    "cutout": ("cutout", {"area": 0.25, "p": 1.0, "fill": "mean"}),
    "random-erasing": ("random-erasing", {}),
    "hide-and-seek": ("hide-and-seek", {"grid": 4, "p": 0.5}),
    "camat-fresh": ("camat", {"source": "fresh"}),
    "camat-cached": ("camat", {"source": "cached"}),
    "camat-white": ("camat", {"source": "cached", "fill": "white"}),
    "camat-mixed": ("camat", {"source": "cached", "fill": "mixed"}),
    "camat-area25": ("camat", {"source": "cached", "area": 0.25}),
    "cutout-white": ("cutout", {"area": 0.25, "p": 1.0, "fill": "white"}),
    "cutout-mixed": ("cutout", {"area": 0.25, "p": 1.0, "fill": "mixed"}),
    "camat-gradcampp": ("camat", {"source": "fresh", "saliency": "gradcampp"}),
    # candidates for one default that wins everywhere (issue 15)
    "camat-half-random": ("camat", {"source": "cached", "random_share": 0.5}),
    "camat-half-random-mixed": ("camat", {"source": "cached", "random_share": 0.5, "fill": "mixed"}),
    "camat-pairs": ("camat", {"source": "cached", "consistency": 1.0}),
    "camat-pairs-half-random-mixed": ("camat", {"source": "cached", "consistency": 1.0, "random_share": 0.5,
                                                "fill": "mixed"}),
    # session 7: fixed-area masks (area 0.25 matched random squares and top-CAM best) with the mixed fill
    "camat-area25-mixed": ("camat", {"source": "cached", "area": 0.25, "fill": "mixed"}),
    "camat-area25-half-random-mixed": ("camat", {"source": "cached", "area": 0.25, "random_share": 0.5,
                                                 "fill": "mixed"}),
    # the same with half of the occluders mean-filled (the fill of the random/top-CAM squares of the tests)
    "camat-area25-half-random-meanmix": ("camat", {"source": "cached", "area": 0.25, "random_share": 0.5,
                                                   "fill": "mixed",
                                                   "mix": ["mean", "mean", "mean", "white", "noise", "blur"]}),
    "camat-area25-half-random-meanmix-p35": ("camat", {"source": "cached", "area": 0.25, "random_share": 0.5,
                                                       "fill": "mixed", "p": 0.35,
                                                       "mix": ["mean", "mean", "mean", "white", "noise", "blur"]}),
    # `camat-cached` is the library's default of the day; the methods below pin what they were measured with.
    # session 8: the default with twice the share of blurred occluders (blur was its one column under Cutout);
    # the default of sessions 9-14 (the GPU run); the default before it is camat-area25-half-random-meanmix-p35
    "camat-default-blur2": ("camat", {"source": "cached", "area": 0.25, "random_share": 0.5, "fill": "mixed",
                                      "p": 0.35, "mix": ["mean", "mean", "mean", "white", "noise", "blur", "blur"],
                                      "random_area": None}),
    # session 9 (first GPU run of the candidates): the default with more occlusion, more random squares, or
    # clean + occluded pairs (the consistency term is meant to keep clean accuracy while p rises)
    "camat-p50": ("camat", {"source": "cached", "p": 0.5, "random_area": None}),
    "camat-random75": ("camat", {"source": "cached", "random_share": 0.75, "random_area": None}),
    "camat-pairs-p50": ("camat", {"source": "cached", "consistency": 1.0, "p": 0.5, "random_area": None}),
    # the one column the session-9 default missed on the GPU: random 40% squares (Hide-and-Seek hides ~50%);
    # the default since session 15 (random_area [0.1, 0.5]), so the same as camat-cached
    "camat-randarea": ("camat", {"source": "cached", "random_area": [0.1, 0.5]}),
    # session 10 (CPU): larger random squares, or more occluded samples, to reach Hide-and-Seek on random40
    "camat-randarea-wide": ("camat", {"source": "cached", "random_area": [0.2, 0.6]}),
    "camat-randarea-p50": ("camat", {"source": "cached", "random_area": [0.1, 0.5], "p": 0.5}),
    "camat-randarea-rs67": ("camat", {"source": "cached", "random_area": [0.1, 0.5], "random_share": 0.67}),
    # session 14 (CPU): the random occluders as Hide-and-Seek's grid cells instead of one square
    "camat-grid": ("camat", {"source": "cached", "random_shape": "grid", "random_area": None}),
    "camat-grid-randarea": ("camat", {"source": "cached", "random_shape": "grid", "random_area": [0.1, 0.5]}),
    "camat-grid-p50": ("camat", {"source": "cached", "random_shape": "grid", "p": 0.5, "random_area": None}),
    "camat-grid-half": ("camat", {"source": "cached", "random_shape": "grid", "random_area": [0.5, 0.5]}),
    # session 14: Random Erasing's rate of random occluders (~40% of the samples) beside the top-CAM ones (20%)
    "camat-rate60": ("camat", {"source": "cached", "p": 0.6, "random_share": 0.67, "random_area": [0.1, 0.5]}),
    # session 15: the session-9 default with its occlusion strength rising / falling over the epochs (same mean)
    "camat-rising": ("camat", {"source": "cached", "schedule": "rising", "random_area": None}),
    "camat-falling": ("camat", {"source": "cached", "schedule": "falling", "random_area": None}),
    "camat-rising-randarea": ("camat", {"source": "cached", "schedule": "rising", "random_area": [0.1, 0.5]}),
    "camat-rising-randarea-wide": ("camat", {"source": "cached", "schedule": "rising", "random_area": [0.2, 0.6]}),
    "camat-rising-randarea-p25": ("camat", {"source": "cached", "schedule": "rising", "random_area": [0.1, 0.5],
                                            "p": 0.25}),
    "camat-rising-randarea-p30": ("camat", {"source": "cached", "schedule": "rising", "random_area": [0.1, 0.5],
                                            "p": 0.3}),
    "camat-rising-randarea-rs67": ("camat", {"source": "cached", "schedule": "rising", "random_area": [0.1, 0.5],
                                             "random_share": 0.67}),
}
DEFAULT_METHODS = "none,cutout,random-erasing,hide-and-seek,camat-fresh,camat-cached,camat-white"


def timed_step(model, opt, reg, xtr, ytr, idx, k, *, epoch: int, max_epochs: int, amp, device,
               label_smoothing: float = 0.0) -> tuple[torch.Tensor, float, float]:
    """One training step (augment, regulariser, forward, backward, observe); (loss, wall s, CPU s)."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    ids = idx.to(device)
    x = dihedral(xtr[ids], k)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = ytr[ids]
    with amp:
        clean = x
        x = reg(x, y, model=model, epoch=epoch, max_epochs=max_epochs, sample_ids=ids, transforms=k)
        n, occluded = len(y), reg.occluded
        pairs = reg.consistency > 0 and occluded is not None and bool(occluded.any())
        if pairs:  # clean + occluded pairs and the consistency term, as geocamat's training step does
            x, index = paired_batch(clean, x, occluded)
        features = model.forward_features(x)
        logits = model.head(features.mean(dim=(2, 3))).float()
        loss = F.cross_entropy(logits, torch.cat([y, y[index]]) if pairs else y, label_smoothing=label_smoothing)
        if pairs:
            loss = loss + reg.consistency * consistency_loss(logits, n, index)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    reg.observe(features[:n].detach(), model.head, y, sample_ids=ids, transforms=k)
    if cuda:
        torch.cuda.synchronize()
    return loss, time.perf_counter() - t0, time.process_time() - c0


def load_data(root: Path, size: int, device: torch.device):
    split = split_scenes(root, train_fraction=0.5, seed=0)
    train, test = SceneDataset(split.train, size), SceneDataset(split.test, size)
    mean, std = train.band_stats()
    norm = lambda x: (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)  # noqa: E731
    xtr, xte = norm(train.images), norm(test.images)
    band_max = xtr.amax(dim=(0, 2, 3))
    return (split.classes, xtr.to(device), train.labels.to(device), xte.to(device), test.labels.to(device),
            band_max)


def train_one(method: str, seed: int, data, args, device: torch.device) -> dict:
    classes, xtr, ytr, xte, yte, band_max = data
    torch.manual_seed(seed)
    reg_name, opts = METHODS[method]
    reg = build_regulariser(reg_name, **opts)
    reg.reserve(xtr.shape[0])
    model = CamNet(xtr.shape[1], len(classes), args.size, arch=args.arch).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    n = xtr.shape[0]
    steps_per_epoch = math.ceil(n / args.batch_size) if not args.drop_last else n // args.batch_size
    total = steps_per_epoch * args.epochs
    warm = steps_per_epoch  # one epoch linear warm-up, then cosine

    def lr_factor(s: int) -> float:
        return (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    gen = torch.Generator().manual_seed(seed)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    camat_start = math.floor(0.2 * args.epochs)  # step times are compared on the epochs where CAMAT is active
    times, cpu_times, losses = [], [], []
    model.train()
    t_train = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        ep_loss = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch_size:(s + 1) * args.batch_size]
            k = random_dihedral(idx.shape[0], gen)
            loss, wall, cpu_s = timed_step(model, opt, reg, xtr, ytr, idx, k, epoch=epoch, max_epochs=args.epochs,
                                           amp=amp, device=device, label_smoothing=args.label_smoothing)
            sched.step()
            if epoch >= max(camat_start, 1):
                times.append(wall)
                cpu_times.append(cpu_s)
            ep_loss += float(loss.detach()) * idx.shape[0]
        losses.append(ep_loss / n)
        if args.verbose:
            print(f"  {method} seed {seed} epoch {epoch + 1}/{args.epochs} loss {losses[-1]:.3f}", flush=True)
    train_s = time.perf_counter() - t_train
    t_eval = time.perf_counter()
    report = robustness_report(model, (xte, yte), device=device, batch_size=args.eval_batch_size, seed=seed,
                               auc_samples=args.auc_samples, band_max=band_max, autocast=cuda)
    return {
        "method": method, "seed": seed, "settings": reg.settings(), "accuracy": report["accuracy"],
        "deletion_auc": report.get("deletion_auc"), "insertion_auc": report.get("insertion_auc"),
        "median_step_s": statistics.median(times) if times else None,
        "median_step_cpu_s": statistics.median(cpu_times) if cpu_times else None, "train_s": train_s,
        "eval_s": time.perf_counter() - t_eval, "final_train_loss": losses[-1], "losses": losses,
    }


def interleaved_timing(methods: list[str], data, args, device: torch.device, rounds: int) -> dict:
    """Median training-step time per method, measured round-robin on one model (fair under varying load).

    Every method runs one step per round, in turn, on the same model and batch size, with CAMAT past its
    warm-up and the cached maps filled beforehand, so a change in machine load hits all methods alike.
    """
    classes, xtr, ytr, *_ = data
    torch.manual_seed(0)
    model = CamNet(xtr.shape[1], len(classes), args.size, arch=args.arch).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    regs = {m: build_regulariser(METHODS[m][0], **METHODS[m][1]) for m in methods}
    for r in regs.values():
        r.reserve(xtr.shape[0])
    gen = torch.Generator().manual_seed(0)
    n = xtr.shape[0]
    with torch.no_grad(), amp:  # fill the caches (every sample observed once, canonical frame)
        for i in range(0, n, args.batch_size):
            ids = torch.arange(i, min(n, i + args.batch_size), device=device)
            feats = model.forward_features(xtr[ids])
            for r in regs.values():
                r.observe(feats, model.head, ytr[ids], sample_ids=ids, transforms=None)
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    for rnd in range(rounds + 2):
        idx = torch.randperm(n, generator=gen)[:args.batch_size]
        k = random_dihedral(idx.shape[0], gen)
        for m in methods:
            _, wall, cpu_s = timed_step(model, opt, regs[m], xtr, ytr, idx, k, epoch=1, max_epochs=1, amp=amp,
                                        device=device)
            if rnd >= 2:  # two warm-up rounds
                times[m].append(wall)
                cpu[m].append(cpu_s)
    med = {m: statistics.median(t) for m, t in times.items()}
    med_cpu = {m: statistics.median(t) for m, t in cpu.items()}
    base, base_cpu = med.get("none"), med_cpu.get("none")
    return {m: {"median_step_ms": 1000 * v, "ratio_to_none": v / base if base else None,
                "median_step_cpu_ms": 1000 * med_cpu[m],
                "cpu_ratio_to_none": med_cpu[m] / base_cpu if base_cpu else None} for m, v in med.items()}


def aggregate(runs: list[dict]) -> dict:
    """Mean and std over seeds per method; step-time ratio to ``none`` of the same seed."""
    out: dict = {}
    none_time = {r["seed"]: r["median_step_s"] for r in runs if r["method"] == "none"}
    none_cpu = {r["seed"]: r.get("median_step_cpu_s") for r in runs if r["method"] == "none"}
    for method in dict.fromkeys(r["method"] for r in runs):
        rs = [r for r in runs if r["method"] == method]
        acc = {}
        for cond in rs[0]["accuracy"]:
            vals = [r["accuracy"][cond] for r in rs]
            acc[cond] = {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
        ratios = [r["median_step_s"] / none_time[r["seed"]] for r in rs
                  if r["seed"] in none_time and r["median_step_s"]]
        cpu_ratios = [r["median_step_cpu_s"] / none_cpu[r["seed"]] for r in rs
                      if none_cpu.get(r["seed"]) and r.get("median_step_cpu_s")]
        out[method] = {
            "seeds": [r["seed"] for r in rs], "accuracy": acc,
            "deletion_auc": statistics.mean(r["deletion_auc"] for r in rs) if rs[0]["deletion_auc"] else None,
            "insertion_auc": statistics.mean(r["insertion_auc"] for r in rs) if rs[0]["insertion_auc"] else None,
            "step_ratio": statistics.mean(ratios) if ratios else None,
            "cpu_step_ratio": statistics.mean(cpu_ratios) if cpu_ratios else None,
            "median_step_ms": 1000 * statistics.mean(r["median_step_s"] or 0.0 for r in rs),
            "final_train_loss": statistics.mean(r["final_train_loss"] for r in rs),
        }
    return out


TABLE_CONDS = ["clean", "random10", "random25", "random40", "topcam10", "topcam25", "cloud30",
               "random25_noise", "topcam25_noise", "topcam25_blur", "cloud30_noise"]


def table(agg: dict) -> str:
    conds = [c for c in TABLE_CONDS if any(c in a["accuracy"] for a in agg.values())]
    head = "| method | " + " | ".join(conds) + " | del AUC | ins AUC | step ratio wall | step ratio cpu |"
    lines = [head, "|" + "---|" * (len(conds) + 5)]
    for m, a in agg.items():
        cells = [f"{a['accuracy'][c]['mean']:.3f} ± {a['accuracy'][c]['std']:.3f}" for c in conds]
        auc_d = f"{a['deletion_auc']:.3f}" if a["deletion_auc"] is not None else "-"
        auc_i = f"{a['insertion_auc']:.3f}" if a["insertion_auc"] is not None else "-"
        ratio = f"{a['step_ratio']:.2f}x" if a["step_ratio"] is not None else "-"
        cratio = f"{a['cpu_step_ratio']:.2f}x" if a.get("cpu_step_ratio") is not None else "-"
        lines.append(f"| {m} (n={len(a['seeds'])}) | " + " | ".join(cells)
                     + f" | {auc_d} | {auc_i} | {ratio} | {cratio} |")
    return "\n".join(lines)


def plot(agg: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("random square, mean fill", [0, 10, 25, 40], ["clean", "random10", "random25", "random40"]),
              ("top-CAM, mean fill", [0, 10, 25], ["clean", "topcam10", "topcam25"])]
    for ax, (title, xs, conds) in zip(axes[:2], panels, strict=True):
        for m, a in agg.items():
            ys = [a["accuracy"][c]["mean"] for c in conds]
            es = [a["accuracy"][c]["std"] for c in conds]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m)
        ax.set_title(title)
        ax.set_xlabel("occluded area (%)")
        ax.set_ylabel("overall accuracy")
        ax.grid(alpha=0.3)
    bars = ["cloud30", "cloud30_noise", "random25_noise", "topcam25_noise", "topcam25_blur"]
    ax = axes[2]
    width = 0.8 / max(1, len(agg))
    for i, (m, a) in enumerate(agg.items()):
        ys = [a["accuracy"].get(c, {"mean": 0})["mean"] for c in bars]
        es = [a["accuracy"].get(c, {"std": 0})["std"] for c in bars]
        ax.bar([j + i * width for j in range(len(bars))], ys, width, yerr=es, label=m, capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(bars))], bars, rotation=20)
    ax.set_title("cloud (white / noise) and noise/blur fills")
    ax.set_ylabel("overall accuracy")
    ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DATA)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--drop-last", action="store_true")
    ap.add_argument("--auc-samples", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timing-rounds", type=int, default=10, help="rounds of the interleaved step timing (0: skip)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/camat_accuracy.json"))
    ap.add_argument("--plot", type=Path, default=Path("docs/img/camat_robustness.png"))
    ap.add_argument("--resume", action="store_true", help="keep finished runs found in --out")
    ap.add_argument("--aggregate-only", action="store_true", help="only rebuild the table and plot from --out")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown method {bad[0]}: choose from {', '.join(METHODS)}")
    payload: dict = {"runs": []}
    if (args.resume or args.aggregate_only) and args.out.exists():
        payload = json.loads(args.out.read_text())
    if not args.aggregate_only:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False  # CAMAT-fresh forwards vary in batch size: no re-tuning
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        t0 = time.perf_counter()
        data = load_data(args.root, args.size, device)
        print(f"loaded {data[1].shape[0]} train / {data[3].shape[0]} test images at {args.size} px "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)
        payload["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        payload["machine"] = {
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
            "threads": args.threads, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if args.timing_rounds > 0:
            timing_methods = ["none"] + [m for m in methods if m != "none"]
            payload["timing"] = interleaved_timing(timing_methods, data, args, device, args.timing_rounds)
            print("interleaved step times (wall; cpu): " + ", ".join(
                f"{m} {v['median_step_ms']:.0f} ms ({v['ratio_to_none']:.2f}x; {v['cpu_ratio_to_none']:.2f}x)"
                for m, v in payload["timing"].items()), flush=True)
            save(args.out, payload)
        done = {(r["method"], r["seed"]) for r in payload["runs"]}
        for seed in range(args.seeds):
            for method in methods:  # seed-major: an interrupted run still has every method for the first seeds
                if (method, seed) in done:
                    continue
                r = train_one(method, seed, data, args, device)
                payload["runs"].append(r)
                save(args.out, payload)
                acc = r["accuracy"]
                print(f"{method:16s} seed {seed}: clean {acc['clean']:.3f} top25 {acc['topcam25']:.3f} "
                      f"cloud {acc['cloud30']:.3f} rand25 {acc['random25']:.3f} "
                      f"step {1000 * (r['median_step_s'] or 0):.0f} ms"
                      f" train {r['train_s']:.0f} s eval {r['eval_s']:.0f} s loss {r['final_train_loss']:.3f}",
                      flush=True)
        payload["total_s"] = time.perf_counter() - t0
    agg = aggregate(payload["runs"])
    payload["summary"] = agg
    save(args.out, payload)
    print(table(agg))
    if payload.get("timing"):
        print("interleaved step time ratio to none (wall; cpu): " + ", ".join(
            f"{m} {v['ratio_to_none']:.2f}x; {v.get('cpu_ratio_to_none') or 0:.2f}x"
            for m, v in payload["timing"].items()))
    if args.plot:
        plot(agg, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    assert set(TABLE_CONDS) == set(CONDITIONS)
    main()
