"""Fill pixels a file does not declare: a Landsat Level-1 scene's collar of zeros with no nodata tag.

Such pixels are trained and mapped as imagery (a class painted over the collar, band statistics pulled
towards 0). A file without nodata, mask or alpha band is sampled in a few small windows spread over it
(edges included, so the cost does not grow with the scene) and the share of pixels at 0 in every band is
reported; the user decides (``--nodata 0``) since a real 0 can be data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: a file whose sampled pixels are at 0 in every band at least this often gets a warning
FILL_SHARE = 0.01
#: windows per side of the sampling grid, their side in pixels, and the most files sampled in one stack
GRID, SIDE, MAX_FILES = 6, 48, 16


def zero_share(path: Path) -> float:
    """Share of sampled pixels at 0 in every band of ``path``; 0.0 when the file declares nodata, a mask or alpha."""
    import rasterio

    from geocamat.data.stack import mask_kind

    with rasterio.open(path) as src:
        masked, alpha = mask_kind(src)
        if masked or alpha or any(v is not None for v in src.nodatavals):
            return 0.0
        zero = total = 0
        for window in sample_windows(src.height, src.width):
            block = src.read(window=window)
            zero += int((block == 0).all(axis=0).sum())
            total += int(window.width * window.height)
    return zero / total if total else 0.0


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
    """A warning line per file (of :func:`sample_files`) that seems to hold undeclared zero fill."""
    notes = []
    for path in sample_files(files):
        share = zero_share(path)
        if share >= FILL_SHARE:
            notes.append(f"warning: {path.name} declares no nodata but {share:.0%} of its sampled pixels are 0 in "
                         "every band: they are trained and mapped as imagery; if they are fill (a collar), give "
                         "--nodata 0")
    return notes
