"""Final assembly of a run: VRT mosaics of the unit pieces become Cloud-Optimised GeoTIFFs (with the
overview levels computed per unit), the polygons are dissolved across unit seams into one GeoPackage layer,
and the per-unit class counts are summed."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geocamat.inference.plan import Plan, unit_name


@dataclass
class FloatOutput:
    """A float GeoTIFF cut from the unit's float pieces: its file name, 1-based bands of the pieces and band
    descriptions."""

    name: str
    bands: list[int]
    descriptions: list[str]


@dataclass
class Assembly:
    """What the assembly wrote: output file names, polygons, summed class counts and seconds per output, and for a
    geographic grid the classes' areas on the ellipsoid (m^2; None otherwise)."""

    outputs: list[str]
    counts: np.ndarray
    polygons: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    areas: np.ndarray | None = None


def unit_pieces(plan: Plan) -> list:
    """(unit name, :class:`geocamat.outputs.raster.Piece` without a path) of every unit of the plan."""
    from geocamat.outputs.raster import Piece

    pieces = []
    for j in range(plan.n_blocks):
        x0, x1, _ = plan.block(j)
        for i in range(plan.n_bands):
            y0, y1, _ = plan.band(i)
            pieces.append((unit_name(j, i), Piece(Path(), x0, y0, x1 - x0, y1 - y0)))
    return pieces


def assemble(work: Path, plan: Plan, *, style, dtype: str, nodata, floats: list[FloatOutput],
             overview_factors: list[int], vectorise: bool, min_polygon_pixels: int,
             partial_bands: bool = False, fields: dict | None = None) -> Assembly:
    """Build the final outputs in ``work`` from the unit files in ``work/units``.

    Args:
        work: the run's partial folder.
        plan: the run's unit plan.
        style: the classes' :class:`geocamat.outputs.raster.ClassStyle`.
        dtype: class raster data type.
        nodata: class raster nodata value.
        floats: the float GeoTIFFs to cut from the float pieces.
        overview_factors: overview levels computed per unit ([]: GDAL computes them).
        vectorise: also write ``landuse.gpkg``.
        min_polygon_pixels: drop smaller polygons.
        partial_bands: also write ``partial_bands.tif`` (with its ``.qml``) from the units' mask pieces
            (:mod:`geocamat.outputs.partial_bands`).
        fields: columns of one value for every polygon of ``landuse.gpkg`` (a region's ``region``).
    """
    from dataclasses import replace

    from affine import Affine

    from geocamat.outputs import partial_bands as mask
    from geocamat.outputs.attribute_table import write_attribute_table
    from geocamat.outputs.qml import pseudocolor_qml, write_paletted_qml
    from geocamat.outputs.raster import Piece, mosaic_vrt, to_cog
    from geocamat.outputs.vector import write_polygons_gpkg

    g, units = plan.grid, work / "units"
    pieces = unit_pieces(plan)
    common = dict(width=g.width, height=g.height, crs_wkt=g.crs, transform=g.transform)

    def mosaic(name: str, kind: str, **kw) -> Path:
        """VRT of the pieces of one kind, with VRTs of its overview levels as overviews."""
        levels = []
        for f in overview_factors:
            level = [Piece(units / f"{n}_{kind}_o{f}.tif", p.col_off // f, p.row_off // f, -(-p.width // f),
                           -(-p.height // f)) for n, p in pieces]
            levels.append(mosaic_vrt(work / f"{name}_o{f}.vrt", level, width=-(-g.width // f),
                                     height=-(-g.height // f), crs_wkt=g.crs,
                                     transform=g.transform @ Affine.scale(f), **kw))
        full = [replace(p, path=units / f"{n}_{kind}.tif") for n, p in pieces]
        return mosaic_vrt(work / f"{name}.vrt", full, overviews=levels, **common, **kw)

    jobs = [(mosaic("landuse", "class", dtype=dtype, count=1, nodata=nodata, style=style,
                    descriptions=["land use class"]), "landuse.tif", "MODE", "DEFLATE")]
    write_paletted_qml(work / "landuse.qml", style)
    outputs = ["landuse.tif", "landuse.qml"]
    if partial_bands:  # the same grid, tiling, compression and overviews (mode) as landuse.tif
        jobs.append((mosaic(mask.NAME, "partial", dtype=mask.DTYPE, count=1, nodata=mask.NODATA, style=mask.STYLE,
                            descriptions=["mapped from partly filled bands"]), mask.TIF, "MODE", "DEFLATE"))
        write_paletted_qml(work / mask.QML, mask.STYLE)
        outputs += [mask.TIF, mask.QML]
    for out in floats:
        vrt = mosaic(out.name, "float", dtype="float32", count=len(out.bands), nodata=float("nan"),
                     descriptions=out.descriptions, source_bands=out.bands)
        jobs.append((vrt, f"{out.name}.tif", "AVERAGE", "ZSTD"))  # float COGs: ZSTD writes ~2.5x faster
        (work / f"{out.name}.qml").write_text(pseudocolor_qml(label=out.name))  # a colour ramp in QGIS, not grey
        outputs += [f"{out.name}.tif", f"{out.name}.qml"]
    # on machines with cores to spare the COGs are built side by side (GDAL works without the GIL; each
    # build holds its own full-width overview buffers) while the polygons are merged here
    cpus = os.cpu_count() or 1
    side_by_side = max(1, min(len(jobs), cpus // 4))
    pool = ThreadPoolExecutor(max_workers=side_by_side, thread_name_prefix="geocamat-cog")
    seconds: dict[str, float] = {}

    def build(vrt, name, resampling, compress):
        start = time.perf_counter()
        to_cog(vrt, work / name, resampling=resampling, threads=max(1, cpus // side_by_side), compress=compress)
        seconds[f"{name}_s"] = time.perf_counter() - start

    cogs = [pool.submit(build, *job) for job in jobs]
    polygons = None
    try:
        if vectorise:
            from rasterio.crs import CRS

            from geocamat.data.crs import metres_per_unit
            from geocamat.outputs.geodesic import geodesic_rows

            unit_metres = metres_per_unit(CRS.from_wkt(g.crs)) or 0.0
            start = time.perf_counter()
            polygons = write_polygons_gpkg(
                work / "landuse.gpkg", [units / f"{n}_poly.npz" for n, _ in pieces], transform=g.transform,
                crs_wkt=g.crs, style=style, min_pixels=min_polygon_pixels, unit_metres=unit_metres,
                row_areas=geodesic_rows(g), fields=fields)
            outputs.append("landuse.gpkg")
            seconds["landuse.gpkg_s"] = time.perf_counter() - start
        for cog in cogs:
            cog.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    write_attribute_table(work / "landuse.tif", style)  # the class names for ArcGIS and gdalinfo (moves with it)
    counts = sum(np.load(units / f"{n}_counts.npy") for n, _ in pieces)
    area_files = [units / f"{n}_area.npy" for n, _ in pieces]
    areas = sum(np.load(f) for f in area_files) if all(f.exists() for f in area_files) else None
    return Assembly(outputs, counts, polygons, seconds, areas)
