"""The tiles a detection run trains and validates on, without augmentation, to compare two commits' data.

Builds the datasets as ``bench/detection.py --quick`` does for row ``none`` (the YELL crops, ``normalise: image``,
every tile), stops before the model is made, and writes each tile's pixel sum, largest absolute value, boxes and
labels. With ``--compare A B`` it reports the tiles whose pixels or boxes differ. Run it from each commit's tree:

    git worktree add /tmp/old OLD && cd /tmp/old && PYTHONPATH=. python /path/to/bench/detection_tiles_dump.py old.pkl
    python bench/detection_tiles_dump.py --compare old.pkl new.pkl
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np


def dump(out: Path, seed: int) -> None:
    sys.path.insert(0, str(Path.cwd()))
    import torch

    torch.set_num_threads(1)
    import bench.detection as bd
    from geocamat.data import detection_tiles
    from geocamat.settings import build
    from geocamat.tasks import get_task
    from geocamat.tasks.detection import module

    built = []
    make = detection_tiles.DetectionTiles.__init__

    def record(self, *args, **kwargs):
        make(self, *args, **kwargs)
        built.append(self)

    class Built(Exception):
        pass

    def stop(*_args, **_kwargs):
        raise Built

    detection_tiles.DetectionTiles.__init__ = record
    module.DetectionTask.__init__ = stop
    det = get_task("detection")
    values = {**bd.MODES["quick"], "max_tiles": None, "seed": seed, "regulariser": "none", "accelerator": "cpu",
              "normalise": "image", "images": [str(bd.DATA / f"{n}.png") for n in bd.YELL],
              "labels": [str(bd.DATA / f"{n}.xml") for n in bd.YELL]}
    try:
        det.train(build(det.Config, values, what="detection training"), out.with_suffix(".run"), overwrite=True,
                  progress=False, log=lambda _: None)
    except Built:
        pass
    tiles = {}
    for k, ds in enumerate(built):
        ds.augment = False
        for i, t in enumerate(ds.tiles):
            item = ds[i]
            image, target = (item["image"], item) if isinstance(item, dict) else item
            pixels = image.numpy().astype(np.float64)
            tiles[(k, t.image, t.col, t.row)] = (pixels.sum(), np.abs(pixels).max(), target["boxes"].numpy(),
                                                 target["labels"].numpy())
    out.write_bytes(pickle.dumps(tiles))
    print(f"{len(tiles)} tiles in {len(built)} datasets -> {out}")


def compare(a: Path, b: Path) -> None:
    x, y = pickle.loads(a.read_bytes()), pickle.loads(b.read_bytes())
    common = sorted(set(x) & set(y))
    pixels = [k for k in common if abs(x[k][0] - y[k][0]) > 1e-3 * max(1.0, abs(x[k][0]))
              or abs(x[k][1] - y[k][1]) > 1e-4]
    boxes = [k for k in common if x[k][2].shape != y[k][2].shape or not np.allclose(x[k][2], y[k][2])
             or not np.array_equal(x[k][3], y[k][3])]
    print(f"{len(x)} vs {len(y)} tiles, {len(common)} in both; pixels differ in {len(pixels)}, boxes in "
          f"{len(boxes)}; only in the first {len(set(x) - set(y))}, only in the second {len(set(y) - set(x))}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = ap.parse_args()
    compare(*args.compare) if args.compare else dump(args.out, args.seed)
