"""Click options shared by several commands (one place, as in rasterio's rio)."""

from __future__ import annotations

import click

overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
quiet_opt = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
accelerator_opt = click.option("--accelerator", default=None,
                               help="Lightning accelerator: auto (GPU if present), cpu, gpu.  [default: auto]")
devices_opt = click.option("--devices", default=None, help="Devices per node (e.g. 1, 4, auto).  [default: auto]")


def map_overlap(overlap: float | None, window: int | None, bundle) -> float:
    """The window overlap of a land-use map: --overlap, else the library's default (0.125 for --window maps,
    at least 0.75 for dense models, else the model's)."""
    from geocamat.inference.landuse import default_overlap

    if overlap is not None:
        return overlap
    return default_overlap(bundle, window)
