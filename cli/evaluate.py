"""``geocamat evaluate``: score a model's map against a reference land-cover raster."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from cli.options import map_overlap, quiet_opt


@click.command()
@click.argument("images", nargs=-1)
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False), help="model.geocamat bundle.")
@click.option("--reference", default=None, type=click.Path(dir_okay=False),
              help="Reference land cover (any CRS): a raster of the model's class codes, or polygons/points "
                   "with --reference-field.")
@click.option("--reference-field", default=None,
              help="Class field of a vector --reference: the model's class codes or names.")
@click.option("--scenes", default=None, type=click.Path(file_okay=False),
              help="Scene models: the class-folder dataset; scores its held-out part, clean and under occlusion.")
@click.option("--blocks", type=int, default=None, help="Score only validation blocks of an N x N checkerboard.")
@click.option("--parity", type=click.Choice(["odd", "even"]), default="odd", show_default=True,
              help="Which checkerboard blocks are scored.")
@click.option("--map", "map_path", default=None, type=click.Path(dir_okay=False),
              help="Score this existing landuse.tif instead of mapping IMAGES again.")
@click.option("--mask", default=None, type=click.Path(dir_okay=False), help="Score only where this raster is non-zero.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Keep the map and metrics.json here (default: a temporary folder).")
@click.option("--overlap", type=float, default=None, help="Window overlap fraction.  [default: the model's]")
@click.option("--tta/--no-tta", default=None, help="Test-time augmentation (8 flips/turns).  [default: the model's]")
@click.option("--window", type=int, default=None, help="Dense-output models: map with windows of this size (px).")
@click.option("--label-offset", default="none", show_default=True, metavar="none|model|DY,DX",
              help="Score the map in the reference's frame, map[i+DY, j+DX] against reference[i, j]; 'model': the "
                   "offset the model's training found between its labels and the imagery.")
@click.option("--device", default="auto", show_default=True)
@click.option("--score-threshold", type=float, default=None,
              help="Detection: minimum score of a found object.  [default: the model's]")
@click.option("--class-agnostic", is_flag=True,
              help="Detection: count every class as one (e.g. a Tree model against Alive/Dead labels).")
@quiet_opt
def evaluate(images, model_path, reference, reference_field, scenes, blocks, parity, map_path, mask, out, overlap,
             tta, window, label_offset, device, score_threshold, class_agnostic, quiet):
    """Map IMAGES with the model and report OA, kappa and per-class metrics against --reference.

    For a detection model, --reference holds the boxes (Pascal VOC .xml, DeepForest .csv, a vector layer, DOTA
    .txt): prints mAP@0.5, mAP@[.5:.95], precision/recall at IoU 0.5 and 0.4, and objects found vs labelled.

    For a scene-classification model, --scenes DIR reports accuracy on the held-out scenes, clean and under
    test-time occlusion (random 10/25/40%, top-CAM 10/25%, synthetic cloud, noise fill) and CAM
    deletion/insertion AUC.
    """
    from geocamat.bundle import Bundle
    from geocamat.errors import ConfigError
    from geocamat.inference.landuse import predict_landuse
    from geocamat.workflows.scoring import score_map

    bundle = Bundle.load(model_path)
    if scenes:
        from geocamat.workflows.scenes import evaluate_scenes

        report = evaluate_scenes(bundle, scenes, device=None if device == "auto" else device)
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "robustness.json").write_text(json.dumps(report, indent=2))
        click.echo(f"{report['n']} held-out scenes")
        for condition, acc in report["accuracy"].items():
            click.echo(f"  {condition:<16} OA {acc:.3f}")
        for key in ("deletion_auc", "insertion_auc"):
            if key in report:
                click.echo(f"  {key:<16} {report[key]:.3f}")
        return
    if bundle.task == "detection":
        _evaluate_detection(bundle, images, reference, reference_field, out, overlap, device, score_threshold,
                            class_agnostic)
        return
    if not reference or not (images or map_path):
        raise ConfigError("give --reference and IMAGES or --map (or --scenes DIR for a scene-classification model)")
    offset = _offset(label_offset, bundle)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out else Path(tmp) / "map"
        if map_path:
            folder.mkdir(parents=True, exist_ok=True)
        else:
            predict_landuse(bundle, list(images), folder, overlap=map_overlap(overlap, window, bundle),
                            tta=tta if tta is not None else bool(bundle.extra.get("tta", False)), window=window,
                            device=device,
                            vectorise=False, overwrite=True, progress=not quiet)
        metrics = score_map(Path(map_path) if map_path else folder / "landuse.tif", Path(reference), bundle.class_ids,
                            [c.name for c in bundle.classes], blocks=blocks, parity=parity,
                            mask=Path(mask) if mask else None, offset=offset, reference_field=reference_field)
        if out:
            (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    frame = f", map read at offset {list(offset)} px" if offset and any(offset) else ""
    click.echo(f"{metrics['scope']}{frame}: OA {metrics['overall_accuracy']}, kappa {metrics['kappa']}, "
               f"{metrics['n']} pixels (coverage {metrics['coverage']})")
    found = bundle.extra.get("label_offset")
    if found and label_offset == "none":
        click.echo(f"note: this model's labels were registered {found} px off its imagery; --label-offset model "
                   "scores in their frame")
    for name, m in metrics["per_class"].items():
        click.echo(f"  {name:<16} precision {m['precision']:.3f}  recall {m['recall']:.3f}  f1 {m['f1']:.3f}  "
                   f"support {m['support']}")


def _offset(text: str, bundle) -> tuple[int, int] | None:
    """--label-offset: none, model (the bundle's) or DY,DX."""
    from geocamat.errors import ConfigError

    if text == "none":
        return None
    if text == "model":
        found = bundle.extra.get("label_offset")
        return tuple(found) if found else None
    try:
        dy, dx = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--label-offset must be none, model or DY,DX (pixels, e.g. 1,1), not {text!r}") from None
    return dy, dx


def _evaluate_detection(bundle, images, reference, reference_field, out, overlap, device, score_threshold,
                        class_agnostic) -> None:
    """``geocamat evaluate`` for a detection model: detect over IMAGES, score against the --reference boxes."""
    from geocamat.errors import ConfigError
    from geocamat.workflows.detection import evaluate_detection, write_json

    if not reference or not images:
        raise ConfigError("a detection model is scored with --reference BOXES (.xml, .csv, .gpkg, DOTA .txt) and "
                          "the IMAGES they label")
    options = {k: v for k, v in dict(score_threshold=score_threshold, overlap=overlap,
                                     device=None if device == "auto" else device).items() if v is not None}
    options["class_agnostic"] = class_agnostic
    if reference_field:
        options["label_field"] = reference_field
    report = evaluate_detection(bundle, list(images), [reference], options)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / "metrics.json", report)
    scene, tiles, thr = report["scene"], report["tiles"], report["score_threshold"]
    n = len(report["images"])
    click.echo(f"{n} image{'s' if n != 1 else ''}: {scene['labelled']} labelled objects, {scene['found']} found at "
               f"score >= {thr:g}" + (" (classes counted as one)" if report["class_agnostic"] else ""))
    click.echo(f"  mAP@0.5 {scene['map_50']:.3f}  mAP@[.5:.95] {scene['map']:.3f}  mAP@0.75 {scene['map_75']:.3f}")
    for iou, m in (("0.5", scene), ("0.4", scene["iou_40"])):
        click.echo(f"  IoU {iou}: precision {m['precision']:.3f}  recall {m['recall']:.3f}  f1 {m['f1']:.3f}  "
                   f"({m['tp']} right, {m['fp']} wrong)")
    names = [c.name for c in bundle.classes] if not report["class_agnostic"] else ["all"]
    per_class = scene.get("ap_50_per_class") or []
    if len(names) > 1:
        for name, ap in zip(names, per_class, strict=False):
            click.echo(f"  {name:<16} AP@0.5 {'-' if ap is None else f'{ap:.3f}'}")
    click.echo(f"  tiles of {bundle.tile_size} px without overlap (boxes clipped): mAP@0.5 {tiles['map_50']:.3f}  "
               f"mAP@[.5:.95] {tiles['map']:.3f}")
    for note in report["notes"]:
        click.echo(note)
