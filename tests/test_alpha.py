"""A band tagged alpha is a mask only when it looks like one: GDAL tags the 4th band of any Byte GeoTIFF written
with default options as alpha, so an RGB + NIR orthophoto's NIR must stay a band."""

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from geocamat.data.detection_images import band_names, read_image
from geocamat.data.stack import open_stack


def _rgb_and(path: Path, fourth: np.ndarray) -> Path:
    rgb = np.random.default_rng(0).integers(1, 255, (3, 40, 40), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=4, dtype="uint8", crs="EPSG:32617",
                       transform=from_origin(500_000, 4_000_000, 1, 1)) as dst:  # default options: band 4 "alpha"
        dst.write(np.concatenate([rgb, fourth[None]]))
    with rasterio.open(path) as src:
        assert src.colorinterp[3].name == "alpha"
    return path


def test_a_near_infrared_band_tagged_alpha_stays_a_band_and_a_real_alpha_is_the_mask(tmp_path):
    nir = _rgb_and(tmp_path / "rgbn.tif", np.random.default_rng(1).integers(0, 255, (40, 40), dtype=np.uint8))
    opacity = np.full((40, 40), 255, np.uint8)
    opacity[:, :10] = 0
    rgba = _rgb_and(tmp_path / "rgba.tif", opacity)
    assert len(band_names(str(nir))) == 4 and len(band_names(str(rgba))) == 3  # detection
    data, valid = read_image(str(nir))
    assert data.shape[0] == 4 and valid.all()
    data, valid = read_image(str(rgba))
    assert data.shape[0] == 3 and (valid == (opacity > 0)).all()
    assert len(open_stack([str(nir)], tmp_path / "a").band_names) == 4  # land use
    stack = open_stack([str(rgba)], tmp_path / "b")
    assert len(stack.band_names) == 3
    with rasterio.open(stack.paths[0]) as src:
        assert np.isnan(src.read(1)[:, :10]).all() and not np.isnan(src.read(1)[:, 10:]).any()
