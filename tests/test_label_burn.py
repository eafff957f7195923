"""What burning a label layer onto the image grid loses is said: polygons too small to cover a pixel's centre,
and pixels under features of different classes (the later feature's class taken, as before)."""

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import Point, box

from geocamat.data.labels import LABEL_WINDOW, Grid, labels_on_grid

X0, Y0 = 500000.0, 4000000.0


def _layer(tmp_path, name, classes, geometries):
    path = tmp_path / f"{name}.gpkg"
    gpd.GeoDataFrame({"cls": classes}, geometry=geometries, crs="EPSG:32617").to_file(path)
    return path


def test_small_polygons_and_contested_pixels_are_named_and_the_burn_is_unchanged(tmp_path):
    side = LABEL_WINDOW + 40  # features across a window edge count once
    grid = Grid("EPSG:32617", Affine(10, 0, X0, 0, -10, Y0), (side, side))
    edge = X0 + 10 * LABEL_WINDOW
    geometries = [box(X0, Y0 - 200, X0 + 200, Y0),  # field
                  box(X0 + 100, Y0 - 300, X0 + 300, Y0 - 100),  # wood over 10 x 10 pixels of the field
                  box(X0 + 502, Y0 - 508, X0 + 504, Y0 - 502),  # 2 m x 6 m: no pixel centre inside
                  box(edge - 100, Y0 - 100, edge + 100, Y0),  # across a window edge
                  box(X0 + 1000, Y0 - 1000, X0 + 1100, Y0 - 900)]  # wood under field: same pixels, other class
    geometries.append(box(X0 + 1000, Y0 - 1000, X0 + 1100, Y0 - 900))
    path = _layer(tmp_path, "labels", ["field", "wood", "wood", "field", "wood", "field"], geometries)
    labels = labels_on_grid(path, grid, tmp_path, field="cls")
    assert any("1 of 6 polygons of labels.gpkg are too small to cover a pixel's centre" in n for n in labels.notes)
    assert any("200 labelled pixels lie under features of labels.gpkg of different classes" in n
               for n in labels.notes)
    codes = {"field": 1, "wood": 2}
    expected = rasterize(((g, codes[c]) for g, c in zip(geometries, ["field", "wood", "wood", "field", "wood",
                                                                     "field"], strict=True)),
                         out_shape=grid.shape, transform=grid.transform, fill=-1, dtype="int32")
    with rasterio.open(labels.path) as src:
        assert np.array_equal(src.read(1), expected)


def test_points_sharing_a_pixel_warn_only_when_their_classes_differ(tmp_path):
    grid = Grid("EPSG:32617", Affine(10, 0, X0, 0, -10, Y0), (50, 50))
    same = _layer(tmp_path, "same", ["field", "field", "wood"],
                  [Point(X0 + 52, Y0 - 52), Point(X0 + 57, Y0 - 57), Point(X0 + 155, Y0 - 155)])
    assert labels_on_grid(same, grid, tmp_path, field="cls").notes == []
    other = _layer(tmp_path, "other", ["field", "wood", "wood"],
                   [Point(X0 + 52, Y0 - 52), Point(X0 + 57, Y0 - 57), Point(X0 + 155, Y0 - 155)])
    notes = labels_on_grid(other, grid, tmp_path, field="cls").notes
    assert notes == ["warning: 1 labelled pixel lies under points of other.gpkg of different classes: each takes the "
                     "class of the feature that comes last in the layer; check the overlaps in a GIS"]


def test_a_polygon_reference_says_what_its_burn_loses(tmp_path):
    from geocamat.tasks.landuse.scoring import score_map
    from tests.conftest import write_raster

    mapped = np.ones((50, 50), "uint8")
    mapped[:, 25:] = 2
    map_path = write_raster(tmp_path / "landuse.tif", mapped, nodata=0, origin=(X0, Y0))
    reference = _layer(tmp_path, "reference", ["field", "wood", "wood", "field"],
                       [box(X0, Y0 - 200, X0 + 200, Y0), box(X0 + 100, Y0 - 300, X0 + 300, Y0 - 100),
                        box(X0 + 402, Y0 - 408, X0 + 404, Y0 - 402), box(X0 + 260, Y0 - 300, X0 + 490, Y0 - 10)])
    scores = score_map(map_path, reference, [1, 2], ["field", "wood"], reference_field="cls")  # 100 + 4 x 20 px
    small = "warning: 1 of 4 polygons of reference.gpkg are too small to cover a pixel's centre: they are not scored"
    assert small in scores["notes"][0]
    assert scores["notes"][1].startswith("warning: 180 labelled pixels lie under features of reference.gpkg of "
                                         "different classes")
