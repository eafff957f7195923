"""Land-use polygons: vectorised per streamed unit, merged across unit seams, written to a GeoPackage.

Each unit (a band of rows of a column block) is polygonised in *pixel* coordinates of the full grid, so
the edges of touching polygons of two units have bit-identical coordinates and dissolve exactly. Polygons
touching an inner seam are kept apart and, at the end, unioned per class; the others are final as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from geocamat.outputs.style import ClassStyle
from geocamat.unionfind import connected_components

LAYER = "landuse"


def polygonise_unit(classes: np.ndarray, nodata: int, row_off: int, col_off: int, full_shape: tuple[int, int]
                    ) -> dict[str, np.ndarray]:
    """Polygons of same-class regions of one unit, in pixel coordinates of the full grid.

    Args:
        classes: (rows, cols) class ids of the unit.
        nodata: value without a class (not vectorised).
        row_off: row of the unit's first row in the full grid.
        col_off: column of the unit's first column in the full grid.
        full_shape: (rows, cols) of the full grid (to tell inner seams from the grid's border).

    Returns:
        arrays ``geoms`` (WKB bytes, object), ``ids`` (class id) and ``edge`` (touches an inner seam).
    """
    import shapely
    from rasterio.features import shapes
    from rasterio.transform import Affine

    rows, cols = classes.shape
    mask = classes != nodata
    geoms, ids = [], []
    if mask.any():
        source = classes if classes.dtype != np.uint16 else classes.astype(np.int32)
        for geom, value in shapes(source, mask=mask, connectivity=4, transform=Affine.translation(col_off, row_off)):
            geoms.append(shapely.geometry.shape(geom))
            ids.append(int(value))
    geoms_arr = np.array(geoms, dtype=object)
    if not geoms:
        return {"geoms": geoms_arr, "ids": np.zeros(0, np.int64), "edge": np.zeros(0, bool)}
    bounds = shapely.bounds(geoms_arr)
    edge = np.zeros(len(geoms), bool)
    if row_off > 0:
        edge |= bounds[:, 1] <= row_off
    if col_off > 0:
        edge |= bounds[:, 0] <= col_off
    if row_off + rows < full_shape[0]:
        edge |= bounds[:, 3] >= row_off + rows
    if col_off + cols < full_shape[1]:
        edge |= bounds[:, 2] >= col_off + cols
    return {"geoms": geoms_arr, "ids": np.asarray(ids, np.int64), "edge": edge}


def save_unit_polygons(path: Path, polygons: dict[str, np.ndarray]) -> Path:
    """Store a unit's polygons (WKB) in an ``.npz`` without pickles (temporary name, then rename)."""
    import shapely

    wkb = [shapely.to_wkb(g) for g in polygons["geoms"]]
    sizes = np.array([len(w) for w in wkb], np.int64)
    blob = np.frombuffer(b"".join(wkb), np.uint8) if wkb else np.zeros(0, np.uint8)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, blob=blob, sizes=sizes, ids=polygons["ids"], edge=polygons["edge"])
    os.replace(tmp, path)
    return path


def load_unit_polygons(path: Path) -> dict[str, np.ndarray]:
    """Read what :func:`save_unit_polygons` stored."""
    import shapely

    with np.load(path, allow_pickle=False) as data:
        blob, sizes, ids, edge = data["blob"].tobytes(), data["sizes"], data["ids"], data["edge"]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    geoms = np.array([shapely.from_wkb(blob[s:e]) for s, e in zip(starts, ends, strict=True)], dtype=object)
    return {"geoms": geoms, "ids": ids, "edge": edge}


def merge_seams(geoms: np.ndarray, ids: np.ndarray, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dissolve touching polygons of the same class (those cut by unit seams) into single polygons.

    Only groups of same-class polygons that touch are unioned (connected components of an R-tree
    "intersects" graph), each on its own, on ``workers`` threads (GEOS runs without the GIL): a union of a
    whole class at once also overlays every unrelated polygon and grows with the scene.
    """
    import shapely

    n = len(geoms)
    if n == 0:
        return np.zeros(0, object), np.zeros(0, np.int64)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = (left < right) & (ids[left] == ids[right])
    label = connected_components(n, zip(left[keep].tolist(), right[keep].tolist(), strict=True))
    order = np.argsort(label, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(label[order])) + 1)
    single = [g[0] for g in groups if len(g) == 1]
    many = sorted((g for g in groups if len(g) > 1), key=len, reverse=True)

    def dissolve(group: np.ndarray) -> np.ndarray:
        merged = shapely.get_parts(shapely.union_all(geoms[group]))
        return merged[shapely.get_type_id(merged) == 3]  # polygons only (no lines from touching corners)

    if len(many) > 1 and (workers or os.cpu_count() or 1) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
            unions = list(pool.map(dissolve, many))
    else:
        unions = [dissolve(g) for g in many]
    out_geoms = [geoms[np.asarray(single, np.int64)]] + unions
    out_ids = [ids[np.asarray(single, np.int64)]] + [np.full(len(u), ids[g[0]], np.int64)
                                                      for u, g in zip(unions, many, strict=True)]
    return np.concatenate(out_geoms), np.concatenate(out_ids).astype(np.int64)


def _to_map(geoms: np.ndarray, transform) -> np.ndarray:
    import shapely

    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def affine(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.stack([a * x + b * y + c, d * x + e * y + f], axis=1)

    return shapely.transform(geoms, affine)


def write_polygons_gpkg(
    path: Path,
    unit_files: Iterable[Path],
    *,
    transform,
    crs_wkt: str,
    style: ClassStyle,
    min_pixels: int = 0,
    unit_metres: float = 0.0,
    row_areas=None,
    fields: dict | None = None,
) -> int:
    """Write the land-use polygons of all units into one GeoPackage layer (``landuse``) with a QGIS style.

    Args:
        path: output GeoPackage (should be a temporary name; renamed by the caller).
        unit_files: the units' ``.npz`` polygon files (:func:`save_unit_polygons`).
        transform: affine transform of the grid (pixel -> map coordinates).
        crs_wkt: CRS of the grid.
        style: classes (names for ``class_name``, colours for the stored style).
        min_pixels: drop polygons smaller than this many pixels.
        unit_metres: the metres of one map unit, to add ``area_ha`` (1 for metres, 0.3048006 for US survey feet;
            0: none, the map is not projected).
        row_areas: for a geographic grid (:func:`geocamat.outputs.geodesic.geodesic_rows`): ``area_ha`` on the
            ellipsoid, each polygon's pixels at the pixel area of its centroid's row.
        fields: columns of one value for every polygon (e.g. ``{"region": "north"}``), before the class ones.

    Returns:
        the number of polygons written.
    """
    import geopandas as gpd
    import pyogrio
    import shapely

    names = dict(zip(style.ids, style.names, strict=True))
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    edge_geoms, edge_ids = [], []
    written = 0
    created = False
    if path.exists():
        path.unlink()

    def write(geoms: np.ndarray, ids: np.ndarray, final: bool = False) -> None:
        nonlocal written, created
        pixels = shapely.area(geoms) if len(geoms) else np.zeros(0)
        keep = pixels >= max(min_pixels, 1e-9)
        geoms, ids, pixels = geoms[keep], ids[keep], pixels[keep]
        if not len(geoms) and not final:  # never create the layer from an empty frame (field types unknown)
            return
        data = {**{k: np.full(len(ids), v, dtype=object) for k, v in (fields or {}).items()},
                "class_id": ids.astype(np.int32),
                "class_name": np.array([names.get(int(i), str(i)) for i in ids], dtype=object),
                "pixels": np.rint(pixels).astype(np.int64), "area": pixels * pixel_area}
        if unit_metres:
            data["area_ha"] = pixels * pixel_area * unit_metres**2 / 1e4
        elif row_areas is not None and len(geoms):
            rows = np.clip(shapely.get_y(shapely.centroid(geoms)).astype(np.int64), 0, None)
            lo = int(rows.min())
            data["area_ha"] = pixels * row_areas(lo, int(rows.max()) - lo + 1)[rows - lo] / 1e4
        elif row_areas is not None:
            data["area_ha"] = np.zeros(0)
        frame = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(_to_map(geoms, transform) if len(geoms) else [],
                                                              crs=crs_wkt), crs=crs_wkt)
        options = {} if created else {"dataset_options": {"VERSION": "1.2"}}  # readable by QGIS 3.22's GDAL
        pyogrio.write_dataframe(frame, path, layer=LAYER, driver="GPKG", append=created,
                                geometry_type="Polygon", promote_to_multi=False, **options)
        created = True
        written += len(geoms)

    for unit in unit_files:
        polys = load_unit_polygons(unit)
        inner = ~polys["edge"]
        if inner.any():
            write(polys["geoms"][inner], polys["ids"][inner])
        edge_geoms.append(polys["geoms"][~inner])
        edge_ids.append(polys["ids"][~inner])
    if edge_geoms:
        merged, merged_ids = merge_seams(np.concatenate(edge_geoms), np.concatenate(edge_ids))
        write(merged, merged_ids)
    if not created:
        write(np.zeros(0, object), np.zeros(0, np.int64), final=True)
    store_layer_style(path, LAYER, style)
    return written


def store_layer_style(path: Path, layer: str, style: ClassStyle, opacity: float = 1.0) -> None:
    """Store a categorised QGIS style of the classes (fill ``opacity``) as the layer's default style in the
    GeoPackage."""
    from geocamat.outputs.geopackage import store_style
    from geocamat.outputs.qml import categorized_polygon_qml

    store_style(path, categorized_polygon_qml(style, opacity=opacity), layer)


# -- polygonising in worker processes ----------------------------------------------------------------------
# rasterio.features.shapes holds the GIL for the whole call: in a thread it would stall the thread that feeds
# the GPU. Worker *processes* started as ``python -m geocamat.outputs.vector`` (no multiprocessing bootstrap,
# so a user's script without a ``__main__`` guard is safe) read jobs on stdin and polygonise unit pieces.

_REPLY = "GEOCAMAT-POLYGONS "


def polygonise_piece(piece: str, nodata: int, row_off: int, col_off: int, full_shape: tuple[int, int],
                     out: str) -> str:
    """Polygonise the class piece file ``piece`` (band 1) and store the result in ``out`` (``.npz``)."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(piece) as src:
            classes = src.read(1)
    save_unit_polygons(Path(out), polygonise_unit(classes, nodata, row_off, col_off, tuple(full_shape)))
    return out


class Polygoniser:
    """A pool of polygonising worker processes; :meth:`run` may be called from several threads.

    Args:
        workers: number of processes (started on first use, or all at once by :meth:`start`).
    """

    def __init__(self, workers: int = 1) -> None:
        import queue
        import threading

        self.size = max(1, workers)
        self._idle: queue.Queue = queue.Queue()
        self._all: list = []
        self._lock = threading.Lock()

    def _start(self):
        import subprocess
        import sys

        import geocamat

        root = str(Path(geocamat.__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
                   OMP_NUM_THREADS="1")
        proc = subprocess.Popen([sys.executable, "-m", "geocamat.outputs.vector"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        self._all.append(proc)
        return proc

    def start(self) -> None:
        """Start every worker now (each imports rasterio/shapely for ~1 s; better while the first units compute)."""
        with self._lock:
            while len(self._all) < self.size:
                self._idle.put(self._start())

    def run(self, **job) -> None:
        """Polygonise one piece (arguments of :func:`polygonise_piece`) in a worker process."""
        import json
        import queue

        with self._lock:
            try:
                proc = self._idle.get_nowait()
            except queue.Empty:
                proc = self._start() if len(self._all) < self.size else None
        if proc is None:
            proc = self._idle.get()
        try:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            while True:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"polygonising worker exited (code {proc.poll()})")
                if line.startswith(_REPLY):
                    reply = json.loads(line[len(_REPLY):])
                    break
        finally:
            self._idle.put(proc)
        if not reply["ok"]:
            raise RuntimeError(f"polygonising {job.get('piece')} failed: {reply['error']}")

    def close(self) -> None:
        for proc in self._all:
            try:
                proc.stdin.close()
                proc.wait(timeout=30)
            except Exception:  # noqa: BLE001 - best effort: never leave a worker behind
                proc.kill()
        self._all.clear()


def _worker_main() -> None:
    import json
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business; it closes our stdin
    for line in sys.stdin:
        try:
            polygonise_piece(**json.loads(line))
            reply = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            reply = {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}
        sys.stdout.write(_REPLY + json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _worker_main()
