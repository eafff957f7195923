"""Land use: a classifier of tiles of a GeoTIFF stack, mapped over whole regions (see :mod:`geocamat.tasks.base`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from geocamat.tasks.landuse.config import LandUseConfig as Config
from geocamat.tasks.landuse.options import EvaluateOptions, PredictOptions

__all__ = ["Config", "EvaluateOptions", "PredictOptions", "describe", "evaluate", "predict", "summary", "train"]
NAME = "land-use"


def train(config: Config, out_dir: Path, *, overwrite: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, resume: bool = False) -> dict:
    """Train on the stack and labels of ``config``; write the run folder; return the metrics. ``resume``:
    continue the killed run of ``out_dir`` from its last checkpoint (``config``: the settings it saved)."""
    from geocamat.tasks.base import checked
    from geocamat.tasks.landuse.workflow import train_landuse
    from geocamat.tasks.training import caller_state

    with caller_state():
        return train_landuse(checked(config), out_dir, overwrite=overwrite, progress=progress, log=log,
                             resume=resume)


def summary(metrics: dict) -> list[str]:
    """What ``geocamat train`` prints at the end of a land-use run."""
    vm = metrics["validation_map"]
    lines = [f"validation map ({vm['scope']}): OA {vm['overall_accuracy']}, kappa {vm['kappa']}, macro-F1 "
             f"{vm.get('macro_f1')}, {vm['n']} pixels; "
             f"tile accuracy {metrics['validation_tiles']['accuracy']}"]
    if "validation_map_image_frame" in metrics:
        raw = metrics["validation_map_image_frame"]
        lines.append(f"  (scored in the labels' frame, offset {vm['map_offset_px']} px; on the image's own grid: "
                     f"OA {raw['overall_accuracy']}, kappa {raw['kappa']}, macro-F1 {raw.get('macro_f1')})")
    return lines


#: a class whose recall on the validation map is below this is reported as almost never mapped
RARELY_MAPPED_RECALL = 0.05


def rare_class_warning(metrics: dict) -> str | None:
    """The warning line for labelled classes the validation map almost never shows (None when there are none)."""
    rare = rarely_mapped(metrics["validation_map"])
    if not rare:
        return None
    tiles = metrics.get("training_tiles_per_class", {})
    said = ", ".join(f"{name} (recall {r:.2f} of {n} px" + (f", {tiles[name]} training tiles)" if name in tiles
                                                              else ")") for name, r, n in rare)
    return (f"warning: the map almost never shows {said}: label more of {'it' if len(rare) == 1 else 'them'}, or "
            "retrain with --set class_balance=0.5 (draws rare classes more often: on the NC sample macro-F1 +0.05 "
            "for OA -0.011; docs/benchmarks.md)")


def rarely_mapped(scores: dict) -> list[tuple[str, float, int]]:
    """(name, recall, reference pixels) of the labelled classes a scored map almost never shows."""
    return [(name, float(c["recall"]), int(c["support"])) for name, c in scores.get("per_class", {}).items()
            if c.get("support", 0) > 0 and c.get("recall", 1.0) < RARELY_MAPPED_RECALL]


def map_settings(bundle, overlap: float | None, tta: bool | None, window: int | None,
                 tta_views: str | None = None) -> dict:
    """Overlap and TTA of a map: the user's, else the library's default overlap (0.125 for --window maps, at
    least 0.75 for dense models, else the model's) and the model's TTA."""
    from geocamat.inference.landuse import default_overlap
    from geocamat.inference.tta import DEFAULT_TTA_VIEWS

    if overlap is None:
        overlap = default_overlap(bundle, window)
    return {"overlap": overlap, "tta": bool(bundle.extra.get("tta", False)) if tta is None else tta,
            "tta_views": tta_views or DEFAULT_TTA_VIEWS, "window": window}


def predict(bundle, images: list[str], out_dir: Path, options: PredictOptions, *, overwrite: bool = False,
            progress: bool = True, model_path: str | None = None) -> dict:
    """Map ``images`` with a land-use (or scene) model; write landuse.tif and the rest; return the report."""
    from geocamat.inference.landuse import predict_landuse
    from geocamat.preflight import before_predict
    from geocamat.tasks.base import checked, image_list

    o, images = checked(options), image_list(images)
    before_predict(bundle, images, out_dir, res=o.res, force=o.force, probabilities=o.probabilities, window=o.window,
                   res_crs=o.crs)
    return predict_landuse(bundle, list(images), Path(out_dir), region=o.region, region_field=o.region_field,
                           bbox=tuple(o.bbox) if o.bbox else None, bbox_crs=o.bbox_crs, crs=o.crs, res=o.res,
                           **map_settings(bundle, o.overlap, o.tta, o.window, o.tta_views), batch_size=o.batch_size,
                           workers=o.workers, device=o.device, resume=o.resume, write_probabilities=o.probabilities,
                           vectorise=o.vector, min_polygon_pixels=o.min_polygon_pixels, min_area_ha=o.min_area,
                           require_all_bands=o.require_all_bands, nodata=o.nodata, overwrite=overwrite,
                           progress=progress, model_path=model_path, devices=o.devices, num_nodes=o.num_nodes)


def evaluate(bundle, images: list[str], options: EvaluateOptions, *, progress: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Map ``images`` (or read ``options.map``) and score it against ``options.reference``; print the scores."""
    from geocamat.tasks.base import checked, image_list
    from geocamat.tasks.landuse.evaluation import evaluate_map

    return evaluate_map(bundle, image_list(images, required=False), checked(options), progress=progress, log=log)


def describe(bundle) -> dict:
    """The mapping settings a land-use bundle carries (for ``geocamat info``); ``overlap`` is the one ``predict``
    uses without ``--overlap`` (a dense model's stored 0.5 is raised to 0.75)."""
    from geocamat.inference.landuse import default_overlap

    mapping = {k: bundle.extra[k] for k in ("overlap", "tta", "footprint", "label_offset", "image_nodata")
               if bundle.extra.get(k) is not None}
    if "overlap" in mapping:
        mapping["overlap"] = default_overlap(bundle)
    return {"mapping": mapping}
