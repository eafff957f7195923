"""Writing finished units: raster pieces (with their overview levels), polygons, class counts and the carry,
on writer threads; each unit is recorded in the manifest as soon as its files are on disk."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from geocamat.inference.manifest import Manifest
from geocamat.inference.telemetry import HostTimes


class UnitWriter:
    """A pool of writer threads for the units of one run.

    Args:
        units_dir: folder of the unit files (``work/units``).
        manifest: where finished units are recorded.
        times: host stage timings.
        writers: writer threads.
        nodata: nodata value of the class pieces.
        overview_factors: overview levels computed per unit ([] when GDAL computes them at the end).
        vectorise: polygonise the class pieces.
        max_class: largest class id (length of the per-unit class counts).
        polygoniser: worker processes for polygons (:class:`geocamat.outputs.vector.Polygoniser`) or None
            to polygonise in the writer thread.
        full_shape: (height, width) of the output grid.
        min_region_pixels: minimum mapping unit: smaller regions of the class map are merged into their largest
            neighbour before anything is written (:func:`geocamat.outputs.sieve.sieve_classes`; regions that
            touch another unit are kept, their polygons are checked after the seams are merged).
        row_areas: for a geographic grid, ``(row0, rows) -> m^2 of a pixel of each row``
            (:func:`geocamat.outputs.geodesic.row_areas_m2`): each unit also saves its classes' areas on the
            ellipsoid; None for projected grids.
    """

    def __init__(self, units_dir: Path, manifest: Manifest, times: HostTimes, *, writers: int, nodata,
                 overview_factors: list[int], vectorise: bool, max_class: int, polygoniser,
                 full_shape: tuple[int, int], min_region_pixels: int = 0, row_areas=None) -> None:
        self.units = Path(units_dir)
        self.manifest, self.times = manifest, times
        self.nodata, self.overview_factors = nodata, overview_factors
        self.vectorise, self.max_class, self.polygoniser = vectorise, max_class, polygoniser
        self.full_shape = list(full_shape)
        self.min_region_pixels = int(min_region_pixels)
        self.row_areas = row_areas
        self.pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="geocamat-write")

    def submit(self, name: str, result: dict, carry, stats: dict, prev: str | None) -> Future:
        """Write unit ``name`` (``result``: class and float arrays with their offsets; ``carry``: the rows the
        next band adds to, or None) and record it with ``stats``; ``prev`` is the unit before it in its
        column block (its carry is removed once both are recorded)."""
        carry_np = carry.cpu().numpy() if carry is not None else None
        return self.pool.submit(self._write, name, result, carry_np, stats, prev)

    def close(self) -> None:
        """Finish the writes submitted (each is recorded, so an interrupted run keeps every computed unit)."""
        self.pool.shutdown(wait=True)

    def carry_path(self, name: str) -> Path:
        return self.units / f"{name}_carry.npy"

    def _write(self, name: str, result: dict, carry: np.ndarray | None, stats: dict, prev: str | None) -> None:
        if self.min_region_pixels > 1:
            self.times.timed("sieve_s_all_threads", self._sieve, result)
        self.times.timed("write_s_all_threads", self._write_levels, name, result)
        job = dict(piece=str(self.units / f"{name}_class.tif"), nodata=int(self.nodata),
                   row_off=int(result["row_off"]), col_off=int(result["col_off"]), full_shape=self.full_shape,
                   out=str(self.units / f"{name}_poly.npz"))
        if self.polygoniser is not None:  # in a worker process: rasterio's shapes() holds the GIL
            self.times.timed("polygonise_s_all_threads", self.polygoniser.run, **job)
        elif self.vectorise:
            from geocamat.outputs.vector import polygonise_piece

            self.times.timed("polygonise_s_all_threads", polygonise_piece, **job)
        classes = result["class"][0].astype(np.int64)
        counts = np.bincount(classes.ravel(), minlength=self.max_class + 1)
        np.save(self.units / f"{name}_counts.npy", counts)
        if self.row_areas is not None:
            rows = self.row_areas(int(result["row_off"]), classes.shape[0])
            per_pixel = np.broadcast_to(rows[:, None], classes.shape)
            areas = np.bincount(classes.ravel(), weights=per_pixel.ravel(), minlength=self.max_class + 1)
            np.save(self.units / f"{name}_area.npy", areas)
        if carry is not None:
            tmp = self.units / f"{name}_carry.part.npy"
            np.save(tmp, carry)
            os.replace(tmp, self.carry_path(name))
        self.manifest.record(name, {**stats, "prev_carry": prev and f"{prev}_carry.npy"})
        if prev is not None and prev in self.manifest:  # a resume now starts after this unit at the earliest
            self.carry_path(prev).unlink(missing_ok=True)

    def _sieve(self, result: dict) -> None:
        """Apply the minimum mapping unit to the unit's class ids (sides bordering other units excepted)."""
        from geocamat.outputs.sieve import sieve_classes

        classes = result["class"][0]
        r0, c0 = int(result["row_off"]), int(result["col_off"])
        h, w = self.full_shape
        inner = (r0 > 0, c0 > 0, r0 + classes.shape[0] < h, c0 + classes.shape[1] < w)
        result["class"] = sieve_classes(classes, int(self.nodata), self.min_region_pixels, inner)[None]

    def _write_levels(self, name: str, result: dict) -> None:
        """The unit's class and float pieces (and its partial-bands mask piece, if any), and those of each
        overview level."""
        from geocamat.outputs import partial_bands
        from geocamat.outputs.overviews import pyramid
        from geocamat.outputs.raster import write_piece

        kinds = [("class", self.nodata), ("float", float("nan"))]
        if "partial" in result:
            kinds.append(("partial", partial_bands.NODATA))
        for kind, nodata in kinds:
            write_piece(self.units / f"{name}_{kind}.tif", result[kind], nodata)
            levels = pyramid(result[kind], self.overview_factors, classes=kind != "float", nodata=nodata)
            for f, level in zip(self.overview_factors, levels, strict=True):
                write_piece(self.units / f"{name}_{kind}_o{f}.tif", level, nodata)
