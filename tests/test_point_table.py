"""Reference or training points in a CSV table (lon/lat, or x/y with a .prj): read as the same points a
GeoPackage gives, and refused in one line when their coordinates cannot be placed."""

import numpy as np
import pytest
import rasterio

from geocamat.data.labels import grid_of_dataset, labels_on_grid
from geocamat.data.stack import open_stack
from geocamat.data.vector_layers import is_vector, read_vector
from geocamat.errors import InvalidLabelsError
from tests.conftest import SAMPLES

NC = SAMPLES / "nc_landsat"


@pytest.fixture(scope="module")
def points():
    import geopandas as gpd

    return gpd.read_file(NC / "landsat96_points.shp")[["id", "label", "geometry"]]


def _burnt(path, tmp_path, name):
    folder = tmp_path / f"run_{name}"
    folder.mkdir()
    grid = grid_of_dataset(open_stack([str(NC / "lsat7_2000_*.tif")], folder).dataset())
    labels = labels_on_grid(path, grid, folder, field="label")
    with rasterio.open(labels.path) as src:
        return labels, src.read(1)


def test_lon_lat_and_projected_tables_give_the_points_of_the_layer(tmp_path, points):
    lonlat = points.to_crs("EPSG:4326")
    table = lonlat.drop(columns="geometry").assign(Longitude=lonlat.geometry.x, Latitude=lonlat.geometry.y)
    table.to_csv(tmp_path / "plots.csv", index=False)
    xy = points.drop(columns="geometry").assign(x=points.geometry.x, y=points.geometry.y)
    xy.to_csv(tmp_path / "survey.csv", index=False)
    (tmp_path / "survey.prj").write_text(points.crs.to_wkt())
    assert is_vector(tmp_path / "plots.csv")
    read = read_vector(tmp_path / "plots.csv")
    assert len(read) == 1000 and read.crs.to_epsg() == 4326 and list(read.columns) == ["id", "label", "geometry"]
    shapefile, expected = _burnt(NC / "landsat96_points.shp", tmp_path, "shp")
    for name in ("plots.csv", "survey.csv"):
        labels, burnt = _burnt(tmp_path / name, tmp_path, name)
        assert labels.sparse and labels.names == shapefile.names
        assert np.array_equal(burnt, expected) and (burnt >= 0).sum() > 500


def test_tables_whose_points_cannot_be_placed_are_refused(tmp_path):
    cases = {
        "no_xy.csv": ("plot,class\n1,forest\n", "has no coordinate columns: name them lon, lat"),
        "xy.csv": ("x,y,class\n637000,220000,forest\n", "without their CRS: put it in xy.prj"),
        "swapped.csv": ("lon,lat,class\n637000,220000,forest\n", "outside longitude/latitude"),
        "blank.csv": ("lon,lat,class\n-78.6,35.7,forest\n,35.8,water\n", "1 rows without numeric lon, lat (first: "
                                                                         "line 3)"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InvalidLabelsError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_vector(tmp_path / name)


def test_tables_as_spreadsheets_save_them_are_read(tmp_path):
    """A decimal comma with `;` (European spreadsheets), tabs, and Excel's byte-order mark."""
    tables = {"semicolons.csv": "plot;lon;lat;class\n1;-78,67;35,78;forest\n",
              "tabs.csv": "plot\tlon\tlat\tclass\n1\t-78.67\t35.78\tforest\n",
              "excel.csv": "\ufeffLon,Lat,class\n-78.67,35.78,forest\n"}
    for name, text in tables.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        frame = read_vector(tmp_path / name)
        assert (frame.geometry.x[0], frame.geometry.y[0]) == (-78.67, 35.78), name
        assert frame["class"][0] == "forest"
