"""``geocamat evaluate``: score a model against a reference (land-use map, held-out scenes, or boxes)."""

from __future__ import annotations

import click

from cli.options import given, quiet_opt, refuse_foreign, setting_option
from geocamat.inference.tta import TTA_VIEWS

E = "EvaluateOptions"


@click.command()
@click.argument("images", nargs=-1)
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False), help="model.geocamat bundle.")
@setting_option(E, "reference", "--reference", multiple=False)
@setting_option(E, "reference_field", "--reference-field")
@setting_option(E, "scenes", "--scenes", type=click.Path(file_okay=False))
@setting_option(E, "all_images", "--all-images", is_flag=True)
@setting_option(E, "blocks", "--blocks", type=int)
@setting_option(E, "parity", "--parity", type=click.Choice(["odd", "even"]))
@setting_option(E, "map", "--map", "map_path", type=click.Path(dir_okay=False))
@setting_option(E, "mask", "--mask", type=click.Path(dir_okay=False))
@setting_option(E, "out", "--out", type=click.Path(file_okay=False))
@setting_option(E, "overlap", "--overlap", type=float)
@setting_option(E, "tta", "--tta/--no-tta")
@setting_option(E, "tta_views", "--tta-views", type=click.Choice(TTA_VIEWS))
@setting_option(E, "window", "--window", type=int)
@setting_option(E, "label_offset", "--label-offset", metavar="none|model|DY,DX")
@setting_option(E, "score_threshold", "--score-threshold", type=float)
@setting_option(E, "nms_iou", "--nms-iou", type=float)
@setting_option(E, "match_iou", "--match-iou", type=float)
@setting_option(E, "duplicate_iou", "--duplicate-iou", type=float)
@setting_option(E, "duplicate_merge", "--duplicate-merge", type=click.Choice(["nms", "wbf", "none"]))
@setting_option(E, "class_agnostic", "--class-agnostic", is_flag=True)
@setting_option(E, "region", "--region")
@setting_option(E, "region_field", "--region-field")
@setting_option(E, "device", "--device")
@setting_option(E, "force", "--force", is_flag=True)
@quiet_opt
def evaluate(images, model_path, map_path, quiet, **flags):
    """Score a model against a reference, by the model's task.

    Land use: map IMAGES (or read --map) and report OA, kappa and per-class metrics against --reference; a
    point reference also gives each class's area estimated from the sample with 95% intervals (Olofsson et al.
    2014). Scene classification: --scenes DIR reports accuracy on the held-out scenes (--all-images: every image of a
    test folder), clean and under test-time occlusion, and CAM deletion/insertion AUC. Detection: detect in
    IMAGES and report mAP@0.5, mAP@[.5:.95], precision and recall against --reference boxes.
    """
    from geocamat.bundle import Bundle
    from geocamat.settings import build
    from geocamat.tasks import task_of_bundle

    bundle = Bundle.load(model_path)
    task = task_of_bundle(bundle)
    options = given(map=map_path, **flags)
    if task.NAME == "detection" and "reference" in options:
        options["reference"] = [options["reference"]]
    refuse_foreign(options, task.EvaluateOptions, task.NAME, "evaluate")
    task.evaluate(bundle, list(images), build(task.EvaluateOptions, options, what="evaluate"), progress=not quiet,
                  log=click.echo)
