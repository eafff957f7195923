"""Rasters whose geotransform is rotated or sheared, read north-up.

TorchGeo's index and reads assume north-up rasters (a rotated file's bounds come from two of its corners, and a
training window of it lands beside its labels), so each such file is replaced by a warped VRT onto the north-up
grid GDAL suggests for it (bilinear; Float32, NaN where there is no data, each band's own fill kept as nodata).
"""

from __future__ import annotations

from pathlib import Path


def is_rotated(transform) -> bool:
    """Whether an affine geotransform has rotation or shear terms."""
    return transform.b != 0 or transform.d != 0


def north_up_vrt(path: Path, out: Path, nodata: float | None = None) -> Path:
    """Write a north-up warped VRT of ``path`` to ``out`` (band descriptions kept; ``nodata``: the fill value, else
    the file's) and return ``out``."""
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path) as src:
        descriptions = src.descriptions
        with WarpedVRT(src, resampling=Resampling.bilinear, dtype="float32", nodata=float("nan"),
                       src_nodata=src.nodata if nodata is None else nodata, UNIFIED_SRC_NODATA="NO") as vrt:
            rasterio.shutil.copy(vrt, out, driver="VRT")
    if any(descriptions):
        with rasterio.open(out, "r+") as dst:
            for band, text in enumerate(descriptions, start=1):
                if text:
                    dst.set_band_description(band, text)
    return out


def north_up_note(path: Path) -> str:
    """The line telling the user a file was read north-up."""
    return (f"note: {path.name} has a rotated or sheared geotransform: read north-up through a warped VRT (bilinear); "
            "the outputs are north-up")
