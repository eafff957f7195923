"""The validation map of a training run: over the validation blocks that hold labels (what training maps now)
vs over the whole scene (before), side by side in one process, with the same model.

    python bench/validation_map.py --model RUN/model.geocamat --images 'scene/*.tif' --labels labels.tif \
        [--blocks 4] [--out /tmp/vmap]

Prints, for each, the seconds, the tiles run through the model and the validation map's OA on the odd blocks
(the two must score alike: a region's map equals the whole map on its pixels, up to the mapping unit at the blocks'
edges).
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--out", default="/tmp/vmap")
    args = parser.parse_args()

    from geocamat.bundle import Bundle
    from geocamat.inference.landuse import predict_landuse
    from geocamat.tasks.landuse import map_settings
    from geocamat.tasks.landuse.config import LandUseConfig
    from geocamat.tasks.landuse.options import MIN_MAPPING_UNIT
    from geocamat.tasks.landuse.scoring import score_map
    from geocamat.tasks.landuse.workflow import _validation_blocks

    bundle = Bundle.load(args.model)
    images = sorted(glob.glob(args.images))
    config = LandUseConfig(images=images, labels=args.labels, blocks=args.blocks)
    region = _validation_blocks(Path(args.labels), config, Path(args.out) / "work")
    for name, kw in (("validation blocks", {"region": region}), ("whole scene", {})):
        out = Path(args.out) / name.replace(" ", "_")
        t0 = time.perf_counter()
        report = predict_landuse(bundle, images, out, **map_settings(bundle, None, None, None), vectorise=False,
                                 min_polygon_pixels=MIN_MAPPING_UNIT, overwrite=True, progress=False, **kw)
        seconds = time.perf_counter() - t0
        scores = score_map(out / "landuse.tif", Path(args.labels), bundle.class_ids, [c.name for c in bundle.classes],
                           blocks=args.blocks, parity="odd", require_overlap=False, model_codes=True)
        print(f"{name}: {seconds:.1f} s, {report['tiles']['tiles_processed']} tiles, OA {scores['overall_accuracy']},"
              f" {scores['n']} pixels scored", flush=True)


if __name__ == "__main__":
    main()
