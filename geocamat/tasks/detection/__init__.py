"""Object detection with object-aware CAMAT: boxes from images (see :mod:`geocamat.tasks.base`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from geocamat.tasks.detection.config import DetectionConfig as Config
from geocamat.tasks.detection.config import EvaluateOptions, PredictOptions

__all__ = ["Config", "EvaluateOptions", "PredictOptions", "describe", "evaluate", "predict", "summary", "train"]
NAME = "detection"


def train(config: Config, out_dir: Path, *, overwrite: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, resume: bool = False) -> dict:
    """Train a detector; write the run folder (model.geocamat, metrics.json, config.yaml); return the metrics.

    With ``resume``, continue the killed run of ``out_dir`` from its last checkpoint (``config``: the settings
    it saved).
    """
    from geocamat.settings import dump
    from geocamat.tasks.base import checked
    from geocamat.tasks.detection.workflow import train_detection
    from geocamat.tasks.training import absolute_paths, caller_state, run_folder

    config = checked(config)
    with caller_state(), run_folder(Path(out_dir), overwrite, resume) as (stage, checkpoint):
        # first, with absolute paths and the task: `train --resume` reads them from a killed run
        dump(absolute_paths(config, task="detection"), stage / "config.yaml")
        metrics = train_detection(config, stage, progress=progress, log=log, checkpoint=checkpoint,
                                  shown=Path(out_dir))
        dump(absolute_paths(config, task="detection"), stage / "config.yaml")  # `geocamat train` runs it again
    return metrics


def summary(metrics: dict) -> list[str]:
    """What ``geocamat train`` prints at the end of a detection run."""
    def fmt(key: str) -> str:
        value = metrics.get(key)
        return "-" if value is None else f"{value:.3f}"

    return [f"validation ({metrics.get('val_tiles', 0)} tiles): mAP@0.5 {fmt('map_50')}, mAP@[.5:.95] {fmt('map')}, "
            f"precision {fmt('precision')}, recall {fmt('recall')}; {metrics.get('train_tiles')} training tiles, "
            f"{metrics.get('train_boxes')} boxes"]


def predict(bundle, images: list[str], out_dir: Path, options: PredictOptions, *, overwrite: bool = False,
            progress: bool = True, model_path: str | None = None) -> dict:
    """Detect objects over whole images; write detections.gpkg (+ .qml) and report.json; return the report."""
    import json
    from dataclasses import asdict

    from geocamat.data.detection_images import expand_paths, image_info
    from geocamat.inference import launch as rank_tools
    from geocamat.outputs.staging import DETECTION_RESULTS, staged_output
    from geocamat.preflight import before_predict
    from geocamat.tasks.base import checked, image_list
    from geocamat.tasks.detection.inputs import check_map_options
    from geocamat.tasks.detection.predicting import predict_detection

    options, images = checked(options), image_list(images)

    if any(v is not None for v in (options.region, options.region_field, options.bbox, options.crs)):  # before a
        # warning about images without a CRS
        check_map_options(asdict(options), [image_info(p).crs is not None for p in expand_paths(images, "image")])
    before_predict(bundle, images, out_dir, force=options.force)
    launch = rank_tools.resolve(options.devices, options.num_nodes)
    kwargs = {"progress": progress, "model_path": model_path, "final_dir": Path(out_dir),
              "fresh": bool(overwrite) and not options.resume}
    if launch.spawn:  # ranks started here; this process stages the outputs that rank 0 writes
        from geocamat.devices import resolve_device

        with staged_output(Path(out_dir), overwrite, DETECTION_RESULTS) as stage:
            rank_tools.spawn(predict_detection, launch.spawn, (bundle, list(images), stage, options), kwargs,
                             cuda=resolve_device(options.device).type == "cuda")
            return json.loads((stage / "report.json").read_text())
    try:
        if not launch.ranks.main:  # a launcher's other ranks: their detections go to rank 0, nothing else
            return predict_detection(bundle, list(images), Path(out_dir), options, ranks=launch.ranks, **kwargs)
        with staged_output(Path(out_dir), overwrite, DETECTION_RESULTS) as stage:
            return predict_detection(bundle, list(images), stage, options, ranks=launch.ranks, **kwargs)
    finally:
        rank_tools.close(launch)


def evaluate(bundle, images: list[str], options: EvaluateOptions, *, progress: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Score the detector's output on ``images`` against reference boxes; print mAP, precision and recall."""
    from geocamat.errors import ConfigError
    from geocamat.tasks.base import checked, image_list
    from geocamat.tasks.detection.evaluating import evaluate_detection

    options, images = checked(options), image_list(images, required=False)
    if isinstance(options.reference, str):
        options.reference = [options.reference]

    if not images or not options.reference:
        raise ConfigError("give IMAGES and --reference BOXES (Pascal VOC XML, CSV, GeoPackage/Shapefile, COCO JSON, "
                          "YOLO or DOTA text)")
    report = evaluate_detection(bundle, list(images), options, progress)
    if options.out:
        from geocamat.outputs.jsonfile import write_json

        write_json(Path(options.out) / "metrics.json", report)
    scene, tiles, thr = report["scene"], report["tiles"], report["score_threshold"]
    n = len(report["images"])
    log(f"{n} image{'s' if n != 1 else ''}: {scene['labelled']} labelled objects, {scene['found']} found at "
        f"score >= {thr:g}" + (" (classes counted as one)" if report["class_agnostic"] else ""))
    log(f"  mAP@0.5 {scene['map_50']:.3f}  mAP@[.5:.95] {scene['map']:.3f}  mAP@0.75 {scene['map_75']:.3f}")
    counts = report.get("counts_by_region")
    if counts and counts["regions"]:
        rows, rel = counts["regions"], counts["relative_mae"]
        log(f"  counts in {len(rows)} regions: labelled {sum(r['labelled'] for r in rows)}, found "
            f"{sum(r['found'] for r in rows)}; mean absolute error {counts['mae']:.2f}"
            + (f" ({rel:.0%} of the mean labelled count)" if rel is not None else "")
            + f", RMSE {counts['rmse']:.2f}, bias {counts['bias']:+.2f}")
    for iou, m in (("0.5", scene), ("0.4", scene["iou_40"])):
        log(f"  IoU {iou}: precision {m['precision']:.3f}  recall {m['recall']:.3f}  f1 {m['f1']:.3f}  "
            f"({m['tp']} right, {m['fp']} wrong)")
    names = [c.name for c in bundle.classes] if not report["class_agnostic"] else ["all"]
    per_class = scene.get("ap_50_per_class") or []
    if len(names) > 1:
        for name, ap in zip(names, per_class, strict=False):
            log(f"  {name:<16} AP@0.5 {'-' if ap is None else f'{ap:.3f}'}")
    log(f"  tiles of {bundle.tile_size} px without overlap (boxes clipped): mAP@0.5 {tiles['map_50']:.3f}  "
        f"mAP@[.5:.95] {tiles['map']:.3f}")
    for note in report["notes"]:
        log(note)
    return report


def describe(bundle) -> dict:
    """The detection settings a bundle carries (for ``geocamat info``)."""
    keys = ("detector", "backbone", "score_threshold", "score_threshold_from", "nms_iou", "overlap", "weights",
            "anchor_sizes_from", "normalise")
    out = {k: bundle.extra[k] for k in keys if bundle.extra.get(k) is not None}
    if bundle.model.get("anchor_sizes"):
        out["anchor_sizes"] = list(bundle.model["anchor_sizes"])
    return {"detection": out}
