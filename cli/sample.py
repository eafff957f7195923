"""``geocamat sample``: a stratified random sample of a class map, for labelling reference points."""

from __future__ import annotations

import click


@click.command()
@click.option("--map", "map_path", required=True, type=click.Path(), help="The class map (landuse.tif).")
@click.option("--out", required=True, type=click.Path(),
              help="The points to write: a GeoPackage (.gpkg), or a CSV table of WGS 84 lon/lat (.csv) for a GPS or "
                   "phone.")
@click.option("--per-class", default=50, show_default=True, type=int,
              help="Points per map class (with --total: each class's minimum).")
@click.option("--total", default=None, type=int,
              help="Points in all, spread in proportion to the classes' areas (each at least --per-class).")
@click.option("--target-se", default=None, type=float,
              help="Size the sample for this standard error of the overall accuracy (e.g. 0.01), from the "
                   "classes' areas and the user's accuracies expected of them (--model's validation map, else 0.8).")
@click.option("--model", default=None, type=click.Path(),
              help="With --target-se: the model bundle whose validation precision per class is expected.")
@click.option("--mask", default=None, type=click.Path(),
              help="Sample only inside this mask: a raster (any CRS, non-zero inside) or polygons (a study area); give "
                   "evaluate the same --mask.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (the same seed, the same points).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def sample(map_path, out, per_class, total, target_se, model, mask, seed, overwrite):
    """Draw reference points for an accuracy and area assessment: a stratified random sample of the map's pixels,
    the map's classes as strata (Olofsson et al. 2014).

    Writes --out: points at pixel centres with `map_code`, `map_class` and an empty `reference` field, styled by
    map class in QGIS. Fill `reference` with the class each point really is (from field visits or finer
    imagery), then `geocamat evaluate --model M --map MAP --reference OUT --reference-field reference` estimates
    each class's area with its 95% interval. Points left empty are not scored.
    """
    from geocamat.tasks.landuse.reference_sample import expected_users, write_sample

    users = None
    if model is not None:
        from geocamat.bundle import Bundle

        users = expected_users(Bundle.load(model))
    summary = write_sample(map_path, out, per_class=per_class, total=total, seed=seed, mask=mask,
                           target_se=target_se, users=users, overwrite=overwrite)
    if target_se is not None:
        source = ("the model's validation map" if users else
                  "0.8 for every class, as the model has no validation map of classes" if model else
                  "0.8 for every class")
        click.echo(f"{summary['points']} points for a standard error of {target_se:g} on the overall accuracy "
                   f"(expected {summary['expected_se']:.4f} with these points per class; user's accuracies expected "
                   f"from {source}; Olofsson et al. 2014)")
    counts = ", ".join(f"{name} {n}" for name, n in summary["per_class"].items())
    masked = f" --mask {mask}" if mask else ""  # the same area, so that the area estimates add up to it
    click.echo(f"wrote {summary['out']}: {summary['points']} points ({counts}); fill in their `reference` field, "
               f"then: geocamat evaluate --model {model or 'MODEL'} --map {map_path} --reference {summary['out']} "
               f"--reference-field reference{masked}")
