"""Figure of what CAMAT and the test occlusions do to RSSCN7 images (docs/img/camat_examples.png).

Trains a small CamNet briefly (the maps only need to be meaningful, not the best), then shows per test
image: the image, its CAM (ground-truth class), the CAMAT training occlusion (tau 0.7, mean fill), the
top-CAM 25% test occlusion and the 30% white cloud.

    python bench/camat_examples.py --epochs 12 --size 64
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geocamat.camat import CAMAT, dihedral, random_dihedral  # noqa: E402
from geocamat.camat.robustness import occlude, predicted_cams  # noqa: E402
from geocamat.data.scenes import SceneDataset, split_scenes  # noqa: E402
from geocamat.models.camnet import CamNet  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rsscn7"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=DATA if DATA.exists() else Path("/work/shared/data/rsscn7"))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--arch", default="camnet-s")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("docs/img/camat_examples.png"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    split = split_scenes(args.root, 0.5, seed=0)
    train, test = SceneDataset(split.train, args.size), SceneDataset(split.test, args.size)
    mean, std = train.band_stats()
    norm = lambda x: (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)  # noqa: E731
    xtr, xte = norm(train.images), norm(test.images)
    model = CamNet(3, len(split.classes), args.size, arch=args.arch)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.epochs * ((len(xtr) + 31) // 32))
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), 32):
            idx = perm[i:i + 32]
            x = dihedral(xtr[idx], random_dihedral(len(idx), gen))
            loss = F.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    picks = [next(i for i, (_, lab) in enumerate(split.test) if lab == c) + 3 for c in range(len(split.classes))]
    x, y = xte[picks], test.labels[picks]
    with torch.no_grad():
        _, cams_pred = predicted_cams(model, x)
        features = model.forward_features(x)
    reg = CAMAT(p=1.0, warmup=0.0, tau=0.7)
    gt_maps = reg.maps(x, y, model)
    trained = reg(x, y, model=model)
    top = occlude(x, "topcam25", cams=cams_pred)
    cloud = occlude(x, "cloud30", generator=torch.Generator().manual_seed(0), band_max=xtr.amax(dim=(0, 2, 3)))
    del features

    def show(t):
        img = t * std.view(-1, 1, 1) + mean.view(-1, 1, 1)
        return img.clamp(0, 1).permute(1, 2, 0).numpy()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["image", "CAM (true class)", "CAMAT training mask (tau 0.7)", "test: top-CAM 25%", "test: cloud 30%"]
    fig, axes = plt.subplots(len(picks), len(cols), figsize=(2.2 * len(cols), 2.2 * len(picks)))
    for r in range(len(picks)):
        panels = [show(x[r]), None, show(trained[r]), show(top[r]), show(cloud[r])]
        for c, ax in enumerate(axes[r]):
            if c == 1:
                ax.imshow(show(x[r]))
                ax.imshow(gt_maps[r].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            else:
                ax.imshow(panels[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
        axes[r][0].set_ylabel(split.classes[int(y[r])], fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
