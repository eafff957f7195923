"""partial_bands.tif: where a land-use map was classified from partly filled input bands."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_helpers import frame_mask, make_bundle, make_raster  # noqa: E402
from inference_helpers import run_map as run

from geocamat.inference.heads import PixelHead  # noqa: E402
from geocamat.inference.plan import UnitSizes  # noqa: E402
from geocamat.outputs import partial_bands  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


class Brightness(PixelHead):
    """Class 1 where the first band is above its mean, class 2 elsewhere (cheap: for large scenes)."""

    outputs = {"probabilities": 3}

    def __call__(self, batch):
        above = (batch[:, :1] > 0).float()
        return {"probabilities": torch.cat([0.1 + 0.8 * above, 0.9 - 0.8 * above, torch.zeros_like(above)], dim=1)}


def test_a_band_missing_in_a_frame_gives_exactly_that_frame(tmp_path):
    height, width, collar, frame = 80, 100, 2, 9
    img = make_raster(tmp_path / "img.tif", width, height, collar=collar, missing_frame=frame)
    out = tmp_path / "out"
    report = run(make_bundle(tile=16), [img], out, units=UnitSizes(band_rows=32, block_cols=56))
    assert report["plan"]["units"] > 2  # the mask is assembled from several units
    valid, inner = frame_mask(height, width, collar, frame)
    mask = read(out / "partial_bands.tif")
    np.testing.assert_array_equal(mask, np.where(inner, 0, np.where(valid, 1, 255)))
    assert report["pixels"]["partial_bands"] == int((mask == 1).sum()) == int((valid & ~inner).sum())
    assert {"partial_bands.tif", "partial_bands.qml"} <= set(report["outputs"])
    # nodata exactly where the map has no class; the same grid, tiling and compression as landuse.tif
    np.testing.assert_array_equal(mask == partial_bands.NODATA, read(out / "landuse.tif") == 0)
    with rasterio.open(out / "partial_bands.tif") as m, rasterio.open(out / "landuse.tif") as c:
        assert (m.crs, m.transform, m.shape, m.block_shapes) == (c.crs, c.transform, c.shape, c.block_shapes)
        assert m.compression == c.compression and m.dtypes == ("uint8",) and m.nodata == 255
        assert m.colormap(1)[1] == (255, 127, 0, 255) and m.colormap(1)[255][3] == 0  # nodata transparent
    qml = (out / "partial_bands.qml").read_text()
    assert 'value="1" label="some bands nodata (filled)"' in qml and 'value="0" label="all bands valid"' in qml


def test_overviews_of_the_mask_are_the_mode_computed_per_unit(tmp_path):
    from geocamat.outputs.overviews import mode_2x2

    img = make_raster(tmp_path / "img.tif", 1100, 72, collar=3, missing_frame=7)
    out = tmp_path / "out"
    report = run(make_bundle(tile=16), [img], out, head=Brightness(), units=UnitSizes(band_rows=32, block_cols=256))
    assert report["plan"]["units"] > 4
    mask = read(out / "partial_bands.tif")
    assert int((mask == 1).sum()) == report["pixels"]["partial_bands"] > 0
    level = mask
    for i in range(2):  # 1100 px wide: overviews 2 and 4, as landuse.tif's
        level = mode_2x2(level, partial_bands.NODATA)
        with rasterio.open(out / "partial_bands.tif", OVERVIEW_LEVEL=i) as src:
            np.testing.assert_array_equal(src.read(1), level, err_msg=f"overview {i}")
    with rasterio.open(out / "partial_bands.tif") as m, rasterio.open(out / "landuse.tif") as c:
        assert m.overviews(1) == c.overviews(1) == [2, 4]


def test_no_mask_without_such_pixels_nor_with_require_all_bands(tmp_path):
    bundle = make_bundle(tile=16)
    framed = make_raster(tmp_path / "framed.tif", 60, 50, collar=2, missing_frame=5)
    whole = make_raster(tmp_path / "whole.tif", 60, 50, collar=2)
    out = tmp_path / "out"
    run(bundle, [framed], out)
    assert (out / "partial_bands.tif").exists() and (out / "partial_bands.qml").exists()
    (out / "partial_bands.tif.aux.xml").write_text("<PAMDataset/>")  # GDAL's side-car (QGIS writes statistics)
    report = run(bundle, [whole], out, overwrite=True)  # the earlier run's mask goes with its map
    assert report["pixels"]["partial_bands"] == 0
    assert not (out / "partial_bands.tif").exists() and not (out / "partial_bands.qml").exists()
    assert not (out / "partial_bands.tif.aux.xml").exists()
    assert not any(name.startswith("partial_bands") for name in report["outputs"])
    strict = run(bundle, [framed], tmp_path / "strict", require_all_bands=True)
    valid, inner = frame_mask(50, 60, 2, 5)
    assert strict["pixels"] == {"partial_bands": int((valid & ~inner).sum()), "partial_bands_mapped": False}
    assert not (tmp_path / "strict" / "partial_bands.tif").exists()  # those pixels are nodata in the map
    assert (read(tmp_path / "strict" / "landuse.tif")[valid & ~inner] == 0).all()


def test_a_reprojected_map_keeps_each_bands_own_fill(tmp_path):
    """--crs (and any input read through a warp): a band's fill stays nodata for that band only. GDAL's default
    for one nodata value on every band treated a pixel as nodata only where all bands were, and blended the
    missing band's fill value (0 here, -32768 or -99999 in real scenes) into the map as data, without a note."""
    from geocamat.inference.grid import crs_wkt, snap_grid
    from geocamat.inference.reader import MosaicReader

    height, width, collar, frame = 80, 100, 2, 9
    img = make_raster(tmp_path / "img.tif", width, height, collar=collar, missing_frame=frame, dtype="float32",
                      nodata=-99999.0)
    plain = run(make_bundle(tile=16), [img], tmp_path / "plain")
    warped = run(make_bundle(tile=16), [img], tmp_path / "warped", crs="EPSG:32617")
    assert plain["pixels"]["partial_bands"] > 0
    share = warped["pixels"]["partial_bands"] / plain["pixels"]["partial_bands"]
    assert 0.8 < share < 1.25, (plain["pixels"], warped["pixels"])  # the same frame, on a grid 0.9 degrees turned
    # the reader itself: no value of the last band comes near the fill value
    import geopandas as gpd
    import shapely

    with rasterio.open(img) as src:
        footprint = gpd.GeoSeries([shapely.box(*src.bounds)], crs=src.crs).to_crs("EPSG:32617")
    grid = snap_grid(tuple(footprint.total_bounds), (10.0, 10.0), crs_wkt("EPSG:32617"))
    index = gpd.GeoDataFrame({"filepath": [str(img)]}, geometry=footprint.values, crs="EPSG:32617")
    reader = MosaicReader(index, grid, 3, workers=1)
    try:
        out = np.empty((3, grid.height, grid.width), np.float32)
        reader.read_into(out, 0, 0)
    finally:
        reader.close()
    last = out[-1][np.isfinite(out[-1])]
    assert last.min() > 0 and np.isnan(out[-1]).sum() > np.isnan(out[0]).sum()
