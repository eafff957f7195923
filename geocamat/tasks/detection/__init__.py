"""Object detection with object-aware CAMAT: boxes from images (see :mod:`geocamat.tasks.base`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from geocamat.tasks.detection.config import DetectionConfig as Config
from geocamat.tasks.detection.config import EvaluateOptions, PredictOptions

__all__ = ["Config", "EvaluateOptions", "PredictOptions", "describe", "evaluate", "predict", "summary", "train"]
NAME = "detection"


def train(config: Config, out_dir: Path, *, overwrite: bool = False, progress: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Train a detector; write the run folder (model.geocamat, metrics.json, config.yaml); return the metrics."""
    from geocamat.outputs.staging import TRAIN_RESULTS, staged_output
    from geocamat.settings import dump
    from geocamat.tasks.detection.workflow import train_detection

    with staged_output(Path(out_dir), overwrite, TRAIN_RESULTS) as stage:
        metrics = train_detection(config, stage, progress=progress)
        dump(config, stage / "config.yaml")
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
    from geocamat.outputs.staging import DETECTION_RESULTS, staged_output
    from geocamat.preflight import before_predict
    from geocamat.tasks.detection.workflow import predict_detection

    before_predict(bundle, images, out_dir, force=options.force)
    with staged_output(Path(out_dir), overwrite, DETECTION_RESULTS) as stage:
        report = predict_detection(bundle, list(images), stage, options, progress=progress, model_path=model_path,
                                   final_dir=Path(out_dir))
    return report


def evaluate(bundle, images: list[str], options: EvaluateOptions, *, progress: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Score the detector's output on ``images`` against reference boxes; print mAP, precision and recall."""
    import json

    from geocamat.errors import ConfigError
    from geocamat.tasks.detection.workflow import evaluate_detection

    if not images or not options.reference:
        raise ConfigError("give IMAGES and --reference BOXES (Pascal VOC XML, CSV, GeoPackage/Shapefile, DOTA text)")
    metrics = evaluate_detection(bundle, list(images), options)
    scene = metrics["scene"]
    log(f"{len(metrics['images'])} images, score >= {metrics['score_threshold']}: mAP@0.5 {scene['map_50']:.3f}, "
        f"mAP@[.5:.95] {scene['map']:.3f}, precision {scene['precision']:.3f}, recall {scene['recall']:.3f}")
    if options.out:
        Path(options.out).mkdir(parents=True, exist_ok=True)
        (Path(options.out) / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return metrics


def describe(bundle) -> dict:
    """The detection settings a bundle carries (for ``geocamat info``)."""
    return {"detection": {k: bundle.extra.get(k) for k in ("detector", "backbone", "score_threshold", "nms_iou",
                                                           "overlap")}}
