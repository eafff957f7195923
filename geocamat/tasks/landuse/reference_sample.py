"""A stratified random sample of a class map, for labelling reference points: ``geocamat sample``.

The design Olofsson et al. (2014) recommend for accuracy and area estimates: the map's classes are the strata,
each gets a number of random pixels (``per_class``; or a ``total`` spread in proportion to the classes' areas
with ``per_class`` as each class's minimum, so that rare classes are sampled enough), and the analyst labels each
point from better data (field visits, very high resolution imagery). ``geocamat evaluate --map MAP --reference
SAMPLE --reference-field reference`` then estimates every class's area with its 95% interval
(:mod:`geocamat.metrics.area`).

The map is read twice by windows (counts, then the draw), so memory holds one window and the sample, whatever the
map's size. Each pixel draws a random key from (seed, window); each class keeps the pixels of its smallest keys: a
uniform sample without replacement, the same for a seed on every run.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from geocamat.errors import ConfigError, InputNotFoundError, InvalidRasterError, OutputExistsError
from geocamat.outputs.style import ClassStyle

LAYER = "sample"
#: side of the windows the map is read by
WINDOW = 1024
#: what an analyst fills in: the class seen on better data (names or codes of the map's classes)
REFERENCE_FIELD = "reference"
#: the user's accuracy expected of a class the model has no validation figure for (sample sizes for --target-se)
EXPECTED_USERS = 0.8


def expected_users(bundle) -> dict[int, float]:
    """Each class's user's accuracy expected from a model's validation map (its precision there), kept within
    [0.5, 0.95] so that a class never or always right on a few validation pixels does not ask for no points."""
    per_class = (bundle.metrics.get("validation_map") or {}).get("per_class") or {}
    return {int(m["id"]): min(0.95, max(0.5, float(m["precision"]))) for m in per_class.values()
            if m.get("support") and "id" in m}


def allocate(areas: dict[int, int], per_class: int, total: int | None) -> dict[int, int]:
    """Points per map class: ``per_class`` each, or ``total`` spread in proportion to ``areas`` (pixels) with
    ``per_class`` as each class's minimum; never more than a class has pixels.

    Raises:
        ConfigError: ``total`` is below ``per_class`` times the classes.
    """
    classes = [c for c, n in areas.items() if n > 0]
    if total is None:
        return {c: min(per_class, areas[c]) for c in classes}
    if total < per_class * len(classes):
        raise ConfigError(f"--total {total} is below --per-class {per_class} x {len(classes)} classes: give a larger "
                          "--total or a smaller --per-class")
    pixels = sum(areas[c] for c in classes)
    wanted = {c: max(per_class, round(total * areas[c] / pixels)) for c in classes}
    over = sum(wanted.values()) - total  # the minimums pushed the sum over the total: take it from the largest
    for c in sorted(classes, key=lambda c: -wanted[c]):
        if over <= 0:
            break
        cut = min(over, wanted[c] - per_class)
        wanted[c] -= cut
        over -= cut
    out = {c: min(n, areas[c]) for c, n in wanted.items()}
    short = min(total, pixels) - sum(out.values())  # points a class too small to take them left over
    while short > 0:  # to the classes with pixels to spare, by area
        room = [c for c in classes if out[c] < areas[c]]
        share = sum(areas[c] for c in room)
        given = 0
        for c in sorted(room, key=lambda c: -areas[c]):
            extra = min(areas[c] - out[c], max(1, round(short * areas[c] / share)), short - given)
            out[c] += extra
            given += extra
            if given >= short:
                break
        short -= given
    return out


def map_style(map_path: Path, codes: list[int]) -> ClassStyle:
    """The classes' names and colours from the QGIS style ``predict`` writes beside the map (``landuse.qml``), or
    the codes and a grey when there is none."""
    from geocamat.data.class_styles import qml_classes

    qml = map_path.with_suffix(".qml")
    found: tuple[dict[int, str], dict[int, str]] = ({}, {})
    if qml.exists():
        try:
            found = qml_classes(qml)
        except ET.ParseError:
            pass
    names = [found[0].get(c, str(c)) for c in codes]
    colours = [found[1].get(c, "#808080") for c in codes]
    return ClassStyle(list(codes), names, colours)


def _classes(src, window, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(class codes, mask of the mapped pixels to sample) of a window of the map; ``mask``: a
    :func:`~geocamat.tasks.landuse.scoring.mask_on_grid` whose outside (zero, nodata) pixels are left out."""
    part = src.read(1, window=window, masked=True)
    keep = ~np.ma.getmaskarray(part)
    if mask is not None:
        keep &= mask.nonzero(window)
    return np.asarray(part), keep


def _keys(seed: int, window) -> np.ndarray:
    """Every pixel's random key, from (seed, the window's place): the windows are a fixed grid, so a seed gives
    the same sample on every run."""
    rng = np.random.default_rng([seed, int(window.row_off), int(window.col_off)])
    return rng.random((int(window.height), int(window.width)))


def draw(map_path: Path, per_class: int = 50, total: int | None = None, seed: int = 0,
         mask: Path | None = None, target_se: float | None = None, users: dict[int, float] | None = None) -> dict:
    """Draw the sample: ``{"points": [(code, row, col), ...], "areas": {code: pixels}, "allocation": {...},
    "total", "transform", "crs"}``; with ``mask`` (a raster in any CRS), only where it is non-zero (as
    ``geocamat evaluate --mask`` scores). With ``target_se`` the total is the points the overall accuracy's
    standard error needs (:func:`geocamat.metrics.area.sample_size`), from the user's accuracies expected of the
    classes (``users``; :data:`EXPECTED_USERS` for a class without one), each class at least ``per_class``.

    Raises:
        InputNotFoundError, InvalidRasterError: no map, a map that is not a class raster, or one without classes.
    """
    import rasterio

    from geocamat.data.vector_layers import vector_file
    from geocamat.preflight import check_blocks, check_class_map
    from geocamat.tasks.landuse.scoring import mask_on_grid

    for path in (map_path,) + ((vector_file(mask),) if mask is not None else ()):
        if not Path(path).exists():
            raise InputNotFoundError(f"file not found: {path}")
    check_blocks(map_path)  # a truncated map fails in one line, before its CRS or values are read
    check_class_map(Path(map_path))  # an image, a rendering or confidence.tif is not a class map
    with rasterio.open(map_path) as src:
        if src.crs is None:
            raise InvalidRasterError(f"{map_path} has no CRS: the sample's points would have no place on the ground; "
                                     "set one (gdal_edit.py -a_srs)")
        within = mask_on_grid(Path(mask), src) if mask is not None else None
        try:
            return _draw(src, per_class, total, seed, within, map_path, target_se, users or {})
        finally:
            if within is not None:
                within.close()


def _draw(src, per_class: int, total: int | None, seed: int, within, map_path: Path, target_se: float | None,
          users: dict[int, float]) -> dict:
    """:func:`draw` on the open map."""
    from geocamat.data.labels import label_windows

    areas: dict[int, int] = {}
    for window in label_windows((src.height, src.width), WINDOW):
        codes, mapped = _classes(src, window, within)
        values, counts = np.unique(codes[mapped], return_counts=True)
        for v, n in zip(values.tolist(), counts.tolist(), strict=True):
            areas[int(v)] = areas.get(int(v), 0) + int(n)
    if not areas:
        where = " inside the mask" if within is not None else " (all nodata)"
        raise InvalidRasterError(f"{map_path} has no mapped pixel{where}: nothing to sample")
    expected_se = None
    if target_se is not None:
        from geocamat.metrics.area import allocation_se, sample_size

        codes = sorted(areas)
        pixels = np.array([areas[c] for c in codes], np.float64)
        weights = pixels / pixels.sum()
        expected = np.array([users.get(c, EXPECTED_USERS) for c in codes])
        total = max(sample_size(weights, expected, target_se), per_class * len(codes))
        while True:  # equation 13 assumes areas-proportional points; the minimums and small classes may not be
            allocation = allocate(areas, per_class, total)
            expected_se = allocation_se(weights, expected, np.array([allocation[c] for c in codes]), pixels)
            if expected_se <= target_se * 1.0001 or total >= pixels.sum():
                break
            total = min(int(pixels.sum()), math.ceil(total * 1.05) + 1)
    allocation = allocate(areas, per_class, total)
    best: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # class -> (keys, rows, cols), smallest
    for window in label_windows((src.height, src.width), WINDOW):
        codes, mapped = _classes(src, window, within)
        keys = _keys(seed, window)
        for c, k in allocation.items():
            rows, cols = np.nonzero(mapped & (codes == c))
            if not len(rows):
                continue
            kk = keys[rows, cols]
            old = best.get(c)
            if old is not None:
                kk = np.concatenate([old[0], kk])
                rows = np.concatenate([old[1], rows + int(window.row_off)])
                cols = np.concatenate([old[2], cols + int(window.col_off)])
            else:
                rows, cols = rows + int(window.row_off), cols + int(window.col_off)
            if len(kk) > k:
                keep = np.argpartition(kk, k - 1)[:k]
                kk, rows, cols = kk[keep], rows[keep], cols[keep]
            best[c] = (kk, rows, cols)
    points = []
    for c in sorted(best):
        kk, rows, cols = best[c]
        order = np.argsort(kk)
        points += [(c, int(r), int(col)) for r, col in zip(rows[order], cols[order], strict=True)]
    return {"points": points, "areas": areas, "allocation": allocation, "total": total,
            "transform": src.transform, "crs": src.crs, "expected_se": expected_se}


def write_sample(map_path: str | os.PathLike, out: str | os.PathLike, *, per_class: int = 50,
                 total: int | None = None, seed: int = 0, mask: str | os.PathLike | None = None,
                 target_se: float | None = None, users: dict[int, float] | None = None,
                 overwrite: bool = False) -> dict:
    """Draw a stratified random sample of ``map_path`` and write it as a GeoPackage of points at pixel centres:
    ``map_code``, ``map_class`` and an empty ``reference`` field to fill in, styled by map class in QGIS.

    Returns:
        A summary: points per class, pixels per class, the output path.
    """
    import geopandas as gpd
    import pandas as pd
    import pyogrio
    import shapely

    from geocamat.outputs.geopackage import store_style
    from geocamat.outputs.qml import categorized_polygon_qml
    from geocamat.preflight import check_writable

    if per_class < 1 or (total is not None and total < 1):
        raise ConfigError("--per-class and --total must be positive integers")
    if target_se is not None and total is not None:
        raise ConfigError("--target-se sets the total itself: give it or --total, not both")
    if target_se is not None and not 0 < target_se < 0.5:
        raise ConfigError(f"--target-se is a standard error of the overall accuracy in (0, 0.5), e.g. 0.01, not "
                          f"{target_se:g}")
    map_path, out = Path(map_path), Path(out)
    if out.suffix.lower() not in (".gpkg", ".csv"):
        raise ConfigError(f"--out must be a GeoPackage (.gpkg) or a CSV table of lon/lat (.csv), not {out.name}")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists: pass --overwrite to replace it")
    check_writable(out.parent)  # a read-only or forbidden folder fails now, before the map is read
    sample = draw(map_path, per_class, total, seed, Path(mask) if mask else None, target_se, users)
    out.parent.mkdir(parents=True, exist_ok=True)
    codes = sorted(sample["areas"])
    style = map_style(map_path, codes)
    name = dict(zip(style.ids, style.names, strict=True))
    t = sample["transform"]
    frame = gpd.GeoDataFrame(
        {"id": np.arange(1, len(sample["points"]) + 1), "map_code": [c for c, _, _ in sample["points"]],
         "map_class": [name[c] for c, _, _ in sample["points"]],
         REFERENCE_FIELD: pd.Series([None] * len(sample["points"]), dtype="string")},
        geometry=[shapely.Point(*(t @ (col + 0.5, row + 0.5))) for _, row, col in sample["points"]],
        crs=sample["crs"])
    tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")
    tmp.unlink(missing_ok=True)
    try:
        if out.suffix.lower() == ".csv":  # for a field team's GPS or phone: WGS 84 lon/lat, read back by evaluate
            lonlat = frame.to_crs("EPSG:4326")
            table = pd.DataFrame({"id": frame["id"], "lon": lonlat.geometry.x.round(9),
                                  "lat": lonlat.geometry.y.round(9), "map_code": frame["map_code"],
                                  "map_class": frame["map_class"], REFERENCE_FIELD: frame[REFERENCE_FIELD]})
            table.to_csv(tmp, index=False)
            from geocamat.outputs.csv_types import types_of, write_csvt

            write_csvt(out, types_of(table))  # the reference column stays text: codes or names
        else:
            pyogrio.write_dataframe(frame, tmp, layer=LAYER, driver="GPKG",
                                    dataset_options={"VERSION": "1.2"})  # what QGIS 3.22's GDAL reads in full
            store_style(tmp, categorized_polygon_qml(style, field="map_code", marker=True), LAYER)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    counts = {name[c]: sample["allocation"][c] for c in codes}  # each class gets its allocation (capped by its pixels)
    return {"out": str(out), "points": len(sample["points"]), "per_class": counts,
            "pixels": {name[c]: sample["areas"][c] for c in codes}, "seed": seed, "total": sample["total"],
            "expected_se": sample["expected_se"]}
