"""``geocamat sample``: a stratified random sample of a class map, for labelling reference points."""

from __future__ import annotations

import click


@click.command()
@click.option("--map", "map_path", required=True, type=click.Path(), help="The class map (landuse.tif).")
@click.option("--out", required=True, type=click.Path(), help="The GeoPackage of points to write (.gpkg).")
@click.option("--per-class", default=50, show_default=True, type=int,
              help="Points per map class (with --total: each class's minimum).")
@click.option("--total", default=None, type=int,
              help="Points in all, spread in proportion to the classes' areas (each at least --per-class).")
@click.option("--mask", default=None, type=click.Path(),
              help="Sample only where this raster (any CRS) is non-zero; give evaluate the same --mask.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (the same seed, the same points).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def sample(map_path, out, per_class, total, mask, seed, overwrite):
    """Draw reference points for an accuracy and area assessment: a stratified random sample of the map's pixels,
    the map's classes as strata (Olofsson et al. 2014).

    Writes --out: points at pixel centres with `map_code`, `map_class` and an empty `reference` field, styled by
    map class in QGIS. Fill `reference` with the class each point really is (from field visits or finer
    imagery), then `geocamat evaluate --model M --map MAP --reference OUT --reference-field reference` estimates
    each class's area with its 95% interval. Points left empty are not scored.
    """
    from geocamat.tasks.landuse.reference_sample import write_sample

    summary = write_sample(map_path, out, per_class=per_class, total=total, seed=seed, mask=mask,
                           overwrite=overwrite)
    counts = ", ".join(f"{name} {n}" for name, n in summary["per_class"].items())
    click.echo(f"wrote {summary['out']}: {summary['points']} points ({counts}); fill in their `reference` field, "
               "then: geocamat evaluate --model M --map MAP --reference OUT --reference-field reference")
