"""Detection trained on a partly labelled image: only inside the polygons where every object is labelled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from click.testing import CliRunner

from cli.main import cli
from geocamat.data.boxes import ImageBoxes, ImageInfo
from geocamat.data.detection_images import ArrayImage
from geocamat.data.labelled_area import MaskedImage, area_in_pixels, inside_share, keep_inside
from geocamat.errors import InvalidLabelsError


def test_pixels_outside_the_area_read_as_blank_and_tiles_and_boxes_are_weighed_by_it():
    area = shapely.box(10, 20, 50, 60)  # pixel coordinates: columns 10-50, rows 20-60
    masked = MaskedImage(ArrayImage(np.ones((2, 100, 100), np.float32)), area)
    x = masked.read(30, 40, 30, 30)
    assert x.shape == (2, 30, 30) and x[:, :20, :20].all() and not x[:, 20:, :].any() and not x[:, :, 20:].any()
    np.testing.assert_allclose(inside_share(area, [(0, 0, 100), (10, 20, 40), (40, 50, 20)]), [0.16, 1.0, 0.25])
    ib = ImageBoxes("x.tif", 100, 100, np.array([[12, 22, 20, 30], [45, 55, 60, 70], [80, 80, 90, 90]], np.float32),
                    ["a", "b", "c"])
    kept = keep_inside(ib, area)
    assert kept.names == ["a"] and kept.boxes.tolist() == [[12, 22, 20, 30]]  # b: a quarter inside, c: outside
    assert keep_inside(ib, None).names == [] and not MaskedImage(masked.image, None).read(0, 0, 5, 5).any()


def test_the_area_is_checked(tmp_path):
    import geopandas as gpd
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    info = ImageInfo("a.tif", 100, 100, CRS.from_epsg(32617), from_origin(500000, 4000000, 1, 1))
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:32617").to_file(tmp_path / "far.gpkg")
    with pytest.raises(InvalidLabelsError, match="meets none of the training images"):
        area_in_pixels(str(tmp_path / "far.gpkg"), [info])
    plain = ImageInfo("a.png", 100, 100)
    gpd.GeoDataFrame(geometry=[shapely.box(500000, 3999950, 500050, 4000000)], crs="EPSG:32617").to_file(
        tmp_path / "left.gpkg")
    with pytest.raises(InvalidLabelsError, match="georeferenced"):
        area_in_pixels(str(tmp_path / "left.gpkg"), [plain])
    (px,) = area_in_pixels(str(tmp_path / "left.gpkg"), [info])
    assert px.bounds == (0.0, 0.0, 50.0, 50.0)


def test_train_only_inside_the_labelled_area(tmp_path):
    """Squares everywhere, labelled in the left half only: with labelled_area the run trains on the tiles of
    the left half and says so; without it every tile of the right half teaches its squares as background."""
    import geopandas as gpd
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (3, 192, 192), dtype=np.uint8)
    squares = [(int(x), int(y)) for x, y in rng.integers(0, 170, (24, 2))]
    for x, y in squares:
        img[:, y:y + 16, x:x + 16] = 220
    with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", width=192, height=192, count=3, dtype="uint8",
                       crs="EPSG:32617", transform=from_origin(500000, 4000000, 1, 1)) as dst:
        dst.write(img)
    left = [(x, y) for x, y in squares if x + 16 <= 48]
    gpd.GeoDataFrame({"label": ["box"] * len(left)}, crs="EPSG:32617", geometry=[
        shapely.box(500000 + x, 4000000 - y - 16, 500000 + x + 16, 4000000 - y) for x, y in left]).to_file(
        tmp_path / "boxes.gpkg")
    gpd.GeoDataFrame(geometry=[shapely.box(500000, 4000000 - 192, 500000 + 48, 4000000)], crs="EPSG:32617"
                     ).to_file(tmp_path / "plots.gpkg")
    runs = {}
    for name, extra in (("all", []), ("plots", ["--set", f"labelled_area={tmp_path / 'plots.gpkg'}"])):
        result = CliRunner().invoke(cli, [
            "train", "--task", "detection", "--images", str(tmp_path / "scene.tif"), "--labels",
            str(tmp_path / "boxes.gpkg"), "--tile-size", "64", "--epochs", "1", "--set", "backbone=tiny",
            "--set", "batch_size=4", "--set", "fpn_channels=16", "--set", "anchor_sizes=[8,16,32,64]",
            "--set", "empty_ratio=10", "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
        runs[name] = (json.loads((tmp_path / name / "metrics.json").read_text()), result.output)
    (plots, text), (everything, _) = runs["plots"], runs["all"]
    assert "labelled area:" in text and "training tiles are at least 25% inside it" in text
    assert 0 < plots["train_tiles"] < everything["train_tiles"]
