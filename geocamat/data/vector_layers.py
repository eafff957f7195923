"""Which layer of a vector file a path means: ``FILE:LAYER`` for files with several (a GeoPackage, a KML).

A GeoPackage made in QGIS often holds the training polygons beside an AOI, points and other layers. Read without a
layer name, GDAL hands over the first one, and a run would train on (or clip to, or score against) the wrong layer
without a word. So every vector path the user gives goes through :func:`read_vector`: ``FILE:LAYER`` (or QGIS's
``FILE|layername=LAYER``, as its layer properties show the source) picks a layer, and a file with several spatial
layers and no layer named is refused with their names. Tables without geometry (QGIS's ``layer_styles``) are not
layers to choose from.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocamat.errors import GeocamatError, InputNotFoundError, InvalidLabelsError

#: Endings of the vector files geocamat reads (labels, references, regions); ``.csv``: a table of points
#: (:mod:`geocamat.data.point_table`; detection reads its own CSV boxes first).
VECTOR_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json", ".fgb", ".kml", ".parquet", ".gml", ".csv")
#: ``label_field`` value: each layer is a class named by the layer (a GeoPackage of one layer per class, or one
#: file per class), unless the layers have a field of that name (QGIS's Merge vector layers writes it).
LAYER_FIELD = "layer"
#: A table of points rather than a GDAL vector layer.
TABLE_SUFFIX = ".csv"
#: GeoParquet: read with pyarrow (optional), as the GDAL of the wheels has no Parquet driver.
PARQUET_SUFFIX = ".parquet"
#: An archive read as vectors when it holds one of them (a zipped shapefile, as downloads come).
ARCHIVE_SUFFIX = ".zip"
#: QGIS's way of naming a layer in a data source (``FILE|layername=LAYER``), and of filtering its features
#: (``|subset=`` an OGR SQL WHERE clause, as QGIS's Filter... sets it).
QGIS_LAYER, QGIS_SUBSET = "|layername=", "|subset="


@dataclass(frozen=True)
class VectorSource:
    """A vector file, the layer named in its path (None: the file's only layer) and a filter of its features (an
    OGR SQL WHERE clause, None: all)."""

    file: Path
    layer: str | None = None
    where: str | None = None

    def __str__(self) -> str:
        text = f"{self.file}:{self.layer}" if self.layer else str(self.file)
        return f"{text} (where {self.where})" if self.where else text


def parse_source(spec: str | os.PathLike) -> VectorSource:
    """The file and layer of ``spec``: ``FILE``, ``FILE:LAYER``, or QGIS's data source ``FILE|layername=LAYER``
    (``|subset=WHERE`` after it filters the features, as QGIS's layer filter does).

    ``FILE:LAYER`` is read as a layer only when ``spec`` itself is no file and a vector file's ending is followed by
    the ``:`` (``survey.gpkg:plots:2024`` is layer ``plots:2024``), so a path with a colon elsewhere (``C:\\data``)
    keeps its meaning."""
    text = str(spec)
    if QGIS_LAYER in text or QGIS_SUBSET in text:
        text, _, where = text.partition(QGIS_SUBSET)
        file, _, rest = text.partition(QGIS_LAYER)
        return VectorSource(Path(file.split("|")[0]), rest.split("|")[0] or None, where.strip() or None)
    path = Path(text)
    if ":" in path.name and not path.exists():
        lower = text.lower()
        for suffix in VECTOR_SUFFIXES + (ARCHIVE_SUFFIX,):
            at = lower.find(suffix + ":", len(str(path.parent)))
            if at >= 0 and text[at + len(suffix) + 1:]:
                return VectorSource(Path(text[:at + len(suffix)]), text[at + len(suffix) + 1:])
    return VectorSource(path, None)


def vector_file(spec: str | os.PathLike) -> Path:
    """The file part of ``spec`` (what to test for existence and suffix)."""
    return parse_source(spec).file


def is_vector(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a vector file (or one of its layers) by its ending, or a ``.zip`` of vector files."""
    file = vector_file(spec)
    suffix = file.suffix.lower()
    return suffix in VECTOR_SUFFIXES or (suffix == ARCHIVE_SUFFIX and _zipped_vectors(file))


def _zipped_vectors(path: Path) -> bool:
    """Whether a zip archive holds a vector file (GDAL reads it in place)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(Path(name).suffix.lower() in VECTOR_SUFFIXES for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def spatial_layers(path: str | os.PathLike) -> list[str]:
    """The names of the layers with geometry in a vector file ([] when GDAL cannot list them)."""
    import pyogrio

    try:
        layers = pyogrio.list_layers(path)
    except Exception:  # noqa: BLE001 - an unreadable file fails in the read that follows, with its own message
        return []
    return [str(name) for name, geometry in layers if geometry is not None]


def chosen_layer(spec: str | os.PathLike, what: str = "vector file",
                 error: type[GeocamatError] = InvalidLabelsError, field: str | None = None) -> VectorSource:
    """``spec``'s file and the layer to read: the named one, or the file's only spatial layer. ``field``: the
    attribute the caller needs; the message of an ambiguous file names the layers that have it.

    Raises:
        InputNotFoundError: no such file.
        ``error``: a layer name the file does not hold, or several layers and none named.
    """
    source = parse_source(spec)
    if not source.file.exists():
        raise InputNotFoundError(f"{what} not found: {source.file}")
    layers = spatial_layers(source.file)
    if source.layer is not None:
        if layers and source.layer not in layers:
            raise error(f"{what} {source.file.name} has no layer {source.layer!r}: its layers are "
                        f"{', '.join(layers)}")
        return source
    if len(layers) > 1:
        having = _layers_with(source.file, layers, field) if field else []
        which = f"; {', '.join(having)} {'has' if len(having) == 1 else 'have'} the field {field!r}" if having else ""
        per_class = "; a layer per class: --label-field layer" if field and not having and "label" in what else ""
        raise error(f"{what} {source.file.name} holds {len(layers)} layers ({', '.join(layers)}{which}): name the "
                    f"one to use as {source.file}:{(having or layers)[0]}{per_class}")
    return VectorSource(source.file, layers[0] if layers else None, source.where)


def _layers_with(path: Path, layers: list[str], field: str) -> list[str]:
    """The layers among ``layers`` that have an attribute ``field``."""
    import pyogrio

    having = []
    for layer in layers:
        try:
            if field in pyogrio.read_info(path, layer=layer)["fields"]:
                having.append(layer)
        except Exception:  # noqa: BLE001 - a layer GDAL cannot describe is not one to suggest
            continue
    return having


def read_vector(spec: str | os.PathLike, what: str = "vector file", error: type[GeocamatError] = InvalidLabelsError,
                field: str | None = None, within=None, rows: int | None = None):
    """The layer ``spec`` names (see :func:`chosen_layer`) as a GeoDataFrame.

    ``within``: ``(bounds, crs)`` of the ground the caller needs (the imagery; a list of them for images in several
    CRSs): only the features whose bounding box meets it are read (GDAL's spatial filter, with the layer's spatial
    index), so a national layer of parcels costs what its part over the scene costs. ``frame.attrs
    ["layer_features"]``: the layer's feature count (with a filter: of the features it keeps, counted only when none
    met ``within``, else those read). ``rows``: only the first features (a sample).

    Raises:
        InputNotFoundError: no such file.
        ``error``: an unknown or ambiguous layer, or a file GDAL cannot read as vectors.
    """
    import geopandas as gpd
    import pandas as pd

    source = spec if isinstance(spec, VectorSource) else chosen_layer(spec, what, error, field)
    if source.file.suffix.lower() == TABLE_SUFFIX:
        from geocamat.data.point_table import read_point_table

        return _filtered(read_point_table(source.file, what, error), source, what, error)
    if source.file.suffix.lower() == PARQUET_SUFFIX:
        return _read_parquet(source, what, error, within)
    try:
        options = {"layer": source.layer} if source.layer else {}
        boxes = _layer_boxes(source, within) if within is not None else None
        where = {"where": source.where} if source.where else {}
        if boxes is not None and len(boxes) > 1:  # images far apart: each part of the layer once
            parts = [gpd.read_file(source.file, bbox=b, rows=rows, fid_as_index=True, **options, **where)
                     for b in boxes]
            frame = pd.concat(parts)
            frame = gpd.GeoDataFrame(frame[~frame.index.duplicated()].sort_index().reset_index(drop=True),
                                     crs=parts[0].crs)
        else:
            frame = gpd.read_file(source.file, bbox=boxes[0] if boxes else None, rows=rows, **options, **where)
        if boxes is not None:
            frame.attrs["layer_features"] = len(frame) if source.where and len(frame) else _feature_count(source)
        return frame
    except Exception as exc:  # noqa: BLE001 - any unreadable vector is the same user error
        text = " ".join(str(exc).split())[:160]
        if source.where:
            raise error(f"{what} {source.file.name}: the filter {source.where!r} cannot be applied ({text}): write it "
                        "as an OGR SQL WHERE clause on the layer's fields (as QGIS's Filter... does)") from exc
        raise error(f"{what} {source} cannot be read as a vector layer ({type(exc).__name__}: {text})") from exc


def read_label_layers(specs: list, what: str, field: str | None, within, crs,
                      error: type[GeocamatError] = InvalidLabelsError):
    """Several label files (or one) as one frame in ``crs`` (None: the first layer's); with ``field``
    :data:`LAYER_FIELD`, every spatial layer of each file (or its named layer) with its layer's name in that field
    (the class), where no such field exists.

    ``frame.attrs["layer_features"]``: the features of all of them (as :func:`read_vector` counts them)."""
    import pandas as pd

    frames, features = [], 0
    for spec in specs:
        if field != LAYER_FIELD:
            parts = [(read_vector(spec, what, error, field, within), None)]
        else:
            source = parse_source(spec)
            if not source.file.exists():
                raise InputNotFoundError(f"{what} not found: {source.file}")
            names = [source.layer] if source.layer else spatial_layers(source.file) or [None]
            parts = [(read_vector(VectorSource(source.file, name, source.where), what, error, None, within),
                      name or source.file.stem) for name in names]
        for frame, name in parts:
            features += int(frame.attrs.get("layer_features", len(frame)))
            if frame.crs is None:
                raise error(f"{what} {spec} has no CRS: set one (e.g. a .prj file or ogr2ogr -a_srs)")
            if name is not None and LAYER_FIELD not in frame.columns:
                frame = frame.assign(**{LAYER_FIELD: name})
            crs = crs or frame.crs
            frames.append(frame.to_crs(crs))
    import geopandas as gpd

    out = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=crs)
    out.attrs["layer_features"] = features
    return out


def _feature_count(source: VectorSource) -> int:
    """How many features ``source``'s layer holds (those its filter keeps, when it has one)."""
    import pyogrio

    options = {"layer": source.layer} if source.layer else {}
    if not source.where:
        return int(pyogrio.read_info(source.file, **options)["features"])
    # the attributes only; pyogrio reads no rows with columns=[] and a filter
    return len(pyogrio.raw.read(source.file, where=source.where, read_geometry=False, return_fids=True,
                                **options)[1])


def _filtered(frame, source: VectorSource, what: str, error: type[GeocamatError]):
    """``frame`` (a table GDAL did not read) with ``source``'s filter applied, as GDAL applies it to its layers."""
    if not source.where:
        return frame
    from geocamat.data.attribute_filter import rows_matching

    return rows_matching(frame, source.where, what, source.file.name, error)


def _read_parquet(source: VectorSource, what: str, error: type[GeocamatError], within):
    """A GeoParquet file with geopandas and pyarrow (filtered, its features meeting ``within`` kept), or a one-line
    error saying how to read it without pyarrow."""
    import geopandas as gpd

    path = source.file
    try:
        frame = gpd.read_parquet(path)
    except ImportError as exc:
        raise error(f"{what} {path.name} is GeoParquet, which needs pyarrow: `pip install pyarrow`, or convert it "
                    f"(ogr2ogr {path.with_suffix('.gpkg').name} {path.name})") from exc
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise error(f"{what} {path.name} cannot be read as GeoParquet ({type(exc).__name__})") from exc
    frame = _filtered(frame, source, what, error)
    features = len(frame)
    boxes = _boxes_in(frame.crs.to_wkt(), within) if within is not None and frame.crs is not None and features else None
    if boxes is not None:
        from shapely.geometry import box

        frame = frame[np.logical_or.reduce([frame.intersects(box(*b)).to_numpy() for b in boxes])]
    frame.attrs["layer_features"] = features
    return frame


def _layer_boxes(source: VectorSource, within) -> list[tuple[float, float, float, float]] | None:
    """``within`` as boxes in the layer's CRS (see :func:`_boxes_in`), or None (read it all) when the layer has no
    CRS or a bounds cannot be brought into it."""
    import pyogrio

    crs = pyogrio.read_info(source.file, **({"layer": source.layer} if source.layer else {})).get("crs")
    return _boxes_in(crs, within) if crs else None


#: boxes are read as one where the box around two covers at most this many times their own areas
MERGE_SLACK = 2.0
#: above this many separate areas, the layer is read in one box around them all
MAX_BOXES = 64


def _boxes_in(crs, within, merge: bool = True) -> list[tuple[float, float, float, float]] | None:
    """Each of ``within``'s bounds (``(bounds, crs)`` or a list of them) in ``crs``, grown by 1%; with ``merge``,
    bounds near each other joined (a box around them costs at most :data:`MERGE_SLACK` times their areas), so
    scenes far apart read their own parts of a layer and not the land between them. None when a bounds cannot be
    brought into ``crs``."""
    from rasterio.warp import transform_bounds

    boxes = []
    for bounds, bounds_crs in (within if isinstance(within, list) else [within]):
        try:
            left, bottom, right, top = transform_bounds(bounds_crs, crs, *bounds, densify_pts=21)
        except Exception:  # noqa: BLE001 - a CRS the bounds do not fit in: no filter rather than a wrong one
            return None
        if not all(map(math.isfinite, (left, bottom, right, top))):
            return None
        pad_x, pad_y = 0.01 * (right - left), 0.01 * (top - bottom)
        boxes.append((left - pad_x, bottom - pad_y, right + pad_x, top + pad_y))
    if not merge:
        return boxes
    boxes = _joined(boxes)
    if len(boxes) > MAX_BOXES:
        boxes = [(min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                  max(b[3] for b in boxes))]
    return boxes


def _joined(boxes: list) -> list:
    """``boxes`` with boxes near each other (the box around two not much larger than the two:
    :data:`MERGE_SLACK`) replaced by the box around them, until none are."""

    def area(b):
        return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])

    def around(a, b):
        return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])

    def near(a, b) -> bool:
        return area(around(a, b)) <= MERGE_SLACK * (area(a) + area(b))

    if len(boxes) > 4 * MAX_BOXES:  # thousands of chips: first those in one cell of a 64 x 64 grid as one
        boxes = _by_cells(boxes)
    if len(boxes) > 4 * MAX_BOXES:  # scattered too widely to join pair by pair: one box around them (the caller)
        return boxes
    while True:
        out: list = []
        for b in boxes:
            for k, o in enumerate(out):
                if near(o, b):
                    out[k] = around(o, b)
                    break
            else:
                out.append(b)
        if len(out) == len(boxes):
            return out
        boxes = out


def _by_cells(boxes: list, cells: int = 64) -> list:
    """One box around the boxes whose centres fall in each cell of a ``cells`` x ``cells`` grid over them all."""
    array = np.asarray(boxes, float)
    left, bottom = array[:, 0].min(), array[:, 1].min()
    side = max(array[:, 2].max() - left, array[:, 3].max() - bottom) / cells or 1.0
    keys = np.floor(((array[:, :2] + array[:, 2:]) / 2 - (left, bottom)) / side).astype(np.int64)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    out = []
    for g in range(group.max() + 1):
        part = array[group.reshape(-1) == g]
        out.append((part[:, 0].min(), part[:, 1].min(), part[:, 2].max(), part[:, 3].max()))
    return out
