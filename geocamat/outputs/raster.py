"""Class and float rasters as Cloud-Optimised GeoTIFFs, assembled from tiles written while streaming.

A run writes its results as small tiled GeoTIFF pieces (one per finished unit of rows/columns); at the end
a VRT mosaics the pieces and GDAL's COG driver turns it into one COG (tiled, overviews, IFDs first).
The class raster carries a colour table and GDAL category names (stored by GDAL in ``.tif.aux.xml``),
so QGIS shows class names even without the ``.qml`` written beside it.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocamat.outputs.style import ClassStyle, class_dtype_nodata

PIECE_OPTIONS = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "zstd",
                 "zstd_level": 1}


def _gdal_type(dtype: str) -> str:
    return {"uint8": "Byte", "uint16": "UInt16", "float32": "Float32", "int16": "Int16", "int32": "Int32"}[dtype]


@dataclass
class Piece:
    """A raster file covering ``width`` x ``height`` pixels at (col_off, row_off) of the full grid."""

    path: Path
    col_off: int
    row_off: int
    width: int
    height: int


def write_piece(path: Path, array: np.ndarray, nodata: float | int | None) -> Path:
    """Write an array (bands, rows, cols) as a small tiled GeoTIFF without georeferencing (temp name first)."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    bands, height, width = array.shape
    tmp = path.with_name(path.name + ".part")
    profile = dict(PIECE_OPTIONS, width=width, height=height, count=bands, dtype=array.dtype.name, nodata=nodata)
    if width < 256 or height < 256:
        profile["tiled"] = False
        profile.pop("blockxsize"), profile.pop("blockysize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
    os.replace(tmp, path)
    return path


def mosaic_vrt(
    path: Path,
    pieces: Sequence[Piece],
    *,
    width: int,
    height: int,
    crs_wkt: str,
    transform,
    dtype: str,
    count: int,
    nodata: float | int | None,
    descriptions: Sequence[str] | None = None,
    style: ClassStyle | None = None,
    source_bands: Sequence[int] | None = None,
    overviews: Sequence[Path] = (),
) -> Path:
    """Write a VRT placing ``pieces`` on the full grid; with a colour table and category names if ``style``.

    ``source_bands`` picks, for each VRT band, the band of the pieces it comes from (default 1..count).
    ``overviews``: rasters (e.g. VRTs of overview pieces, largest first) whose band b is the overview of
    band b; GDAL's COG driver copies such source overviews instead of computing its own.
    """
    gt = ", ".join(repr(float(v)) for v in (transform.c, transform.a, transform.b, transform.f, transform.d,
                                               transform.e))
    nd = "" if nodata is None else f"    <NoDataValue>{'nan' if np.isnan(nodata) else int(nodata)}</NoDataValue>\n"
    bands = []
    for b in range(1, count + 1):
        src_band = source_bands[b - 1] if source_bands else b
        desc = f"    <Description>{html.escape(descriptions[b - 1])}</Description>\n" if descriptions else ""
        extra = ""
        if style is not None:
            top = max(max(style.ids), int(nodata or 0))
            names = [""] * (top + 1)
            colors = [(0, 0, 0, 0)] * (top + 1)
            for i, cid in enumerate(style.ids):
                names[cid] = style.names[i]
                colors[cid] = (*style.rgb(i), 255)
            extra = ("    <ColorInterp>Palette</ColorInterp>\n    <CategoryNames>\n"
                     + "".join(f"      <Category>{html.escape(n)}</Category>\n" for n in names)
                     + "    </CategoryNames>\n    <ColorTable>\n"
                     + "".join(f'      <Entry c1="{c[0]}" c2="{c[1]}" c3="{c[2]}" c4="{c[3]}"/>\n' for c in colors)
                     + "    </ColorTable>\n")
        sources = "".join(
            f"    <SimpleSource>\n"
            f'      <SourceFilename relativeToVRT="0">{html.escape(str(Path(p.path).resolve()))}</SourceFilename>\n'
            f"      <SourceBand>{src_band}</SourceBand>\n"
            f'      <SrcRect xOff="0" yOff="0" xSize="{p.width}" ySize="{p.height}"/>\n'
            f'      <DstRect xOff="{p.col_off}" yOff="{p.row_off}" xSize="{p.width}" ySize="{p.height}"/>\n'
            f"    </SimpleSource>\n"
            for p in pieces
        )
        ovr = "".join(
            f"    <Overview>\n"
            f'      <SourceFilename relativeToVRT="0">{html.escape(str(Path(o).resolve()))}</SourceFilename>\n'
            f"      <SourceBand>{b}</SourceBand>\n"
            f"    </Overview>\n"
            for o in overviews
        )
        bands.append(f'  <VRTRasterBand dataType="{_gdal_type(dtype)}" band="{b}">\n{nd}{desc}{extra}{sources}{ovr}'
                     "  </VRTRasterBand>\n")
    xml = (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
           f"  <SRS>{html.escape(crs_wkt)}</SRS>\n  <GeoTransform>{gt}</GeoTransform>\n" + "".join(bands)
           + "</VRTDataset>\n")
    path.write_text(xml)
    return path


def to_cog(src: Path, dst: Path, *, resampling: str = "MODE", blocksize: int = 512, threads: int | None = None,
           compress: str = "DEFLATE") -> Path:
    """Copy a raster (e.g. a VRT mosaic) into a Cloud-Optimised GeoTIFF with overviews (GDAL COG driver).

    ``compress``: DEFLATE (the most widely readable) or ZSTD (level 1: ~2.5x faster to write for float
    rasters of the same size; GDAL >= 2.3, QGIS 3).

    The COG is written to ``dst`` directly: callers pass a temporary name and rename it (with its
    ``.aux.xml``, which holds the category names) when every output is ready. See :func:`move_raster`.
    """
    import rasterio
    from rasterio.shutil import copy

    with rasterio.Env(GDAL_NUM_THREADS=str(threads or os.cpu_count() or 1)):
        level = {"LEVEL": 1} if compress.upper() == "ZSTD" else {}
        copy(str(src), str(dst), driver="COG", COMPRESS=compress, PREDICTOR="YES" if resampling != "MODE" else "NO",
             BLOCKSIZE=blocksize, RESAMPLING=resampling, OVERVIEWS="AUTO", BIGTIFF="IF_SAFER",
             NUM_THREADS=str(threads or os.cpu_count() or 1), **level)
    return dst


def move_raster(src: Path, dst: Path) -> None:
    """Rename a raster and its GDAL side-car (``.aux.xml``) if any; an existing side-car of ``dst`` is removed."""
    side_src, side_dst = Path(str(src) + ".aux.xml"), Path(str(dst) + ".aux.xml")
    if side_dst.exists():
        side_dst.unlink()
    os.replace(src, dst)
    if side_src.exists():
        os.replace(side_src, side_dst)


def write_class_raster(
    path: str | os.PathLike,
    classes: np.ndarray,
    *,
    transform,
    crs,
    style: ClassStyle,
    nodata: int | None = None,
    qml: bool = True,
) -> Path:
    """Write an in-memory class map (label codes) as a styled COG with a ``.qml`` beside it.

    Reusable by ``evaluate`` (e.g. for an error map or a reference map on the model's grid).

    Args:
        path: output ``.tif``.
        classes: (rows, cols) integer array of class ids; ``nodata`` where there is no class.
        transform: affine transform of the grid.
        crs: CRS of the grid (anything rasterio accepts).
        style: class ids, names and colours.
        nodata: nodata value (default: :func:`class_dtype_nodata`).
        qml: also write ``<name>.qml`` (QGIS paletted style).

    Returns:
        the path of the COG.
    """
    import tempfile

    from rasterio.crs import CRS

    from geocamat.outputs.qml import write_paletted_qml

    path = Path(path)
    dtype, default_nodata = class_dtype_nodata(style.ids)
    nodata = default_nodata if nodata is None else nodata
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-") as tmp:
        piece = write_piece(Path(tmp) / "piece.tif", classes.astype(dtype)[None], nodata)
        vrt = mosaic_vrt(Path(tmp) / "map.vrt", [Piece(piece, 0, 0, classes.shape[1], classes.shape[0])],
                         width=classes.shape[1], height=classes.shape[0], crs_wkt=CRS.from_user_input(crs).to_wkt(),
                         transform=transform, dtype=dtype, count=1, nodata=nodata, style=style)
        cog = to_cog(vrt, Path(tmp) / "map.tif", resampling="MODE")
        move_raster(cog, path)
    if qml:
        write_paletted_qml(path.with_suffix(".qml"), style)
    return path
