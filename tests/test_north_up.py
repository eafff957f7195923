"""Rasters with a rotated geotransform are read north-up (TorchGeo's reads assume north-up rasters)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio import Affine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_helpers import make_raster  # noqa: E402

from geocamat.data.stack import open_stack  # noqa: E402


def test_a_rotated_scene_becomes_a_north_up_vrt_with_the_same_ground(tmp_path):
    """The stack holds a north-up VRT whose pixels at a map point are the rotated file's there, each band's fill
    kept as nodata; the user is told; the file's band descriptions stay (band selection by name)."""
    flat = make_raster(tmp_path / "flat.tif", 120, 90, bands=3, dtype="float32", nodata=-9999.0)
    with rasterio.open(flat) as src:
        profile, data = src.profile, src.read()
    data[2, :, :30] = -9999.0  # the last band missing in a strip
    profile.update(transform=profile["transform"] @ Affine.rotation(20))
    with rasterio.open(tmp_path / "rotated.tif", "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("red", "green", "nir")
    stack = open_stack([tmp_path / "rotated.tif"], tmp_path / "work")
    assert stack.sources == [tmp_path / "rotated.tif"] and stack.paths[0].suffix == ".vrt"
    assert stack.band_names == ["red", "green", "nir"]
    assert any("rotated or sheared geotransform" in n and "rotated.tif" in n for n in stack.notes), stack.notes
    with rasterio.open(stack.paths[0]) as north, rasterio.open(tmp_path / "rotated.tif") as rotated:
        assert north.transform.b == north.transform.d == 0 and north.crs == rotated.crs
        inv = ~rotated.transform
        rng = np.random.default_rng(0)
        cols, rows = rng.uniform(35, 115, 200), rng.uniform(5, 85, 200)  # inside the file, off the missing strip
        xs, ys = rotated.transform @ (cols, rows)
        got = np.array(list(north.sample(zip(xs, ys, strict=True))))
        col, row = np.floor(inv @ (xs, ys)).astype(int)
        want = data[:, row, col].T
        assert np.isfinite(got).all()
        assert np.abs(got - want).max() < 12, np.abs(got - want).max()  # a smooth raster: bilinear vs nearest
        strip = north.read(3)[np.isfinite(north.read(1))]
        assert np.isnan(strip).any() and (strip[np.isfinite(strip)] > 0).all()  # the fill is nodata, not data


def test_a_north_up_scene_is_read_as_it_is(tmp_path):
    flat = make_raster(tmp_path / "flat.tif", 40, 30)
    stack = open_stack([flat], tmp_path / "work")
    assert stack.paths == [flat] and not any("rotated" in n for n in stack.notes)
