"""``geocamat info``: describe a GeoTIFF, vector layer or model bundle."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(path, as_json):
    """Describe PATH: CRS, size, bands or fields; for a bundle, its task, bands, classes and metrics."""
    from geocamat.describe import describe

    summary = describe(path)
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
