"""Click options shared by several commands (one place, as in rasterio's rio)."""

from __future__ import annotations

import click

overwrite_opt = click.option("--overwrite", is_flag=True,
                             help="Replace the results of an earlier run in the output folder (other files stay).")
quiet_opt = click.option("--quiet", "-q", is_flag=True, help="No progress bars (predict: no summary line).")
accelerator_opt = click.option("--accelerator", default=None,
                               help="Lightning accelerator: auto (GPU if present), cpu, gpu.  [default: auto]")
devices_opt = click.option("--devices", default=None, help="Devices per node (e.g. 1, 4, auto).  [default: auto]")


def map_overlap(overlap: float | None, window: int | None, bundle) -> float:
    """The window overlap of a land-use map: --overlap, else 0.125 for --window maps, else the model's."""
    from geocamat.inference.landuse import WINDOW_OVERLAP

    if overlap is not None:
        return overlap
    return WINDOW_OVERLAP if window else bundle.extra.get("overlap", 0.5)
