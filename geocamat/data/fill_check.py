"""Fill pixels a file does not declare: a Landsat Level-1 scene's collar of zeros with no nodata tag.

Such pixels are trained and mapped as imagery (a class painted over the collar, band statistics pulled
towards 0). A file without mask or alpha band is sampled in a few small windows spread over it (edges included,
so the cost does not grow with the scene) and the share of pixels at a usual fill value (0, -9999, -32768, 65535,
...; not the one it declares) in every band is reported; the user decides (``--nodata V``): a real 0 can be data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: a file whose sampled pixels are at 0 in every band at least this often gets a warning
FILL_SHARE = 0.01
#: windows per side of the sampling grid, their side in pixels, and the most files sampled in one stack
GRID, SIDE, MAX_FILES = 6, 48, 16


#: values that fill a collar when a file does not say so (besides 0): GDAL/ArcGIS and 16-bit conventions
FILL_VALUES = (0.0, -9999.0, -32768.0, 65535.0, -3.4028234663852886e38)


def fill_share(path: Path) -> tuple[float | None, float]:
    """(the usual fill value (:data:`FILL_VALUES`) most sampled pixels of ``path`` hold in every band, their
    share); (None, 0.0) when the file has a mask or alpha band. A declared nodata value is not a candidate, the
    others are (a 0 collar in a file that declares -9999 was mapped as forest)."""
    value, share, _ = _fill_sample(path)
    return value, share


def _fill_sample(path: Path) -> tuple[float | None, float, float | None]:
    """:func:`fill_share` and the nodata value the file declares (read in the same opening)."""
    import rasterio

    from geocamat.data.stack import mask_kind

    with rasterio.open(path) as src:
        stated = next((v for v in src.nodatavals if v is not None), None)
        masked, alpha = mask_kind(src)
        if masked or alpha:
            return None, 0.0, stated
        declared = {float(v) for v in src.nodatavals if v is not None}
        candidates = [v for v in FILL_VALUES if v not in declared and _fits(v, src.dtypes[0])]
        if not candidates:
            return None, 0.0, stated
        counts = dict.fromkeys(candidates, 0)
        total = 0
        for window in sample_windows(src.height, src.width):
            try:
                block = src.read(window=window)
            except rasterio.errors.RasterioIOError:  # a truncated file: its own check says so, naming it
                return None, 0.0, stated
            for v in candidates:
                counts[v] += int((block == v).all(axis=0).sum())
            total += int(window.width * window.height)
    value = max(counts, key=counts.get)
    return (value, counts[value] / total, stated) if total and counts[value] else (None, 0.0, stated)


def _fits(value: float, dtype: str) -> bool:
    """Whether a raster of ``dtype`` can hold ``value``."""
    kind = np.dtype(dtype)
    if kind.kind == "f":
        return True
    info = np.iinfo(kind)
    return info.min <= value <= info.max


def sample_windows(height: int, width: int) -> list:
    """A :data:`GRID` x :data:`GRID` grid of windows of :data:`SIDE` px spread over a raster, edges included."""
    from rasterio.windows import Window

    side_r, side_c = min(SIDE, height), min(SIDE, width)
    rows = np.unique(np.linspace(0, height - side_r, GRID).round().astype(int))
    cols = np.unique(np.linspace(0, width - side_c, GRID).round().astype(int))
    return [Window(int(c), int(r), side_c, side_r) for r in rows for c in cols]


def sample_files(files: Sequence) -> list:
    """At most :data:`MAX_FILES` of ``files``, spread over the list (a mosaic of thousands is not read in full)."""
    if len(files) <= MAX_FILES:
        return list(files)
    return [files[i] for i in np.linspace(0, len(files) - 1, MAX_FILES).round().astype(int)]


def undeclared_fill_notes(files: Sequence[Path]) -> list[str]:
    """A warning line per file (of :func:`sample_files`) that seems to hold undeclared fill (:func:`fill_share`)."""
    notes = []
    for path in sample_files(files):
        value, share, declared = _fill_sample(path)
        if value is not None and share >= FILL_SHARE:
            said = f"declares nodata {declared:g}" if declared is not None else "declares no nodata"
            notes.append(f"warning: {path.name} {said} but {share:.0%} of its sampled pixels are {value:g} in "
                         "every band: they are trained and mapped as imagery; if they are fill (a collar), give "
                         f"--nodata {value:g}")
    return notes
