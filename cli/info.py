"""``geocamat info``: describe a GeoTIFF, vector layer or model bundle; ``--check`` a bundle against inputs."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--check", is_flag=True,
              help="PATHS are a bundle and images: report what would go wrong when mapping them (bands, CRS, "
                   "resolution vs the model, unreadable blocks, labels/AOI overlap and classes).")
@click.option("--labels", default=None, help="With --check: a label raster, label layer or AOI to check too.")
@click.option("--label-field", default=None, help="With --check: the class field of a vector --labels.")
def info(paths, as_json, check, labels, label_field):
    """Describe PATH: CRS, size, bands or fields; for a bundle, bands, classes and metrics.

    With --check: `geocamat info --check BUNDLE IMAGES... [--labels L]`.
    """
    if check:
        _check(paths, labels, label_field, as_json)
        return
    if len(paths) != 1 or labels or label_field:
        raise click.UsageError("give one PATH (or --check BUNDLE IMAGES... to check inputs against a model)")
    from geocamat.describe import describe

    summary = describe(paths[0])
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    for key, value in summary.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            click.echo(f"{key}:")
            for item in value:
                click.echo("  " + ", ".join(f"{k}={v}" for k, v in item.items()))
        else:
            click.echo(f"{key}: {value}")


def _check(paths, labels, label_field, as_json) -> None:
    from geocamat.check import check_against_bundle
    from geocamat.errors import GeocamatError

    if len(paths) < 2:
        raise click.UsageError("--check needs a bundle and at least one image: info --check BUNDLE IMAGES...")
    findings = check_against_bundle(paths[0], list(paths[1:]), labels, label_field)
    if as_json:
        click.echo(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        for finding in findings:
            click.echo(str(finding))
    problems = [f for f in findings if f.level == "problem"]
    if problems:
        more = f" (and {len(problems) - 1} more above)" if len(problems) > 1 else ""
        raise GeocamatError(f"{problems[0].subject}: {problems[0].message}{more}")
