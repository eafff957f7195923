"""Labels onto the image grid, once: classified rasters (reprojected) or vector layers (rasterised).

The result is a label raster on the imagery's grid (int32, -1 = unlabelled), so TorchGeo reads image and
label windows without warping per sample. Vector polygons are burnt by class; points label their pixel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocamat.data.class_styles import raster_classes
from geocamat.data.vector_layers import LAYER_FIELD, is_vector, read_label_layers, read_vector, vector_file
from geocamat.errors import InputNotFoundError, InvalidLabelsError

UNLABELLED = -1
#: label pixels this share of an image pixel or smaller (about 1.4x finer per side) are resampled by majority
FINER_LABELS = 0.5


@dataclass
class Grid:
    """A north-up pixel grid: CRS (WKT), affine transform, and shape (rows, cols)."""

    crs: str
    transform: object
    shape: tuple[int, int]


@dataclass
class LabelRaster:
    """Labels on the image grid.

    Attributes:
        path: the int32 GeoTIFF written (nodata -1).
        grid: its grid (the imagery's).
        class_ids: label codes present, sorted.
        names: name per code, where the source gave one.
        colours: colour per code, where the source gave one.
        sparse: True for point labels (a tile is labelled by the few pixels that carry a label).
        notes: what the user should be told about the labels (one line each).
    """

    path: Path
    grid: Grid
    class_ids: list[int]
    names: dict[int, str]
    colours: dict[int, str]
    sparse: bool
    notes: list[str] = dataclasses.field(default_factory=list)


def grid_of_dataset(ds) -> Grid:
    """The pixel grid covering a TorchGeo dataset's bounds at its resolution."""
    from rasterio.transform import from_origin

    x, y, _ = ds.bounds
    rx, ry = ds.res
    cols = int(round((x.stop - x.start) / rx))
    rows = int(round((y.stop - y.start) / ry))
    return Grid(ds.crs.to_wkt(), from_origin(x.start, y.stop, rx, ry), (rows, cols))


# side of the windows in which labels are reprojected / rasterised and written (a multiple of the output's
# 256 px tiles): memory is bounded by one window (16 MB of int32), whatever the scene's size
LABEL_WINDOW = 2048


def label_windows(shape: tuple[int, int], size: int | None = None):
    """Row-major ``rasterio.windows.Window`` s of at most ``size`` x ``size`` pixels covering ``shape``.

    ``size`` defaults to :data:`LABEL_WINDOW`.
    """
    from rasterio.windows import Window

    size = size or LABEL_WINDOW
    rows, cols = shape
    for r in range(0, rows, size):
        for c in range(0, cols, size):
            yield Window(c, r, min(size, cols - c), min(size, rows - r))


def _open_output(grid: Grid, path: Path):
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", dtype="int32", count=1, width=grid.shape[1], height=grid.shape[0],
                   crs=grid.crs, transform=grid.transform, nodata=UNLABELLED, compress="deflate", tiled=True,
                   blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")
    return rasterio.open(path, "w", **profile)


def _write(array: np.ndarray, grid: Grid, path: Path) -> None:
    with _open_output(grid, path) as dst:
        dst.write(array.astype(np.int32), 1)


def _raster_label_windows(path: Path, grid: Grid, dst, nodata: int | None = None
                          ) -> tuple[set[int], dict[int, str], dict[int, str], list[str]]:
    """Reproject a classified raster onto ``grid`` window by window into ``dst``: (codes, names, colours, notes).

    Nearest neighbour, or the majority (GDAL's ``mode``) when the labels' pixels are finer than the grid's
    (:data:`FINER_LABELS` of a grid pixel or less), so that a grid pixel takes the class covering most of it, not
    the one under its centre (a note says so). ``nodata``: the user's "not labelled" value, replacing the file's;
    without either, a value that usually means "not labelled" (0, the type's maximum, -1, -9999: see
    :func:`_usual_nodata`) that labels pixels is named in a note, since it is trained as a class."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from geocamat.data.stack import mask_kind

    codes: set[int] = set()
    suspects: dict[int, int] = {}
    labelled = 0
    with rasterio.open(path) as src:
        if src.crs is None:
            raise InvalidLabelsError(f"label raster {path} has no CRS: assign one with gdal_edit.py -a_srs")
        check_class_bands(src, path, "label raster")
        share = pixel_share(src, grid.crs, grid.transform)
        finer = share <= FINER_LABELS
        # without a nodata value, an alpha band marks what lies outside the source (masked on read); a source with
        # its own alpha band carries it through the warp (GDAL refuses a second one)
        own_alpha = bool(mask_kind(src)[1])
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.shape[1], height=grid.shape[0],
                       resampling=Resampling.mode if finer else Resampling.nearest,
                       add_alpha=src.nodata is None and not own_alpha) as vrt:
            for window in label_windows(grid.shape):
                values = vrt.read(1, window=window, masked=True).astype("float64").filled(np.nan)
                finite = values[np.isfinite(values)]
                if finite.size and not np.allclose(finite, np.round(finite)):
                    raise InvalidLabelsError(f"label raster {path} holds non-integer values: give a classified raster")
                out = np.where(np.isfinite(values), np.round(values), UNLABELLED).astype(np.int32)
                if nodata is not None:
                    out[out == nodata] = UNLABELLED
                elif src.nodata is None:
                    labelled += int((out != UNLABELLED).sum())
                    for code in _usual_nodata(src.dtypes[0]):
                        suspects[code] = suspects.get(code, 0) + int((out == code).sum())
                codes.update(int(v) for v in np.unique(out[out != UNLABELLED]))
                dst.write(out, 1, window=window)
        try:
            cmap = src.colormap(1)
        except ValueError:
            cmap = {}
    styled = raster_classes(path)  # names and colours from a QGIS style or attribute table beside the raster
    colours = {code: styled.colours[code] for code in codes if code in styled.colours}
    for code in codes:
        if code in cmap and code not in colours:
            r, g, b = cmap[code][:3]
            colours[code] = f"#{r:02x}{g:02x}{b:02x}"
    names = {code: styled.names[code] for code in codes if code in styled.names}
    notes = list(styled.notes)
    if names:
        unnamed = len(codes) - len(names)
        rest = f"; {unnamed} keep their codes" if unnamed else ""
        notes.append(f"note: class names from {' and '.join(styled.sources)} ({len(names)} of {len(codes)} classes"
                     f"{rest}); `classes:` in the settings overrides them")
    notes += [f"note: the label raster's pixels are {share ** -0.5:.3g}x finer than the imagery's: each image pixel "
             "takes the class covering most of it (majority)"] if finer else []
    notes += [f"warning: the label raster {path.name} declares no nodata and {code} labels {n / labelled:.0%} of its "
             f"pixels on the imagery: {code} is trained as a class (class_{code}); if it means 'not labelled', give "
             f"--label-nodata {code}" for code, n in suspects.items() if n]
    return codes, names, colours, notes


def check_class_bands(src, path: Path, role: str) -> None:
    """Refuse a raster of several bands (alpha bands aside) as class codes: a colour rendering of a classification
    would otherwise be read as classes from its red band.

    Raises:
        InvalidLabelsError: more than one band that is not alpha.
    """
    from geocamat.data.stack import mask_kind

    _, alpha = mask_kind(src)
    if src.count - len(alpha) > 1:
        raise InvalidLabelsError(
            f"{role} {path} has {src.count} bands: class codes are read from one band; if it is a colour "
            "rendering of a classification (QGIS's 'Rendered image' export), save the raw class values instead "
            "(Export > Save As, 'Raw data'), else keep the band of codes (gdal_translate -b 1)")


def pixel_share(src, crs, transform) -> float:
    """The area of one of ``src``'s pixels (an open raster) as a share of one pixel of the grid (``crs``,
    ``transform``), measured in the grid's CRS."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds(src.crs, crs, *src.bounds)
    label_pixel = (right - left) * (top - bottom) / (src.width * src.height)
    grid_pixel = abs(transform.a * transform.e)
    return label_pixel / grid_pixel if grid_pixel > 0 else 1.0


def _usual_nodata(dtype: str) -> tuple[int, ...]:
    """Label values that usually mean "not labelled" in a raster of this data type."""
    return {"uint8": (0, 255), "uint16": (0, 65535), "uint32": (0, 4294967295), "int8": (0, -1, -128),
            "int16": (0, -1, -9999, -32768), "int32": (0, -1, -9999)}.get(dtype, (0, -9999))


def _shown(path) -> str:
    """A label path (or several) as messages name it: the file names."""
    return ", ".join(Path(str(p)).name for p in path) if isinstance(path, list | tuple) else Path(str(path)).name


def _vector_frame(path: Path | list, field: str | None, grid: Grid, name_codes: dict[str, int] | None,
                  field_flag: str):
    """The layer (or the layers of several files, or with ``field`` ``layer`` each layer a class) in the grid's CRS
    with its class codes: (frame, codes, names by code, points only)."""
    import pandas as pd
    from rasterio.transform import array_bounds

    what = "reference layer" if field_flag == "--reference-field" else "label layer"
    height, width = grid.shape
    within = (array_bounds(height, width, grid.transform), grid.crs)
    if isinstance(path, list | tuple) or field == LAYER_FIELD:
        specs = list(path) if isinstance(path, list | tuple) else [path]
        frame = read_label_layers(specs, what, field, within, grid.crs)
        path = Path(_shown(specs))  # for the messages
    else:
        frame = read_vector(path, what, field=field, within=within)
    if frame.empty and frame.attrs.get("layer_features"):
        raise InvalidLabelsError(f"labels in {Path(path).name} do not overlap the imagery: none of its "
                                 f"{frame.attrs['layer_features']} features meets it; check both files' extents and "
                                 "CRS")
    if frame.empty:
        raise InvalidLabelsError(f"label layer {path} has no features")
    if frame.crs is None:
        raise InvalidLabelsError(f"label layer {path} has no CRS: set one (e.g. a .prj file or ogr2ogr -a_srs)")
    columns = [c for c in frame.columns if c != frame.geometry.name]
    if field is None:
        raise InvalidLabelsError(f"vector labels need {field_flag}: one of {', '.join(columns)}")
    if field not in frame.columns:
        raise InvalidLabelsError(f"{field_flag} {field!r} not in {path.name}: choose one of {', '.join(columns)}")
    blank = frame[field].astype(str).str.strip() == ""  # a reference point not labelled yet, as a null one
    unlabelled = int((frame[field].isna() | blank).sum())
    if unlabelled == len(frame):  # e.g. a reference sample just drawn by `geocamat sample`, before the field visit
        raise InvalidLabelsError(f"none of the {len(frame)} features of {_shown(path)} has a {field!r} value yet: "
                                 "fill in each one's class (at reference points from `geocamat sample`: the class "
                                 "seen there), then run this again")
    frame = frame[frame[field].notna() & ~blank & frame.geometry.notna() & ~frame.geometry.is_empty]
    frame.attrs["unlabelled"] = unlabelled  # features left out for an empty class field (said by evaluate)
    frame = repair_geometries(frame, path)
    frame = frame.to_crs(grid.crs)
    values = frame[field]
    if not pd.api.types.is_numeric_dtype(values):  # codes kept as text ('1', '311'), as shapefiles and CSVs often do
        as_numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
        if as_numbers.notna().all() and np.allclose(as_numbers, np.round(as_numbers)):
            values = as_numbers
    names: dict[int, str] = {}
    if pd.api.types.is_numeric_dtype(values):
        if not np.allclose(values, np.round(values)):
            raise InvalidLabelsError(f"label field {field!r} holds non-integer numbers: use a class code or name")
        codes = np.round(values).astype(int).to_numpy()
        if (codes == UNLABELLED).any():  # the "not labelled" mark of the label rasters: its features would vanish
            raise InvalidLabelsError(f"label field {field!r} of {_shown(path)} holds the code {UNLABELLED}, which "
                                     "geocamat keeps for 'not labelled': renumber that class (or give class names)")
        # A text column in one-to-one correspondence with the codes gives the names.
        for col in columns:
            if col != field and (pd.api.types.is_string_dtype(frame[col]) or frame[col].dtype == object):
                pairs = pd.DataFrame({field: values, col: frame[col]}).drop_duplicates()
                if pairs[field].is_unique and pairs[col].is_unique:
                    names = {int(round(k)): str(v) for k, v in zip(pairs[field], pairs[col], strict=True)}
                    break
    else:
        from geocamat.data.classes import spellings

        values = values.astype(str)  # one spelling per class; "Forest" in a reference is the model's "forest"
        values = values.map(spellings(values.value_counts().to_dict(), Path(path).name, name_codes))
        labels = sorted(str(v) for v in values.unique())
        lookup = {name: i + 1 for i, name in enumerate(labels)}
        if name_codes is not None:
            unknown = [name for name in labels if name not in name_codes]
            if unknown:
                raise InvalidLabelsError(f"{field_flag} {field!r} of {path.name} holds classes the model does not know "
                                         f"({', '.join(unknown)}): use the model's names "
                                         f"({', '.join(name_codes)}) or codes")
            lookup = {name: name_codes[name] for name in labels}
        codes = np.array([lookup[str(v)] for v in values])
        names = {code: name for name, code in lookup.items()}
    sparse = set(frame.geom_type) <= {"Point", "MultiPoint"}
    return frame, codes, names, sparse


def vector_labels(path: Path, field: str | None, grid: Grid, *, name_codes: dict[str, int] | None = None,
                  field_flag: str = "--label-field") -> tuple[np.ndarray, dict[int, str], bool]:
    """Burn a vector layer's classes onto ``grid``: (int32 codes, -1 unlabelled; names by code; points only).

    Args:
        path: vector file (polygons burnt by class, points label their pixel).
        field: class field: integer codes, or names (coded 1, 2, ... in alphabetical order, or by ``name_codes``).
        grid: the target grid.
        name_codes: code of each class name (e.g. a model's classes); names outside it are an error.
        field_flag: the option that sets ``field``, for error messages.
    """
    from rasterio.features import rasterize

    frame, codes, names, sparse = _vector_frame(path, field, grid, name_codes, field_flag)
    out = rasterize(((g, int(c)) for g, c in zip(frame.geometry, codes, strict=True)), out_shape=grid.shape,
                    transform=grid.transform, fill=UNLABELLED, dtype="int32", all_touched=sparse)
    return out, names, sparse


def repair_geometries(frame, path: Path):
    """``frame`` with invalid (e.g. self-intersecting) geometries repaired by ``make_valid``, with a warning."""
    invalid = ~frame.geometry.is_valid
    count = int(invalid.sum())
    if not count:
        return frame
    import warnings

    from geocamat.errors import GeocamatWarning

    frame = frame.copy()
    frame.loc[invalid, frame.geometry.name] = frame.geometry[invalid].make_valid()
    warnings.warn(f"{count} of {len(frame)} geometries in {path} were invalid (e.g. self-intersecting) and were "
                  "repaired with make_valid; check them in a GIS", GeocamatWarning, stacklevel=2)
    return frame


def _vector_label_windows(path: Path, field: str | None, grid: Grid, dst
                          ) -> tuple[set[int], dict[int, str], bool, list[str]]:
    """Rasterise a vector layer onto ``grid`` window by window into ``dst``: (codes, names, points only, notes).

    Each window burns only the features whose bounding box meets it, in the layer's order (later features
    over earlier ones, as a whole-grid burn would). The notes name what the burn loses without a word
    otherwise: polygons too small to cover a pixel's centre on their own, and pixels under features of different
    classes (the later one's class taken).
    """
    from rasterio.windows import bounds as window_bounds
    from rasterio.windows import transform as window_transform

    frame, codes, names, sparse = _vector_frame(path, field, grid, None, "--label-field")
    geometries = frame.geometry.to_numpy()
    codes = np.asarray(codes, dtype=np.int32)
    index = frame.sindex
    found: set[int] = set()
    burnt = np.zeros(len(frame), dtype=bool)  # features that label at least one pixel
    contested = 0  # pixels whose features disagree on the class
    for window in label_windows(grid.shape):
        hits = np.sort(index.query(box_of(window_bounds(window, grid.transform))))
        out, used, disagree = burn_window(geometries, codes, hits, (int(window.height), int(window.width)),
                                          window_transform(window, grid.transform), sparse)
        burnt[used] = True
        contested += disagree
        found.update(int(v) for v in np.unique(out[out != UNLABELLED]))
        dst.write(out, 1, window=window)
    small = 0 if sparse else too_small(geometries[~burnt][:MAX_SMALL_CHECKS], grid)
    return found, names, sparse, burn_notes(path, small, len(frame), contested, sparse, "they add nothing to training")


def burn_window(geometries, codes: np.ndarray, hits: np.ndarray, shape: tuple[int, int], transform,
                all_touched: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Burn the features ``hits`` (indices, in the layer's order: later over earlier) into a window: (int32 codes,
    :data:`UNLABELLED` where none; the features that label a pixel; the pixels whose features disagree on the
    class)."""
    from rasterio.features import rasterize

    out = np.full(shape, UNLABELLED, dtype=np.int32)
    if not hits.size:
        return out, np.zeros(0, dtype=np.int64), 0
    burn = dict(out_shape=shape, transform=transform, fill=0, dtype="int32", all_touched=all_touched)
    last = rasterize(((geometries[i], int(i) + 1) for i in hits), **burn)  # feature number + 1, the last wins
    first = rasterize(((geometries[i], int(i) + 1) for i in hits[::-1]), **burn)  # the first wins
    inside = last > 0
    out[inside] = codes[last[inside] - 1]
    return out, np.unique(last[inside]) - 1, int((out[inside] != codes[first[inside] - 1]).sum())


#: unburnt features checked one by one for being smaller than a pixel (the rest are not counted)
MAX_SMALL_CHECKS = 100_000


def too_small(geometries, grid: Grid) -> int:
    """How many of ``geometries`` (features that labelled no pixel) inside the grid would label none on their own:
    no pixel centre inside them. Those under other features or outside the imagery do not count."""
    from rasterio.errors import WindowError
    from rasterio.features import rasterize
    from rasterio.windows import Window, from_bounds
    from rasterio.windows import transform as window_transform

    whole = Window(0, 0, grid.shape[1], grid.shape[0])
    small = 0
    for geometry in geometries:
        if geometry is None or geometry.is_empty:
            continue
        around = from_bounds(*geometry.bounds, transform=grid.transform)
        col, row = int(np.floor(around.col_off)) - 1, int(np.floor(around.row_off)) - 1
        window = Window(col, row, int(np.ceil(around.width)) + 3, int(np.ceil(around.height)) + 3)
        try:
            window = window.intersection(whole)
        except WindowError:  # wholly outside the imagery
            continue
        alone = rasterize([(geometry, 1)], out_shape=(int(window.height), int(window.width)),
                          transform=window_transform(window, grid.transform), fill=0, dtype="uint8")
        small += int(not alone.any())
    return small


def burn_notes(path, small: int, features: int, contested: int, sparse: bool, lost: str) -> list[str]:
    """Warnings on what burning a label layer lost (see :func:`_vector_label_windows`); ``lost``: what it means
    for the run (e.g. "they add nothing to training")."""
    kind = "points" if sparse else "features"
    notes = []
    if small:
        notes.append(f"warning: {small} of {features} polygons of {_shown(path)} are too small to cover a pixel's "
                     f"centre: {lost}; draw them larger or give them as points")
    if contested:
        pixels = "labelled pixel lies" if contested == 1 else "labelled pixels lie"
        notes.append(f"warning: {contested} {pixels} under {kind} of {_shown(path)} of different "
                     "classes: each takes the class of the feature that comes last in the layer; check the overlaps "
                     "in a GIS")
    return notes


def box_of(bounds: tuple[float, float, float, float]):
    """A shapely box of (left, bottom, right, top)."""
    from shapely.geometry import box

    return box(*bounds)


def labels_on_grid(labels: str | Path | list, grid: Grid, workdir: Path, field: str | None = None,
                   nodata: int | None = None) -> LabelRaster:
    """Bring a label raster or vector layer onto the image grid (reprojected once) and write it.

    ``nodata``: a label raster's "not labelled" value, replacing the one the file declares.

    The labels are reprojected or rasterised window by window (:data:`LABEL_WINDOW`) straight into a tiled
    GeoTIFF, so memory does not grow with the scene.

    Raises:
        InputNotFoundError: the file does not exist.
        InvalidLabelsError: unknown field, no CRS, non-integer classes, or no label inside the imagery.
    """
    specs = list(labels) if isinstance(labels, list | tuple) else [labels]
    for spec in specs:
        if not vector_file(spec).exists():
            raise InputNotFoundError(f"labels not found: {vector_file(spec)}")
    vector = all(is_vector(spec) for spec in specs)
    if len(specs) > 1 and not vector:
        raise InvalidLabelsError(f"several label files must all be vector layers (got {', '.join(map(str, specs))}); "
                                 "give one label raster")
    path = Path(specs[0]) if len(specs) == 1 else specs
    if vector and nodata is not None:
        raise InvalidLabelsError(f"--label-nodata applies to a label raster; {_shown(path)} is a vector layer (leave "
                                 "the unlabelled ground without features)")
    out = workdir / "labels_on_grid.tif"
    notes: list[str] = []
    with _open_output(grid, out) as dst:
        if vector:
            codes, names, sparse, notes = _vector_label_windows(path, field, grid, dst)
            colours: dict[int, str] = {}
        else:
            codes, names, colours, notes = _raster_label_windows(path, grid, dst, nodata)
            sparse = False
    if not codes:
        out.unlink(missing_ok=True)
        raise InvalidLabelsError(f"labels in {_shown(path)} do not overlap the imagery: check both files' extents and "
                                 "CRS")
    return LabelRaster(out, grid, sorted(codes), names, colours, sparse, notes)
