"""``geocamat predict``: run a trained model over whole regions."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import given, overwrite_opt, quiet_opt, refuse_foreign, setting_option
from geocamat.inference.tta import TTA_VIEWS

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
@setting_option(P, "tta_views", "--tta-views", type=click.Choice(TTA_VIEWS))
@setting_option(P, "window", "--window", type=int)
@setting_option(P, "batch_size", "--batch-size", type=int)
@setting_option(P, "workers", "--workers", type=int)
@setting_option(P, "device", "--device")
@setting_option(P, "resume", "--resume", is_flag=True)
@setting_option(P, "probabilities", "--probabilities", is_flag=True)
@setting_option(P, "vector", "--no-vector", "no_vector", is_flag=True,
                help_text="Skip landuse.gpkg (the polygons of the classes, written by default).")
@setting_option(P, "min_polygon_pixels", "--min-polygon-pixels", type=int)
@setting_option(P, "min_area", "--min-area", type=float, metavar="HECTARES")
@setting_option(P, "require_all_bands", "--require-all-bands", is_flag=True)
@setting_option(P, "nodata", "--nodata", type=float)
@setting_option(P, "devices", "--devices", type=int)
@setting_option(P, "num_nodes", "--num-nodes", type=int)
@setting_option(P, "score_threshold", "--score-threshold", type=float)
@setting_option(P, "chip_size", "--chip-size", type=int)
@setting_option(P, "nms_iou", "--nms-iou", type=float)
@setting_option(P, "match_iou", "--match-iou", type=float)
@setting_option(P, "duplicate_iou", "--duplicate-iou", type=float)
@setting_option(P, "duplicate_merge", "--duplicate-merge", type=click.Choice(["nms", "wbf", "none"]))
@setting_option(P, "force", "--force", is_flag=True)
@overwrite_opt
@quiet_opt
def predict(images, model_path, out, no_vector, overwrite, quiet, **flags):
    """Map IMAGES (files, globs or folders, mosaicked) with a trained model.

    Land use writes landuse.tif (COG, palette, class names) + landuse.qml, confidence.tif, cam.tif,
    landuse.gpkg and report.json; detection writes detections.gpkg and report.json; a scene model classifies
    each image: scenes.csv, report.json (and scenes.gpkg of georeferenced images' footprints).
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
    from geocamat.output_lock import output_lock

    with output_lock(Path(out)):  # one run at a time writes --out
        report = task.predict(bundle, list(images), Path(out), build(task.PredictOptions, options, what="predict"),
                              overwrite=bool(overwrite), progress=not quiet, model_path=model_path)
    partial = report.get("pixels", {}).get("partial_bands", 0)
    if partial and not options.get("require_all_bands"):
        click.echo(f"note: {partial} pixels have some bands nodata and were classified with those bands filled by "
                   "their mean (where: partial_bands.tif); --require-all-bands maps them as nodata", err=True)
    if not quiet:
        click.echo(summary_line(Path(out), report))
    for note in report.get("notes", []):
        click.echo(note, err=True)


def _count(n: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary_line(out: Path, report: dict) -> str:
    """One short line about a finished predict (the details are in report.json)."""
    if "rank" in report:  # a rank other than 0 of a run across ranks
        return f"rank {report['rank']} of {report['world']} mapped {report['tiles_processed']} tiles; rank 0 assembles"
    if "regions" in report:
        return f"wrote {out}: {len(report['regions'])} regions (report.json)"
    if report.get("task") == "scenes":
        agree = report.get("folder_agreement")
        chips = f", {_count(report['chips'], 'chip')}" if report.get("chips") else ""
        what = _count(report["images"], "image") + chips
        return (f"wrote {out}: {what} (" + ", ".join(f"{k} {v}" for k, v in report["counts"].items())
                + ")" + (f"; the class is the folder's name for {agree['share']:.1%} of them" if agree else ""))
    if report.get("task") == "detection":
        return (f"wrote {out}: {_count(report.get('total', 0), 'object')} in "
                f"{_count(len(report.get('inputs', [])), 'image')} ("
                + ", ".join(f"{k} {v}" for k, v in report.get("counts", {}).items()) + ")")
    tiles = report.get("tiles") or {}
    parts = [f"{tiles[k]} {label}" for k, label in (("tiles_processed", "tiles mapped"),
                                                    ("skipped_no_data", "skipped (no data)")) if k in tiles]
    seconds = (report.get("timings") or {}).get("total_s")
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    return f"wrote {out}" + (f": {', '.join(parts)}" if parts else "")
