"""Class and polygon areas of maps in a geographic CRS: hectares on the ellipsoid, not square degrees."""

import json

import geopandas as gpd
import numpy as np
from click.testing import CliRunner
from pyproj import CRS, Geod
from rasterio.transform import from_origin

from cli.main import cli
from geocamat.outputs.geodesic import row_areas_m2
from tests.conftest import write_raster

WGS84 = CRS.from_epsg(4326).to_wkt()


def test_row_areas_are_the_ellipsoids_quadrangles():
    t = from_origin(-80.0, 46.0, 0.01, 0.01)
    areas = row_areas_m2(WGS84, t, 5, 3)
    geod = Geod(ellps="WGS84")
    for i, row in enumerate(range(5, 8)):
        top, bottom = 46.0 - 0.01 * row, 46.0 - 0.01 * (row + 1)
        exact, _ = geod.polygon_area_perimeter([-80, -79.99, -79.99, -80], [top, top, bottom, bottom])
        assert abs(areas[i] / abs(exact) - 1) < 1e-7
    whole = row_areas_m2(WGS84, from_origin(-180, 90, 360, 180), 0, 1)[0]
    assert abs(whole / 5.10065621724e14 - 1) < 1e-9  # WGS 84's surface


def test_a_geographic_map_reports_hectares_on_the_ellipsoid(tmp_path, synthetic_scene):
    kw = dict(crs="EPSG:4326", origin=(-80.0, 46.0), res=0.0001)
    image = write_raster(tmp_path / "scene.tif", synthetic_scene["array"], nodata=-9999.0, **kw)
    labels = write_raster(tmp_path / "labels.tif", synthetic_scene["label_array"], nodata=0, **kw)
    run, out = tmp_path / "run", tmp_path / "map"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--images", str(image), "--labels", str(labels), "--tile-size", "16",
                                 "--blocks", "2", "--epochs", "1", "--arch", "camnet-xs", "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["predict", "--model", str(run / "model.geocamat"), "--out", str(out), "--quiet",
                                 "--min-polygon-pixels", "0", str(image)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["grid"]["area_units"] == "m2 on the ellipsoid"
    mapped_rows = np.arange(4, 96)  # rows 0-3 are the nodata collar
    expected_ha = row_areas_m2(WGS84, from_origin(-80.0, 46.0, 0.0001, 0.0001), 0, 96)[mapped_rows].sum() * 96 / 1e4
    total_ha = sum(c["area_ha"] for c in report["classes"])
    assert abs(total_ha / expected_ha - 1) < 1e-9  # ~7.1 ha, where square degrees would say 9.2e-5
    polygons = gpd.read_file(out / "landuse.gpkg", layer="landuse")
    assert abs(polygons["area_ha"].sum() / total_ha - 1) < 1e-3  # each polygon at its centroid row's pixel area
