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
@click.option("--force", is_flag=True, help="Map anyway images at a pixel size beyond 4x the model's.")
@quiet_opt
def evaluate(images, model_path, reference, reference_field, scenes, blocks, parity, map_path, mask, out, overlap,
             tta, window, label_offset, device, force, quiet):
    """Map IMAGES with the model and report OA, kappa and per-class metrics against --reference.

    For a scene-classification model, --scenes DIR reports accuracy on the held-out scenes, clean and under
    test-time occlusion (random 10/25/40%, top-CAM 10/25%, synthetic cloud, noise fill) and CAM
    deletion/insertion AUC.
    """
    from geocamat.bundle import Bundle
    from geocamat.errors import ConfigError
    from geocamat.inference.landuse import predict_landuse
    from geocamat.preflight import before_evaluate
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
    if not reference or not (images or map_path):
        raise ConfigError("give --reference and IMAGES or --map (or --scenes DIR for a scene-classification model)")
    offset = _offset(label_offset, bundle)
    before_evaluate(images, map_path, reference, mask, bundle=bundle, force=force)
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
