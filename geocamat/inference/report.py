"""report.json of a land-use prediction run: grid, plan, tiles, per-class areas, timings, memory."""

from __future__ import annotations

from geocamat.inference.assemble import Assembly
from geocamat.inference.plan import Plan

#: Tile counters summed over the units of a run.
TILE_KEYS = ("tiles_planned", "tiles_processed", "skipped_outside_aoi", "skipped_no_data", "recomputed_at_seams")


def crs_record(wkt: str) -> dict:
    """The output CRS as the input has it: WKT, PROJJSON, and an EPSG code only when it matches exactly.

    GDAL's lookup accepts a 70% match by default: the NC sample's CRS (an unnamed Lambert conformal conic
    with an unknown datum) was reported as EPSG:32119. Here ``epsg`` is null unless GDAL matches it at 100%;
    ``epsg_closest`` is its 70% match, for information only.
    """
    from pyproj import CRS as ProjCRS
    from rasterio.crs import CRS

    from geocamat.data.crs import epsg_codes

    exact, closest = epsg_codes(CRS.from_wkt(wkt))
    return {"crs": wkt, "crs_projjson": ProjCRS.from_wkt(wkt).to_json_dict(), "epsg": exact,
            "epsg_closest": closest}


def run_report(meta: dict, plan: Plan, done: dict, assembly: Assembly, *, style, dtype: str, nodata, runs: int,
               resumed: bool, processed_now: int, timings: dict, memory: dict, require_all_bands: bool = False) -> dict:
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
        require_all_bands: whether pixels with some bands nodata were mapped as nodata.
    """
    from rasterio.crs import CRS

    from geocamat.data.crs import metres_per_unit

    g = plan.grid
    crs = CRS.from_wkt(g.crs)
    pixel_area = abs(g.transform.a * g.transform.e)
    unit_m = metres_per_unit(crs)
    metres = unit_m == 1.0
    tiles = {key: sum(u[key] for u in done.values()) for key in TILE_KEYS}
    counts = assembly.counts
    classes = []
    geodesic = assembly.areas
    for cid, name, color in zip(style.ids, style.names, style.colors, strict=True):
        pixels = int(counts[cid]) if cid < len(counts) else 0
        entry = {"id": cid, "name": name, "color": color, "pixels": pixels, "area": pixels * pixel_area}
        if unit_m:
            entry["area_ha"] = pixels * pixel_area * unit_m**2 / 1e4
        elif geodesic is not None:
            entry["area"] = float(geodesic[cid]) if cid < len(geodesic) else 0.0
            entry["area_ha"] = entry["area"] / 1e4
        classes.append(entry)
    stream = max(timings["stream_s"], 1e-9)
    return {
        "tool": "geocamat predict", "task": "landuse", **meta,
        "grid": {**crs_record(g.crs), "transform": list(g.transform)[:6], "width": g.width,
                 "height": g.height, "res": list(g.res), "nodata": nodata, "dtype": dtype,
                 "area_units": "m2" if metres else ("m2 on the ellipsoid" if geodesic is not None
                                                     else "crs units squared")},
        "plan": {"tile": plan.tile, "stride": plan.stride, "band_rows": plan.band_rows,
                 "block_cols": plan.block_cols, "units": plan.n_units},
        "tiles": tiles,
        "pixels": {"partial_bands": sum(u.get("partial_band_pixels", 0) for u in done.values()),
                   "partial_bands_mapped": not require_all_bands},
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
