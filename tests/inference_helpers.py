"""Helpers shared by the inference/output tests: synthetic rasters and an untrained bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from geocamat.bundle import Bundle, ClassInfo
from geocamat.inference.heads import PixelHead

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def make_bundle(bands: int = 3, classes: int = 3, tile: int = 32, seed: int = 0, ids: list[int] | None = None,
                arch: str = "camnet-s") -> Bundle:
    """An untrained land-use bundle (the engine must not depend on training)."""
    from geocamat.models.camnet import CamNet

    torch.manual_seed(seed)
    model = CamNet(bands, classes, tile, arch=arch).eval()
    ids = ids or list(range(1, classes + 1))
    return Bundle(task="landuse", model={"name": "camnet", "in_channels": bands, "num_classes": classes,
                                         "tile_size": tile, "arch": arch},
                  state_dict=model.state_dict(), bands=[f"b{i}" for i in range(bands)], mean=[100.0] * bands,
                  std=[50.0] * bands, classes=[ClassInfo(i, f"class {i}", COLORS[k % len(COLORS)])
                                               for k, i in enumerate(ids)], tile_size=tile)


def make_raster(path: Path, width: int = 200, height: int = 150, bands: int = 3, crs: str = "EPSG:32618",
                origin: tuple[float, float] = (500000.0, 4100000.0), res: float = 10.0, nodata: float | None = 0,
                seed: int = 0, dtype: str = "uint8", tiled: bool = False, collar: int = 0,
                missing_frame: int = 0) -> Path:
    """A smooth random multi-band raster; ``collar`` pixels of nodata around it; the last band also nodata in a
    frame ``missing_frame`` pixels wide inside the collar (pixels with some bands nodata: see
    :func:`frame_mask`)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    data = np.stack([127 + 100 * np.sin(xx / (15 + 5 * b) + rng.uniform(0, 6)) * np.cos(yy / (20 + 3 * b))
                     for b in range(bands)]).clip(1, 254).astype(dtype)
    if collar:
        data[:, :collar] = nodata
        data[:, -collar:] = nodata
        data[:, :, :collar] = nodata
        data[:, :, -collar:] = nodata
    if missing_frame:
        data[-1][~frame_mask(height, width, collar, missing_frame)[1]] = nodata
    profile = {"driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": dtype, "crs": crs,
               "transform": from_origin(*origin, res, res), "nodata": nodata}
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def frame_mask(height: int, width: int, collar: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(inside the collar, inside the frame) of :func:`make_raster`'s ``collar`` and ``missing_frame``: the
    pixels with some bands nodata are those of the first and not the second."""
    yy, xx = np.mgrid[0:height, 0:width]

    def inside(margin: int) -> np.ndarray:
        return (yy >= margin) & (yy < height - margin) & (xx >= margin) & (xx < width - margin)

    return inside(collar), inside(collar + frame)


class Killed(Exception):
    """Raised by :class:`Counting` to interrupt a run (as a kill would) after a number of tiles."""


class Counting(PixelHead):
    """A head that counts the tiles it computes; raises :class:`Killed` past ``stop_after`` tiles."""

    def __init__(self, inner, stop_after: int | None = None) -> None:
        self.inner, self.stop_after, self.tiles = inner, stop_after, 0
        self.outputs, self.descriptions = inner.outputs, inner.descriptions

    def to(self, device):
        self.inner.to(device)
        return self

    def weights(self, tile, overlap):
        return self.inner.weights(tile, overlap)

    def __call__(self, batch):
        if self.stop_after is not None and self.tiles + len(batch) > self.stop_after:
            raise Killed
        self.tiles += len(batch)
        return self.inner(batch)


def run_map(bundle, images, out, **kw) -> dict:
    """``predict_landuse`` of ``images`` into ``out``, quiet and without polygons unless asked."""
    from geocamat.inference.landuse import predict_landuse

    kw.setdefault("progress", False)
    kw.setdefault("vectorise", False)
    return predict_landuse(bundle, [str(i) for i in images], out, **kw)


def read_bands(path: Path) -> np.ndarray:
    """Every band of a raster, (bands, rows, cols)."""
    import rasterio

    with rasterio.open(path) as src:
        return src.read()
