"""``geocamat predict``: run a trained model over whole regions."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import given, overwrite_opt, quiet_opt, refuse_foreign, setting_option

P = "PredictOptions"


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False), help="model.geocamat bundle.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@setting_option(P, "region", "--region")
@setting_option(P, "region_field", "--region-field")
@setting_option(P, "bbox", "--bbox", nargs=4, type=float, metavar="XMIN YMIN XMAX YMAX")
@setting_option(P, "bbox_crs", "--bbox-crs")
@setting_option(P, "crs", "--crs")
@setting_option(P, "res", "--res", type=float)
@setting_option(P, "overlap", "--overlap", type=float)
@setting_option(P, "tta", "--tta/--no-tta")
@setting_option(P, "window", "--window", type=int)
@setting_option(P, "batch_size", "--batch-size", type=int)
@setting_option(P, "workers", "--workers", type=int)
@setting_option(P, "device", "--device")
@setting_option(P, "resume", "--resume", is_flag=True)
@setting_option(P, "probabilities", "--probabilities", is_flag=True)
@setting_option(P, "vector", "--no-vector", "no_vector", is_flag=True, help_prefix="Skip landuse.gpkg. ")
@setting_option(P, "min_polygon_pixels", "--min-polygon-pixels", type=int)
@setting_option(P, "devices", "--devices", type=int)
@setting_option(P, "num_nodes", "--num-nodes", type=int)
@setting_option(P, "score_threshold", "--score-threshold", type=float)
@setting_option(P, "nms_iou", "--nms-iou", type=float)
@overwrite_opt
@quiet_opt
def predict(images, model_path, out, no_vector, overwrite, quiet, **flags):
    """Map IMAGES (files, globs or folders, mosaicked) with a trained model.

    Land use writes landuse.tif (COG, palette, class names) + landuse.qml, confidence.tif, cam.tif,
    landuse.gpkg and report.json; detection writes detections.gpkg and report.json.
    """
    from geocamat.bundle import Bundle
    from geocamat.settings import build
    from geocamat.tasks import task_of_bundle

    bundle = Bundle.load(model_path)
    task = task_of_bundle(bundle)
    options = given(**flags)
    if not options.get("bbox"):
        options.pop("bbox", None)
    if no_vector:
        options["vector"] = False
    refuse_foreign(options, task.PredictOptions, task.NAME, "predict")
    report = task.predict(bundle, list(images), Path(out), build(task.PredictOptions, options, what="predict"),
                          overwrite=bool(overwrite), progress=not quiet, model_path=model_path)
    click.echo(f"wrote {out}: " + _headline(report))


def _headline(report: dict) -> str:
    """One short line about what a prediction did."""
    if "total" in report:  # detection
        return f"{report['total']} objects (" + ", ".join(f"{k} {v}" for k, v in report["counts"].items()) + ")"
    if "rank" in report:  # a rank other than 0 of a run across ranks
        return f"rank {report['rank']} of {report['world']} mapped {report['tiles_processed']} tiles; rank 0 assembles"
    if "regions" in report:
        return f"{len(report['regions'])} regions"
    tiles = report.get("tiles") or {}
    seconds = (report.get("timings") or {}).get("total_s")
    return (f"{tiles.get('tiles_processed', 0)} of {tiles.get('tiles_planned', 0)} tiles mapped"
            + (f" in {seconds:.1f} s" if seconds is not None else ""))
