"""Band files of one scene at different pixel sizes are stacked on the finest grid (Sentinel-2's 10/20 m bands)."""

import numpy as np
import pytest
import rasterio

from geocamat.data.band_grids import BandGrid, scenes_of_grids
from geocamat.data.stack import open_stack
from geocamat.errors import InvalidRasterError
from tests.conftest import write_raster


def _grid(res: float, origin=(500000.0, 4000000.0), size=(96, 96), crs="EPSG:32617") -> BandGrid:
    transform = (res, 0.0, origin[0], 0.0, -res, origin[1])
    return BandGrid(rasterio.crs.CRS.from_string(crs).to_wkt(), transform, *size)


def test_grids_are_one_scene_only_with_the_same_crs_other_pixel_sizes_and_the_same_ground():
    fine, coarse = _grid(10.0), _grid(20.0, size=(48, 48))
    elsewhere = _grid(20.0, origin=(500700.0, 4000000.0), size=(48, 48))  # 25% of the fine grid's ground
    other_crs = _grid(20.0, size=(48, 48), crs="EPSG:32618")
    same_size_shifted = _grid(10.0, origin=(500005.0, 4000000.0))
    assert scenes_of_grids([fine, coarse]) == [[0, 1]]
    assert scenes_of_grids([fine, elsewhere]) == [[0], [1]]
    assert scenes_of_grids([fine, other_crs]) == [[0], [1]]
    assert scenes_of_grids([fine, same_size_shifted]) == [[0], [1]]
    # two scenes of 10 + 20 m bands side by side stay two scenes
    right, right_coarse = _grid(10.0, origin=(501000.0, 4000000.0)), _grid(20.0, origin=(501000.0, 4000000.0),
                                                                          size=(48, 48))
    assert scenes_of_grids([fine, right, coarse, right_coarse]) == [[0, 2], [1, 3]]


def _bands(tmp_path, rng):
    """Three 10 m bands and two 20 m bands (2 x 2 means of 10 m ones) of one 96 x 96 scene, nodata on top."""
    full = rng.normal(100.0, 20.0, (5, 96, 96)).astype("float32")
    full += np.linspace(0, 80, 96, dtype="float32")[None, None, :]  # structure that bilinear resampling keeps
    full[:, :8] = -9999.0
    for b in range(3):
        write_raster(tmp_path / f"B0{b + 2}.tif", full[b], nodata=-9999.0)
    for b in (3, 4):
        coarse = full[b].reshape(48, 2, 48, 2).mean(axis=(1, 3))
        coarse[:4] = -9999.0
        write_raster(tmp_path / f"B{b + 2:02d}_20m.tif", coarse.astype("float32"), res=20.0, nodata=-9999.0)
    return full


def test_bands_at_two_pixel_sizes_are_stacked_on_the_finest_grid_and_read_through_torchgeo(tmp_path):
    full = _bands(tmp_path, np.random.default_rng(0))
    stack = open_stack([str(tmp_path / "B*.tif")], tmp_path / "work")
    assert stack.band_names == ["B02", "B03", "B04", "B05_20m", "B06_20m"]
    assert len(stack.paths) == 1 and stack.res == (10.0, 10.0)
    assert len(stack.notes) == 1 and "10 x 10: B02, B03, B04" in stack.notes[0]
    assert "20 x 20: B05_20m, B06_20m" in stack.notes[0]
    with rasterio.open(stack.paths[0]) as vrt:
        assert (vrt.width, vrt.height, vrt.res) == (96, 96, (10.0, 10.0))
        stacked = vrt.read()
    assert np.array_equal(stacked[:3, 8:], full[:3, 8:])  # the 10 m bands as they are
    # nodata stays nodata (the 20 m bands' last row of it, half under valid 20 m pixels, takes their values:
    # GDAL leaves nodata out of the bilinear kernel)
    assert np.isnan(stacked[:3, :8]).all() and np.isnan(stacked[3:, :7]).all()
    inner = stacked[3:, 10:-1, 1:-1]  # the 20 m bands resampled: close to the 10 m truth, no nodata mixed in
    truth = full[3:, 10:-1, 1:-1]
    assert not np.isnan(inner).any() and inner.min() > 0
    assert np.abs(inner.mean(axis=(1, 2)) - truth.mean(axis=(1, 2))).max() < 1.0
    assert min(np.corrcoef(inner[b].ravel(), truth[b].ravel())[0, 1] for b in range(2)) > 0.6
    # 2 x 2 block means of the resampled band are close to the 20 m pixels they came from
    blocks = stacked[3, 10:88, 10:88].reshape(39, 2, 39, 2).mean(axis=(1, 3))
    coarse = full[3, 10:88, 10:88].reshape(39, 2, 39, 2).mean(axis=(1, 3))
    assert np.abs(blocks - coarse).mean() < 0.25 * np.abs(coarse - coarse.mean()).mean()

    dataset = stack.dataset()  # TorchGeo reads the VRT like any raster
    (x0, x1), (y0, y1) = (dataset.bounds[0].start, dataset.bounds[0].stop), (dataset.bounds[1].start,
                                                                             dataset.bounds[1].stop)
    sample = dataset[x0:x1, y0:y1]
    assert tuple(sample["image"].shape) == (5, 96, 96)


def test_bands_on_other_grids_that_are_not_one_scene_still_get_the_one_line_error(tmp_path):
    write_raster(tmp_path / "B02.tif", np.ones((96, 96), "float32"))
    write_raster(tmp_path / "B03.tif", np.ones((96, 96), "float32"))
    write_raster(tmp_path / "B05.tif", np.ones((48, 48), "float32"), res=20.0, crs="EPSG:32618")
    with pytest.raises(InvalidRasterError, match="different grids"):
        open_stack([str(tmp_path / "B*.tif")], tmp_path / "work")
