"""Score a class map against a reference land-cover raster, on validation blocks or under a mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geocamat.data.labels import VECTOR_SUFFIXES
from geocamat.data.splits import checkerboard
from geocamat.errors import InputNotFoundError, InvalidLabelsError, InvalidRasterError
from geocamat.metrics import confusion_matrix, summarise


def _on_grid(path: Path, like) -> np.ndarray:
    """Read a single-band raster resampled (nearest) onto the grid of the open dataset ``like``."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidRasterError(f"{path} is not a raster GDAL can read (vector references: "
                                 f"{', '.join(VECTOR_SUFFIXES)})") from exc
    with src:
        if src.crs is None:
            raise InvalidRasterError(f"{path} has no CRS: assign one with gdal_edit.py -a_srs")
        data = src.read(1, masked=True).astype("float64").filled(np.nan)
        out = np.full((like.height, like.width), np.nan)
        reproject(data, out, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                  dst_transform=like.transform, dst_crs=like.crs, dst_nodata=np.nan, resampling=Resampling.nearest)
    return out


def _vector_on_grid(path: Path, like, field: str | None, class_ids: list[int], class_names: list[str]) -> np.ndarray:
    """Burn a vector reference onto the grid of the open dataset ``like``; class names coded as the model's."""
    from geocamat.data.labels import UNLABELLED, Grid, vector_labels

    grid = Grid(like.crs.to_wkt(), like.transform, (like.height, like.width))
    codes, _, _ = vector_labels(path, field, grid, name_codes=dict(zip(class_names, class_ids, strict=True)),
                                field_flag="--reference-field")
    return np.where(codes == UNLABELLED, np.nan, codes.astype("float64"))


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

    with rasterio.open(reference) as r:
        keep = ~np.ma.getmaskarray(r.read(1, masked=True))
        if blocks:
            keep &= checkerboard((r.height, r.width), blocks, parity).astype(bool)
        rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
        if rows.size == 0:
            return None
        r0, r1 = max(0, rows[0] - margin), min(r.height, rows[-1] + 1 + margin)
        c0, c1 = max(0, cols[0] - margin), min(r.width, cols[-1] + 1 + margin)
        if (r1 - r0) * (c1 - c0) > most * r.height * r.width:
            return None
        return rasterio.windows.bounds(rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0), r.transform)


def score_map(map_path: Path, reference: Path, class_ids: list[int], class_names: list[str], *,
              blocks: int | None = None, parity: str = "odd", mask: Path | None = None,
              offset: tuple[int, int] | None = None, reference_field: str | None = None,
              require_overlap: bool = True) -> dict:
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

    Returns:
        OA, kappa, per-class metrics, confusion matrix, pixel counts and coverage.

    Raises:
        InvalidLabelsError: with ``require_overlap``, the reference has no labelled pixel on the map's valid
            pixels (no overlap, or the map is nodata there).
    """
    import rasterio

    for p in (map_path, reference) + ((mask,) if mask else ()):
        if not Path(p).exists():
            raise InputNotFoundError(f"file not found: {p}")
    with rasterio.open(map_path) as m:
        pred = m.read(1, masked=True)
        if offset and any(offset):
            from geocamat.data.registration import in_label_frame

            moved = in_label_frame(np.ma.getmaskarray(pred), tuple(offset), True)
            pred = np.ma.masked_array(in_label_frame(np.asarray(pred), tuple(offset), 0), mask=moved)
        vector = Path(reference).suffix.lower() in VECTOR_SUFFIXES
        if vector:
            ref = _vector_on_grid(Path(reference), m, reference_field, class_ids, class_names)
        else:
            ref = _on_grid(Path(reference), m)
        keep = np.isfinite(ref)
        if blocks and vector:
            keep &= checkerboard((m.height, m.width), blocks, parity).astype(bool)
        elif blocks:
            with rasterio.open(reference) as r:
                ref_grid = checkerboard((r.height, r.width), blocks, parity).astype("float64")
                from rasterio.warp import Resampling, reproject

                split = np.full((m.height, m.width), np.nan)
                reproject(ref_grid, split, src_transform=r.transform, src_crs=r.crs, dst_transform=m.transform,
                          dst_crs=m.crs, dst_nodata=np.nan, resampling=Resampling.nearest)
            keep &= split == 1
        if mask is not None:
            mk = _on_grid(Path(mask), m)
            keep &= np.isfinite(mk) & (mk != 0)
    reference_pixels = int(keep.sum())
    mapped = keep & ~np.ma.getmaskarray(pred)
    if require_overlap and not mapped.any():
        where = " in the scored blocks/mask" if blocks or mask is not None else ""
        why = ("has no labelled pixel on the map's extent" if not reference_pixels
               else f"labels {reference_pixels} pixels{where} but the map is nodata on all of them")
        raise InvalidLabelsError(f"reference {reference} {why} ({map_path}): nothing to score; give a reference "
                                 "that overlaps the mapped area (check both extents and CRS with geocamat info)")
    cm = confusion_matrix(ref[mapped].astype(int), np.asarray(pred)[mapped], class_ids)
    out = summarise(cm, class_ids, class_names)
    out["reference_pixels"] = reference_pixels
    out["coverage"] = round(int(mapped.sum()) / reference_pixels, 4) if reference_pixels else 0.0
    out["scope"] = f"{parity} blocks of a {blocks}x{blocks} checkerboard" if blocks else "all reference pixels"
    if offset and any(offset):
        out["map_offset_px"] = list(offset)
    return out
