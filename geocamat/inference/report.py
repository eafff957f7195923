"""report.json of a land-use prediction run: grid, plan, tiles, per-class areas, timings, memory."""

from __future__ import annotations

from geocamat.inference.assemble import Assembly
from geocamat.inference.plan import Plan

#: Tile counters summed over the units of a run.
TILE_KEYS = ("tiles_planned", "tiles_processed", "skipped_outside_aoi", "skipped_no_data", "recomputed_at_seams")


def run_report(meta: dict, plan: Plan, done: dict, assembly: Assembly, *, style, dtype: str, nodata, runs: int,
               resumed: bool, processed_now: int, timings: dict, memory: dict) -> dict:
    """The report of one run over one grid.

    Args:
        meta: settings, model, inputs and region (copied in).
        plan: the unit plan.
        done: the manifest's finished units (name -> tile counters).
        assembly: what the final assembly wrote.
        style: the classes' style (ids, names, colours).
        dtype: class raster data type.
        nodata: class raster nodata value.
        runs: runs that contributed (2 after one resume).
        resumed: whether units of an earlier run were reused.
        processed_now: tiles computed by this run (throughput).
        timings: seconds per stage.
        memory: peak resident memory.
    """
    from rasterio.crs import CRS

    g = plan.grid
    crs = CRS.from_wkt(g.crs)
    pixel_area = abs(g.transform.a * g.transform.e)
    metres = bool(crs.is_projected and crs.linear_units_factor[1] == 1.0)
    tiles = {key: sum(u[key] for u in done.values()) for key in TILE_KEYS}
    counts = assembly.counts
    classes = []
    for cid, name, color in zip(style.ids, style.names, style.colors, strict=True):
        pixels = int(counts[cid]) if cid < len(counts) else 0
        entry = {"id": cid, "name": name, "color": color, "pixels": pixels, "area": pixels * pixel_area}
        if metres:
            entry["area_ha"] = pixels * pixel_area / 1e4
        classes.append(entry)
    stream = max(timings["stream_s"], 1e-9)
    return {
        "tool": "geocamat predict", "task": "landuse", **meta,
        "grid": {"crs": g.crs, "epsg": crs.to_epsg(), "transform": list(g.transform)[:6], "width": g.width,
                 "height": g.height, "res": list(g.res), "nodata": nodata, "dtype": dtype,
                 "area_units": "m2" if metres else "crs units squared"},
        "plan": {"tile": plan.tile, "stride": plan.stride, "band_rows": plan.band_rows,
                 "block_cols": plan.block_cols, "units": plan.n_units},
        "tiles": tiles,
        "classes": classes,
        "polygons": assembly.polygons,
        "outputs": assembly.outputs,
        "resumed": resumed,
        "runs": runs,
        "timings": timings,
        "memory": memory,
        "throughput": {"tiles_per_s_stream": processed_now / stream,
                       "tiles_per_s_total": processed_now / max(timings["total_s"], 1e-9),
                       "megapixels_per_s_total": g.width * g.height / 1e6 / max(timings["total_s"], 1e-9)},
    }
