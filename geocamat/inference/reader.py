"""Parallel reading of large windows of the input mosaic, on the output grid.

Which files cover a window is looked up in the TorchGeo index (an R-tree over the files' footprints in
the output CRS). Files already on the output grid are read directly (GDAL decodes whole blocks; windows
are block-aligned); others through a ``WarpedVRT`` onto the output grid. Every band comes back as float32
with NaN where a pixel has no valid value. Each reader thread keeps its own file handles (a rasterio
dataset must not be shared between threads); rasterio releases the GIL while GDAL decodes.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from geocamat.inference.grid import OutputGrid


class MosaicReader:
    """Reads windows of the output grid from a mosaic of rasters with a pool of threads.

    Args:
        index: TorchGeo index (GeoDataFrame with ``filepath``) in the output CRS.
        grid: the output grid.
        num_bands: bands per file.
        workers: reader threads.
        piece_width: windows wider than this are split into column pieces read in parallel.
    """

    def __init__(self, index, grid: OutputGrid, num_bands: int, workers: int = 4, piece_width: int = 1024) -> None:
        self.index = index
        self.files = list(index.filepath)
        self.grid = grid
        self.num_bands = num_bands
        self.piece_width = piece_width
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="geocamat-read")
        self._local = threading.local()
        self._all_handles: list = []
        self._lock = threading.Lock()
        self.seconds = 0.0

    # -- handles -----------------------------------------------------------------------------------
    def _handle(self, i: int):
        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = {}
        if i not in handles:
            handles[i] = self._open(self.files[i])
            with self._lock:
                self._all_handles.append(handles[i])
        return handles[i]

    def _open(self, path: str):
        import rasterio
        from rasterio.crs import CRS
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        src = rasterio.open(path)
        g = self.grid
        t, gt = src.transform, g.transform
        same_crs = CRS.from_wkt(g.crs) == src.crs
        col = (t.c - gt.c) / gt.a
        row = (t.f - gt.f) / gt.e
        aligned = (same_crs and abs(t.a - gt.a) < 1e-9 * abs(gt.a) and abs(t.e - gt.e) < 1e-9 * abs(gt.e)
                   and t.b == 0 and t.d == 0 and abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6)
        if aligned:
            return ("direct", src, int(round(row)), int(round(col)))
        # UNIFIED_SRC_NODATA=NO: each band's fill is its own nodata (GDAL's default for one nodata value on every
        # band treats a pixel as nodata only where all bands are, and blends one band's fill into the others' data)
        vrt = WarpedVRT(src, crs=g.crs, transform=gt, width=g.width, height=g.height, resampling=Resampling.bilinear,
                        dtype="float32", nodata=float("nan"), src_nodata=src.nodata, UNIFIED_SRC_NODATA="NO")
        return ("warp", vrt, 0, 0)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for kind, ds, _, _ in self._all_handles:
            if kind == "warp":
                ds.src_dataset.close()
            ds.close()
        self._all_handles.clear()

    # -- reading -----------------------------------------------------------------------------------
    def files_for(self, row0: int, col0: int, row1: int, col1: int) -> list[int]:
        """Indices of the files whose footprint intersects the pixel window."""
        box = self.grid.box(row0, col0, row1, col1)
        hits = self.index.sindex.query(box, predicate="intersects")
        return sorted(int(h) for h in hits)

    def read_into(self, out: np.ndarray, row0: int, col0: int) -> np.ndarray:
        """Fill ``out`` (bands, rows, cols; float32) with the window at (row0, col0); NaN where no data.

        The first file covering the whole window is decoded straight into ``out`` (GDAL converts to float32
        and writes with ``out``'s strides: no intermediate copy); other files fill the pixels still empty.
        """
        import time

        from rasterio.windows import Window

        start = time.perf_counter()
        _, rows, cols = out.shape
        in_rows = min(rows, self.grid.height - row0)  # the part of the window on the grid
        in_cols = min(cols, self.grid.width - col0)
        filled = False
        files = self.files_for(row0, col0, row0 + in_rows, col0 + in_cols) if in_rows > 0 and in_cols > 0 else []
        for i in files:
            kind, ds, r_off, c_off = self._handle(i)
            fr0, fc0 = row0 - r_off, col0 - c_off  # window origin in the file's pixel space
            rr0, rr1 = max(fr0, 0), min(fr0 + in_rows, ds.height)
            cc0, cc1 = max(fc0, 0), min(fc0 + in_cols, ds.width)
            if rr0 >= rr1 or cc0 >= cc1:
                continue
            window = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
            dst = out[:, rr0 - fr0:rr1 - fr0, cc0 - fc0:cc1 - fc0]
            if not filled and dst.shape[1:] == (rows, cols):
                ds.read(window=window, out=dst)
                self._nodata_to_nan(dst, ds, kind)
                filled = True
                continue
            if not filled:
                out.fill(np.nan)
                filled = True
            data = ds.read(window=window, out_dtype="float32")
            self._nodata_to_nan(data, ds, kind)
            empty = np.isnan(dst)
            dst[empty] = data[empty]
        if not filled:
            out.fill(np.nan)
        self.seconds += time.perf_counter() - start
        return out

    @staticmethod
    def _nodata_to_nan(data: np.ndarray, ds, kind: str) -> None:
        if any(np.dtype(t).kind == "f" for t in ds.dtypes):  # an infinite value is no reflectance: nodata, as NaN
            np.copyto(data, np.nan, where=np.isinf(data))  # (it turned a 10 x 10 px block into 1,024 px of class)
        if kind != "direct":
            return
        for b, nd in enumerate(ds.nodatavals):
            if nd is not None and not math.isnan(nd):
                band = data[b]
                band[band == nd] = np.nan

    def submit(self, out: np.ndarray, row0: int, col0: int, skip=None) -> list[Future]:
        """Read the window into ``out`` in column pieces on the pool; returns the futures.

        Args:
            skip: optional ``f(row0, col0, row1, col1) -> bool``; pieces it accepts are only filled with NaN.
        """
        _, rows, cols = out.shape
        width = self.piece_width
        # piece edges on multiples of the piece width in grid columns: block-aligned for aligned inputs
        edges = [0] + [c - col0 for c in range((col0 // width + 1) * width, col0 + cols, width)] + [cols]
        futures = []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            view = out[:, :, a:b]
            if skip is not None and skip(row0, col0 + a, row0 + rows, col0 + b):
                view.fill(np.nan)
                continue
            futures.append(self.pool.submit(self.read_into, view, row0, col0 + a))
        return futures
