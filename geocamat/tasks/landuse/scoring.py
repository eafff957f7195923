"""Score a class map against a reference land-cover raster, on validation blocks or under a mask."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from geocamat.data.crs import metres_per_unit
from geocamat.data.vector_layers import VECTOR_SUFFIXES, is_vector, vector_file
from geocamat.errors import ConfigError, InputNotFoundError, InvalidLabelsError, InvalidRasterError
from geocamat.metrics import confusion_matrix, summarise
from geocamat.tasks.landuse.reference_classes import ReferenceCodes, reference_codes

#: Side (px) of the windows a map is scored by: a few float64 arrays of this size are held at a time (8 MiB
#: each), whatever the size of the map or the reference.
SCORE_WINDOW = 1024
#: Source pixels read around a window's footprint in another raster's grid (nearest-neighbour margin).
PAD = 2
#: GDAL's block cache while scoring (MiB), unless GDAL_CACHEMAX is set: GDAL's default (5% of the machine's
#: memory) would keep the decoded blocks of the map and the reference, growing with them.
GDAL_CACHE_MB = 64


@contextmanager
def _bounded_gdal_cache(megabytes: int = GDAL_CACHE_MB) -> Iterator[None]:
    """GDAL's block cache bounded to ``megabytes`` inside the block (a user's ``GDAL_CACHEMAX`` wins)."""
    if "GDAL_CACHEMAX" in os.environ:
        yield
        return
    from rasterio.env import get_gdal_config, set_gdal_config

    old = get_gdal_config("GDAL_CACHEMAX")
    set_gdal_config("GDAL_CACHEMAX", int(megabytes) * 1024 * 1024)
    try:
        yield
    finally:
        set_gdal_config("GDAL_CACHEMAX", old)


def checkerboard_part(shape: tuple[int, int], blocks: int, parity: str, window) -> np.ndarray:
    """``checkerboard(shape, blocks, parity)[window]`` without the whole grid (int8, 1 = scored block)."""
    rows, cols = shape
    r0, c0 = int(window.row_off), int(window.col_off)
    rb = (np.arange(r0, r0 + int(window.height)) * blocks) // rows
    cb = (np.arange(c0, c0 + int(window.width)) * blocks) // cols
    return (((rb[:, None] + cb[None, :]) % 2) == (1 if parity == "odd" else 0)).astype(np.int8)


class RasterOnGrid:
    """A single-band raster brought onto the grid of the open dataset ``like``, one window at a time.

    Each window reads only the source pixels under it (its footprint in the source grid, grown by
    :data:`PAD`) and reprojects them by nearest neighbour (by majority for a raster of finer pixels, as training
    labels are taken) with exact coordinate transforms (``tolerance=0``),
    so a window's values are those a whole-grid reprojection gives there.
    """

    def __init__(self, path: Path, like) -> None:
        import rasterio

        try:
            self.src = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise InvalidRasterError(f"{path} is not a raster GDAL can read (vector references: "
                                     f"{', '.join(VECTOR_SUFFIXES)})") from exc
        if self.src.crs is None:
            self.src.close()
            raise InvalidRasterError(f"{path} has no CRS: assign one with gdal_edit.py -a_srs")
        self.like = like
        from rasterio.warp import Resampling

        from geocamat.data.labels import FINER_LABELS, pixel_share

        finer = pixel_share(self.src, like.crs, like.transform) <= FINER_LABELS  # as training labels are taken
        self.resampling = Resampling.mode if finer else Resampling.nearest

    def close(self) -> None:
        self.src.close()

    def _source_window(self, window):
        """The source pixels under ``window`` of the target grid (grown by :data:`PAD`), or None."""
        import math

        from rasterio.errors import WindowError
        from rasterio.warp import transform_bounds
        from rasterio.windows import Window, from_bounds
        from rasterio.windows import bounds as window_bounds

        src = self.src
        box = window_bounds(window, self.like.transform)
        if src.crs != self.like.crs:
            box = transform_bounds(self.like.crs, src.crs, *box, densify_pts=21)
        try:
            w = from_bounds(*box, transform=src.transform)
        except WindowError:  # e.g. a rotated source: read all of it
            return Window(0, 0, src.width, src.height)
        r0, c0 = max(0, math.floor(w.row_off) - PAD), max(0, math.floor(w.col_off) - PAD)
        r1 = min(src.height, math.ceil(w.row_off + w.height) + PAD)
        c1 = min(src.width, math.ceil(w.col_off + w.width) + PAD)
        return Window(c0, r0, c1 - c0, r1 - r0) if r1 > r0 and c1 > c0 else None

    def _onto(self, data: np.ndarray, source_window, window, resampling=None) -> np.ndarray:
        from rasterio.warp import Resampling, reproject
        from rasterio.windows import transform as window_transform

        out = np.full((int(window.height), int(window.width)), np.nan)
        reproject(data, out, src_transform=window_transform(source_window, self.src.transform),
                  src_crs=self.src.crs, src_nodata=np.nan, dst_transform=window_transform(window, self.like.transform),
                  dst_crs=self.like.crs, dst_nodata=np.nan, resampling=resampling or Resampling.nearest, tolerance=0)
        return out

    def read(self, window) -> np.ndarray:
        """The raster's values on ``window`` of the target grid (float64, NaN where nodata or outside)."""
        source = self._source_window(window)
        if source is None:
            return np.full((int(window.height), int(window.width)), np.nan)
        data = self.src.read(1, window=source, masked=True).astype("float64").filled(np.nan)
        return self._onto(data, source, window, self.resampling)

    def nonzero(self, window) -> np.ndarray:
        """Where the raster is non-zero (and not nodata) on ``window`` of the target grid: a mask's inside."""
        values = self.read(window)
        return np.isfinite(values) & (values != 0)

    def blocks(self, window, blocks: int, parity: str) -> np.ndarray:
        """The checkerboard laid over this raster's extent, on ``window`` of the target grid (1 = scored block,
        0 = other blocks, NaN outside the raster)."""
        source = self._source_window(window)
        if source is None:
            return np.full((int(window.height), int(window.width)), np.nan)
        part = checkerboard_part((self.src.height, self.src.width), blocks, parity, source).astype("float64")
        return self._onto(part, source, window)


class PolygonMask:
    """Polygons (a study area, in any CRS) as a mask on the grid of the open dataset ``like``: inside are the pixels
    whose centre they cover, as a raster mask's non-zero pixels are."""

    def __init__(self, path: Path, like) -> None:
        import shapely

        from geocamat.data.vector_layers import read_vector

        frame = read_vector(path, "mask", within=(tuple(like.bounds), like.crs.to_wkt()))
        if frame.crs is None:
            raise InvalidLabelsError(f"mask {path} has no CRS: set one (e.g. a .prj file or ogr2ogr -a_srs)")
        polygons = frame[frame.geometry.notna() & frame.geom_type.isin(["Polygon", "MultiPolygon"])]
        if polygons.empty:
            raise InvalidLabelsError(f"mask {path} has no polygon over the map: give the study area's polygons (or a "
                                     "raster, non-zero inside)")
        self.area, self.like = shapely.union_all(polygons.to_crs(like.crs).geometry.values), like

    def nonzero(self, window) -> np.ndarray:
        """Where the polygons cover a pixel centre on ``window`` of the target grid."""
        from rasterio.features import rasterize
        from rasterio.windows import transform as window_transform

        return rasterize([(self.area, 1)], out_shape=(int(window.height), int(window.width)),
                         transform=window_transform(window, self.like.transform), fill=0, dtype="uint8").astype(bool)

    def close(self) -> None:
        pass


def mask_on_grid(path: Path, like):
    """A mask on the grid of ``like``: a raster (non-zero inside) or polygons (:class:`PolygonMask`)."""
    return PolygonMask(path, like) if is_vector(path) else RasterOnGrid(Path(path), like)


class VectorOnGrid:
    """A vector reference burnt onto the grid of the open dataset ``like`` one window at a time (each window
    burns the features whose bounding box meets it, in the layer's order, as a whole-grid burn would); class
    names are coded as the model's."""

    def __init__(self, path: Path, like, field: str | None, class_ids: list[int], class_names: list[str]) -> None:
        from geocamat.data.labels import Grid, _vector_frame

        grid = Grid(like.crs.to_wkt(), like.transform, (like.height, like.width))
        frame, self.codes, _, self.sparse = _vector_frame(path, field, grid,
                                                          dict(zip(class_names, class_ids, strict=True)),
                                                          "--reference-field")
        self.geometries, self.index, self.like = frame.geometry.to_numpy(), frame.sindex, like
        self.unlabelled = int(frame.attrs.get("unlabelled", 0))  # features whose class field is empty
        self._points = None
        self.path, self.burnt, self.contested = path, np.zeros(len(frame), dtype=bool), 0

    def points(self, window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A point reference's points in ``window``: (rows, cols) in the window and class codes, one entry per
        point, so that two points in one pixel count twice (burnt, they would count once)."""
        if self._points is None:
            import shapely

            xy, owner = shapely.get_coordinates(self.geometries, return_index=True)
            inv = ~self.like.transform
            col = inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c
            row = inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f
            self._points = (np.floor(row).astype(np.int64), np.floor(col).astype(np.int64),
                            np.asarray(self.codes)[owner].astype(np.int64))
        rows, cols, codes = self._points
        r0, c0 = int(window.row_off), int(window.col_off)
        inside = (rows >= r0) & (rows < r0 + int(window.height)) & (cols >= c0) & (cols < c0 + int(window.width))
        return rows[inside] - r0, cols[inside] - c0, codes[inside]

    def close(self) -> None:
        pass

    def read(self, window) -> np.ndarray:
        """Class codes on ``window`` (float64, NaN where no feature)."""
        from rasterio.windows import bounds as window_bounds
        from rasterio.windows import transform as window_transform

        from geocamat.data.labels import UNLABELLED, box_of, burn_window

        shape = (int(window.height), int(window.width))
        hits = np.sort(self.index.query(box_of(window_bounds(window, self.like.transform))))
        codes, used, disagree = burn_window(self.geometries, np.asarray(self.codes, dtype=np.int32), hits, shape,
                                            window_transform(window, self.like.transform), self.sparse)
        self.burnt[used] = True
        self.contested += disagree
        return np.where(codes == UNLABELLED, np.nan, codes.astype("float64"))

    def notes(self) -> list[str]:
        """What the burn lost, once every window was read (:func:`geocamat.data.labels.burn_notes`)."""
        from geocamat.data.labels import MAX_SMALL_CHECKS, Grid, burn_notes, too_small

        if self.sparse:  # points are scored one by one, not burnt
            return []
        grid = Grid(self.like.crs.to_wkt(), self.like.transform, (self.like.height, self.like.width))
        small = too_small(self.geometries[~self.burnt][:MAX_SMALL_CHECKS], grid)
        return burn_notes(self.path, small, len(self.geometries), self.contested, False, "they are not scored")


class MappedAreas:
    """The area a map gives each class, summed window by window: hectares in a projected CRS in metres or feet,
    on the ellipsoid in a geographic one, else pixels."""

    def __init__(self, m, class_ids: list[int]) -> None:
        from geocamat.outputs.geodesic import row_areas_m2

        self.lookup = np.full(max(int(c) for c in class_ids) + 1, -1, np.int64)  # class id -> its index
        self.lookup[[int(c) for c in class_ids]] = np.arange(len(class_ids))
        self.total = np.zeros(len(class_ids), np.float64)
        crs, t = m.crs, m.transform
        self.unit, self._rows, self._pixel = "pixels", None, 1.0
        if crs is not None and crs.is_geographic and t.b == 0 and t.d == 0:
            self.unit, wkt = "ha", crs.to_wkt()
            self._rows = lambda row0, rows: row_areas_m2(wkt, t, row0, rows) / 1e4
        elif crs is not None and metres_per_unit(crs):
            self.unit, self._pixel = "ha", abs(t.a * t.e - t.b * t.d) * metres_per_unit(crs) ** 2 / 1e4

    def add(self, pred: np.ndarray, region: np.ndarray, row0: int) -> None:
        """Add the classes of ``pred`` where ``region`` (a window whose first row is ``row0``)."""
        values = pred.astype(np.int64)
        idx = np.where((values >= 0) & (values < len(self.lookup)) & region,
                       self.lookup[np.clip(values, 0, len(self.lookup) - 1)], -1)  # -1: not counted
        keep = idx >= 0
        if self._rows is None:
            self.total += np.bincount(idx[keep], minlength=len(self.total)) * self._pixel
        else:
            weight = np.broadcast_to(self._rows(row0, idx.shape[0])[:, None], idx.shape)
            self.total += np.bincount(idx[keep], weights=weight[keep], minlength=len(self.total))


def _map_window(m, window, offset: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(class ids, nodata mask) of the map on ``window``, read in the reference's frame: ``map[i + dy, j + dx]``
    for ``offset`` (dy, dx); masked where that falls outside the map."""
    from rasterio.windows import Window

    h, w = int(window.height), int(window.width)
    dy, dx = offset if offset else (0, 0)
    r0, c0 = int(window.row_off) + dy, int(window.col_off) + dx
    ir0, ic0 = max(r0, 0), max(c0, 0)
    ir1, ic1 = min(r0 + h, m.height), min(c0 + w, m.width)
    values = np.zeros((h, w), dtype=m.dtypes[0])
    masked = np.ones((h, w), dtype=bool)
    if ir1 > ir0 and ic1 > ic0:
        part = m.read(1, window=Window(ic0, ir0, ic1 - ic0, ir1 - ir0), masked=True)
        values[ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0] = np.asarray(part)
        masked[ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0] = np.ma.getmaskarray(part)
    return values, masked


def scored_bounds(reference: Path, blocks: int | None, parity: str, margin: int,
                  most: float = 0.8) -> tuple[float, float, float, float] | None:
    """Bounds of the reference pixels that :func:`score_map` would score, grown by ``margin`` pixels.

    Mapping only this box is enough to score a run whose labels are sparse (a few polygons or points).

    Args:
        reference: reference raster (nodata = unlabelled).
        blocks: checkerboard blocks per side, or None to take every labelled pixel.
        parity: which blocks are scored (see :func:`geocamat.data.splits.checkerboard`).
        margin: pixels added on every side (the model's context), clipped to the raster.
        most: share of the raster's area above which None is returned (mapping all of it costs little more).

    Returns:
        (xmin, ymin, xmax, ymax) in the reference's CRS, or None for the whole raster.
    """
    import rasterio

    from geocamat.data.labels import label_windows

    with _bounded_gdal_cache(), rasterio.open(reference) as r:
        any_row, any_col = np.zeros(r.height, bool), np.zeros(r.width, bool)
        for window in label_windows((r.height, r.width), SCORE_WINDOW):  # bounded memory
            keep = ~np.ma.getmaskarray(r.read(1, window=window, masked=True))
            if blocks:
                keep &= checkerboard_part((r.height, r.width), blocks, parity, window).astype(bool)
            r0, c0 = int(window.row_off), int(window.col_off)
            any_row[r0:r0 + keep.shape[0]] |= keep.any(axis=1)
            any_col[c0:c0 + keep.shape[1]] |= keep.any(axis=0)
        rows, cols = np.flatnonzero(any_row), np.flatnonzero(any_col)
        if rows.size == 0:
            return None
        r0, r1 = max(0, rows[0] - margin), min(r.height, rows[-1] + 1 + margin)
        c0, c1 = max(0, cols[0] - margin), min(r.width, cols[-1] + 1 + margin)
        if (r1 - r0) * (c1 - c0) > most * r.height * r.width:
            return None
        return rasterio.windows.bounds(rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0), r.transform)


def scored_blocks(reference: Path, blocks: int, parity: str) -> list[tuple[float, float, float, float]]:
    """Bounds (in the reference's CRS) of the ``parity`` blocks of the checkerboard holding a labelled pixel:
    what :func:`score_map` scores, so what a validation map needs (its training blocks cost as much, for nothing).
    """
    import rasterio

    from geocamat.data.labels import label_windows

    found: set[int] = set()
    with _bounded_gdal_cache(), rasterio.open(reference) as r:
        rows, cols = r.height, r.width
        for window in label_windows((rows, cols), SCORE_WINDOW):  # bounded memory
            keep = ~np.ma.getmaskarray(r.read(1, window=window, masked=True))
            keep &= checkerboard_part((rows, cols), blocks, parity, window).astype(bool)
            if not keep.any():
                continue
            r0, c0 = int(window.row_off), int(window.col_off)
            rr, cc = np.nonzero(keep)
            found.update(np.unique(((rr + r0) * blocks // rows) * blocks + (cc + c0) * blocks // cols).tolist())
        transform = r.transform

    def edge(i: int, size: int) -> int:  # first pixel of block i: the smallest p with p * blocks // size == i
        return -(-i * size // blocks)

    out = []
    for code in sorted(found):
        i, j = divmod(code, blocks)
        window = rasterio.windows.Window(edge(j, cols), edge(i, rows), edge(j + 1, cols) - edge(j, cols),
                                         edge(i + 1, rows) - edge(i, rows))
        out.append(rasterio.windows.bounds(window, transform))
    return out


def shifted_codes_note(reference_codes: set[int], class_ids: list[int], overall) -> list[str]:
    """A warning when the reference's codes are the model's shifted by one (0-based 0-6 for 1-7) and the scores
    are poor: every pixel is compared with the wrong class (OA 0.018 on the NC sample, only a note on code 0)."""
    model = set(class_ids)
    if len(reference_codes) < 2 or reference_codes <= model or (overall is not None and overall >= 0.5):
        return []
    for k in (1, -1):
        if {c + k for c in reference_codes} <= model:
            lo, hi = min(reference_codes), max(reference_codes)
            return [f"warning: the reference's codes {lo}-{hi} look like the model's {lo + k}-{hi + k} numbered "
                    f"from {'0' if k == 1 else '2'}: each class is compared with its neighbour; renumber the reference "
                    f"(e.g. gdal_calc.py --calc \"A{k:+d}\") or name its classes"]
    return []


def score_map(map_path: Path, reference: Path, class_ids: list[int], class_names: list[str], *,
              blocks: int | None = None, parity: str = "odd", mask: Path | None = None,
              offset: tuple[int, int] | None = None, reference_field: str | None = None,
              require_overlap: bool = True, window_size: int = SCORE_WINDOW, model_codes: bool = False) -> dict:
    """Metrics of a class map against a reference raster or vector layer (any CRS; brought onto the map's grid).

    Args:
        map_path: the predicted class raster (class ids).
        reference: reference raster of the same class codes, or vector layer (polygons/points) whose
            ``reference_field`` holds those codes or the class names.
        class_ids: codes to score, in order; names alongside.
        blocks: if set, score only the validation blocks of a ``blocks`` x ``blocks`` checkerboard laid over
            the reference raster's extent (a vector reference: the map's extent).
        parity: which blocks are validation (``odd``: row block + column block odd).
        mask: optional raster; only pixels where it is non-zero (and not nodata) are scored.
        offset: (dy, dx): score the map in the reference's frame, ``map[i + dy, j + dx]`` against
            ``reference[i, j]``, for labels registered off the imagery (see :mod:`geocamat.data.registration`).
        reference_field: class field of a vector reference.
        require_overlap: raise when no reference pixel falls on a mapped pixel (an empty score is no score).
        model_codes: the reference raster is coded as the model is (training's own labels): no matching of codes
            by name, and no note on it.
        window_size: side of the windows the map is scored by (:data:`SCORE_WINDOW`; the numbers do not
            depend on it, memory does).

    Returns:
        OA, kappa, per-class metrics, confusion matrix, pixel counts and coverage.

    Raises:
        InvalidLabelsError: with ``require_overlap``, the reference has no labelled pixel on the map's valid
            pixels (no overlap, or the map is nodata there).
    """
    import rasterio

    from geocamat.data.labels import check_class_bands, label_windows

    for p in (map_path, vector_file(reference)) + ((vector_file(mask),) if mask else ()):
        if not Path(p).exists():
            raise InputNotFoundError(f"file not found: {p}")
    sources = []
    cm = np.zeros((len(class_ids), len(class_ids)), dtype=np.int64)
    reference_pixels = mapped_pixels = 0
    try:
        with _bounded_gdal_cache(), rasterio.open(map_path) as m:
            if blocks and blocks > min(m.height, m.width):  # blocks under a pixel: a checkerboard of pixels
                raise ConfigError(f"--blocks {blocks} on a {m.width} x {m.height} px map makes blocks under a pixel: "
                                  f"give at most {min(m.height, m.width)} (the training run's, e.g. 4)")
            vector = is_vector(reference)
            if vector:
                ref = VectorOnGrid(Path(reference), m, reference_field, class_ids, class_names)
            else:
                ref = RasterOnGrid(Path(reference), m)
            sources.append(ref)  # closed below, also when the check refuses it
            matching = ReferenceCodes()
            if not vector:
                check_class_bands(ref.src, Path(reference), "reference raster")
                if not model_codes:
                    matching = reference_codes(Path(reference), class_ids, class_names)  # by name where it names them
            others: dict[int, int] = {}  # reference codes that are none of the model's: pixels
            mk = None
            if mask is not None:
                mk = mask_on_grid(Path(mask), m)
                sources.append(mk)
            areas = MappedAreas(m, class_ids) if vector and ref.sparse else None  # a point sample
            points = vector and ref.sparse  # scored point by point, not burnt
            for window in label_windows((m.height, m.width), window_size):  # bounded memory
                values = None if points else ref.read(window)
                scope = np.ones((int(window.height), int(window.width)), bool)  # the part of the window scored
                if blocks and vector:  # a checkerboard over the map's extent
                    scope &= checkerboard_part((m.height, m.width), blocks, parity, window) == 1
                elif blocks:  # a checkerboard over the reference's extent
                    scope &= ref.blocks(window, blocks, parity) == 1
                if mk is not None:
                    scope &= mk.nonzero(window)
                pred, nodata = _map_window(m, window, offset)
                if areas is not None:  # every mapped pixel of the scored scope, points or not
                    areas.add(pred, scope & ~nodata, int(window.row_off))
                if points:  # each point a sample unit, also where two share a pixel
                    rows, cols, codes = ref.points(window)
                    inside = scope[rows, cols]
                    other = inside & ~np.isin(codes, class_ids)
                    if other.any():  # not scored: the model has no such class
                        for code, n in zip(*np.unique(codes[other], return_counts=True), strict=True):
                            others[int(code)] = others.get(int(code), 0) + int(n)
                        inside &= ~other
                    mapped = inside & ~nodata[rows, cols]
                    reference_pixels += int(inside.sum())
                    mapped_pixels += int(mapped.sum())
                    if mapped.any():
                        cm += confusion_matrix(codes[mapped], pred[rows[mapped], cols[mapped]], class_ids)
                    continue
                values = matching.apply(values)
                keep = np.isfinite(values) & scope
                other = keep & ~np.isin(values, class_ids)
                if other.any():  # not scored: the model has no such class
                    for code, n in zip(*np.unique(values[other].astype(np.int64), return_counts=True), strict=True):
                        others[int(code)] = others.get(int(code), 0) + int(n)
                    keep &= ~other
                mapped = keep & ~nodata
                reference_pixels += int(keep.sum())
                mapped_pixels += int(mapped.sum())
                if mapped.any():
                    cm += confusion_matrix(values[mapped].astype(int), pred[mapped], class_ids)
    finally:
        for source in sources:
            source.close()
    if others and not reference_pixels:
        model = ", ".join(f"{c} {n}" for c, n in zip(class_ids, class_names, strict=True))
        raise InvalidLabelsError(f"reference {reference} holds class codes {', '.join(map(str, sorted(others)[:8]))} "
                                 f"and none of the model's ({model}): recode it, or name its classes in a QGIS style "
                                 f"beside it ({Path(reference).with_suffix('.qml').name}) to match them by name")
    if require_overlap and not mapped_pixels:
        where = " in the scored blocks/mask" if blocks or mask is not None else ""
        why = ("has no labelled pixel on the map's extent" if not reference_pixels
               else f"labels {reference_pixels} pixels{where} but the map is nodata on all of them")
        raise InvalidLabelsError(f"reference {reference} {why} ({map_path}): nothing to score; give a reference "
                                 "that overlaps the mapped area (check both extents and CRS with geocamat info)")
    out = summarise(cm, class_ids, class_names)
    if areas is not None and mapped_pixels:
        from geocamat.metrics.area import stratified_estimates

        out["area_estimates"] = stratified_estimates(cm.T, areas.total, list(class_names)) | {
            "unit": areas.unit, "method": "Olofsson et al. (2014): the reference points as a simple or stratified "
                                          "random sample of the scored map"}
    if vector and ref.unlabelled:
        out["unlabelled_features"] = ref.unlabelled
    notes = list(matching.notes) + (ref.notes() if vector else [])
    if others:
        unit = "points" if vector and ref.sparse else "pixels"
        notes.append(f"note: {sum(others.values())} reference {unit} of codes {', '.join(map(str, sorted(others)))} "
                     "(none of the model's classes) are not scored")
        notes += shifted_codes_note(set(others) | {c for c, row in zip(class_ids, cm, strict=True) if row.sum()},
                                    class_ids, out.get("overall_accuracy"))
    if notes:
        out["notes"] = notes
    out["reference_pixels"] = reference_pixels
    out["reference_unit"] = "points" if vector and ref.sparse else "pixels"
    out["coverage"] = round(mapped_pixels / reference_pixels, 4) if reference_pixels else 0.0
    out["scope"] = f"{parity} blocks of a {blocks}x{blocks} checkerboard" if blocks else "all reference pixels"
    if offset and any(offset):
        out["map_offset_px"] = list(offset)
    return out
