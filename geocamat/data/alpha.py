"""Alpha bands that are masks, and bands tagged alpha that are imagery.

GDAL writes a 4-band Byte GeoTIFF as RGB + alpha unless told otherwise (``PHOTOMETRIC``), so an RGB + near-infrared
orthophoto saved with default options (rasterio, many scripts) comes back with its NIR band tagged alpha. A real
alpha band is a mask: 0 where transparent and one other value (255) elsewhere. A band tagged alpha is taken as a
mask only when its values look like one (read decimated, once per file); otherwise it stays a band of imagery.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

#: side (pixels) of the decimated read that tells a mask from imagery
SAMPLE_SIDE = 512


def alpha_bands(src) -> list[int]:
    """0-based bands of an open rasterio dataset that are alpha masks: tagged alpha, holding 0 and one other value
    at most."""
    from rasterio.enums import ColorInterp

    tagged = [b for b, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
    if not tagged or src.count < 2:
        return []
    try:
        stat = os.stat(src.name)
        key = (src.name, stat.st_mtime_ns, stat.st_size)
    except OSError:  # not a file (e.g. an in-memory dataset): checked each time
        key = None
    return [b for b in tagged if (_mask_like(key, b) if key else _values_mask_like(src, b))]


@lru_cache(maxsize=256)
def _mask_like(key: tuple, band: int) -> bool:
    import rasterio

    with rasterio.open(key[0]) as src:
        return _values_mask_like(src, band)


def _values_mask_like(src, band: int) -> bool:
    """Whether band ``band`` (0-based) holds 0 and one other value at most (a decimated read)."""
    scale = max(1.0, max(src.width, src.height) / SAMPLE_SIDE)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    values = np.unique(src.read(band + 1, out_shape=shape))
    return len(values) <= 1 or (len(values) == 2 and values[0] == 0)
