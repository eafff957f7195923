"""``geocamat predict``: run a trained model over whole regions."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.options import map_overlap, overwrite_opt, quiet_opt


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False), help="model.geocamat bundle.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--region", default=None, help="Vector AOI (any CRS); windows outside it are skipped.")
@click.option("--region-field", default=None, help="One output per value of this AOI field (subfolders).")
@click.option("--bbox", nargs=4, type=float, default=None, metavar="XMIN YMIN XMAX YMAX", help="Bounding box AOI.")
@click.option("--bbox-crs", default=None, help="CRS of --bbox (default: the images' CRS), e.g. EPSG:4326.")
@click.option("--crs", default=None, help="Output CRS (default: the input's).")
@click.option("--res", type=float, default=None, help="Output pixel size in output CRS units (default: input's).")
@click.option("--overlap", type=float, default=None, help="Window overlap fraction.  [default: the model's]")
@click.option("--tta/--no-tta", default=None,
              help="Average each tile over its 8 flips/quarter turns (8x model cost).  [default: the model's]")
@click.option("--window", type=int, default=None,
              help="Dense-output models: run the fully convolutional model on windows of this size (px, overlap "
                   "0.125 unless --overlap) instead of training-size tiles; faster, maps differ slightly.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--workers", type=int, default=None, help="Reader threads.  [default: auto]")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:1")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in the same --out.")
@click.option("--probabilities", is_flag=True, help="Also write probabilities.tif (one band per class).")
@click.option("--no-vector", is_flag=True, help="Skip landuse.gpkg.")
@click.option("--min-polygon-pixels", type=int, default=0, show_default=True,
              help="Drop land-use polygons smaller than this many pixels.")
@click.option("--score-threshold", type=float, default=None, help="Detection: minimum score.")
@click.option("--nms-iou", type=float, default=None, help="Detection: IoU of cross-tile non-maximum suppression.")
@overwrite_opt
@quiet_opt
def predict(images, model_path, out, region, region_field, bbox, bbox_crs, crs, res, overlap, tta, window, batch_size,
            workers,
            device, resume, probabilities, no_vector, min_polygon_pixels, score_threshold, nms_iou, overwrite, quiet):
    """Map IMAGES (files, globs or folders, mosaicked) with a trained model.

    Land use writes landuse.tif (COG, palette, class names) + landuse.qml, confidence.tif, cam.tif,
    landuse.gpkg and report.json; detection writes detections.gpkg and report.json.
    """
    from geocamat.bundle import Bundle

    bundle = Bundle.load(model_path)
    out = Path(out)
    if bundle.task == "detection":
        from geocamat.workflows.detection import predict_detection
        from geocamat.workflows.outdir import staged_output

        options = {k: v for k, v in dict(score_threshold=score_threshold, nms_iou=nms_iou, batch_size=batch_size,
                                         device=None if device == "auto" else device, overlap=overlap,
                                         model_path=model_path).items() if v is not None}
        with staged_output(out, overwrite) as stage:
            report = predict_detection(bundle, list(images), stage, options, progress=not quiet)
    else:
        from geocamat.inference.landuse import predict_landuse

        report = predict_landuse(bundle, list(images), out, region=region, region_field=region_field,
                                 bbox=tuple(bbox) if bbox else None, bbox_crs=bbox_crs, crs=crs, res=res,
                                 overlap=map_overlap(overlap, window, bundle),
                                 tta=tta if tta is not None else bool(bundle.extra.get("tta", False)), window=window,
                                 batch_size=batch_size, workers=workers, device=device, resume=resume,
                                 write_probabilities=probabilities, vectorise=not no_vector,
                                 min_polygon_pixels=min_polygon_pixels, overwrite=overwrite, progress=not quiet,
                                 model_path=model_path)
    click.echo(f"wrote {out}")
    for note in report.get("notes", []):
        click.echo(note)
    summary = {k: report[k] for k in ("tiles", "tiles_processed", "tiles_skipped", "counts", "timings")
               if k in report}
    if summary:
        click.echo(json.dumps(summary, default=str))

