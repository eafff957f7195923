"""``geocamat sample``: stratified random reference points from a class map, labelled, then scored with areas."""

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from cli.main import cli
from geocamat.outputs.qml import paletted_qml
from geocamat.outputs.style import ClassStyle
from geocamat.tasks.landuse import reference_sample
from geocamat.tasks.landuse.reference_sample import allocate
from tests.conftest import write_raster


def _map(tmp_path, shape=(60, 50)):
    """A class map: 1 (field) in most of it, 2 (wood) in a 10-column strip, 3 (water) in a 4 x 4 corner, nodata
    (0) in the first row; with the landuse.qml predict writes beside it."""
    mp = np.ones(shape, "uint8")
    mp[:, 20:30] = 2
    mp[-4:, -4:] = 3
    mp[0] = 0
    path = write_raster(tmp_path / "landuse.tif", mp, nodata=0)
    style = ClassStyle([1, 2, 3], ["field", "wood", "water"], ["#f4d03f", "#1a7837", "#2b83ba"])
    (tmp_path / "landuse.qml").write_text(paletted_qml(style))
    return path, mp


def test_allocation_gives_each_class_its_minimum_and_the_rest_by_area():
    assert allocate({1: 1000, 2: 100, 3: 16}, 20, None) == {1: 20, 2: 20, 3: 16}  # never more than its pixels
    out = allocate({1: 8000, 2: 1500, 3: 500}, 20, 200)
    assert out == {1: 150, 2: 30, 3: 20} and sum(out.values()) == 200  # the minimum taken from the largest
    with pytest.raises(Exception, match="below --per-class 20 x 3 classes"):
        allocate({1: 10, 2: 10, 3: 10}, 20, 50)
    small = allocate({1: 8000, 2: 1500, 3: 3}, 20, 200)  # class 3 takes 3 of its 20: the 17 go to the others
    assert small[3] == 3 and sum(small.values()) == 200


def test_the_sample_reaches_the_standard_error_it_announces_and_refuses_an_rgb_image_as_a_map(tmp_path):
    from geocamat.errors import GeocamatError
    from geocamat.metrics.area import allocation_se

    mp = np.ones((200, 200), "uint8")
    mp[:, 120:] = 2
    mp[10, 10], mp[20:23, 20:23] = 8, 9  # a 1-pixel and a 9-pixel class: they cannot take 50 points each
    sample = reference_sample.draw(write_raster(tmp_path / "map.tif", mp, nodata=0), per_class=50, target_se=0.02)
    codes = sorted(sample["areas"])
    pixels = np.array([sample["areas"][c] for c in codes], float)
    points = np.array([sum(1 for c, _, _ in sample["points"] if c == code) for code in codes])
    assert allocation_se(pixels / pixels.sum(), np.full(len(codes), 0.8), points, pixels) <= 0.02
    assert sample["expected_se"] <= 0.02 and points[codes.index(8)] == 1
    rgb = write_raster(tmp_path / "rgb.tif", np.stack([mp, mp, mp]))
    with pytest.raises(GeocamatError, match="rgb.tif has 3 bands: class codes are read from one band"):
        reference_sample.draw(rgb)


def test_the_sample_is_stratified_by_map_class_reproducible_and_styled(tmp_path, monkeypatch):
    """Each class gets its points on its own pixels (none on nodata), at pixel centres; the same seed gives the
    same points; reading the map by small windows still gives a sample of the right classes; the layer opens
    styled by map class and its reference field is empty."""
    import sqlite3

    path, mp = _map(tmp_path)
    out = tmp_path / "points.gpkg"
    result = CliRunner().invoke(cli, ["sample", "--map", str(path), "--out", str(out), "--per-class", "12"])
    assert result.exit_code == 0, result.output
    assert "36 points (field 12, wood 12, water 12)" in result.output
    points = gpd.read_file(out, layer="sample")
    with rasterio.open(path) as src:
        rc = [src.index(p.x, p.y) for p in points.geometry]
        centres = [src.xy(r, c) for r, c in rc]
    assert [mp[r, c] for r, c in rc] == points["map_code"].tolist()
    assert all(np.allclose((p.x, p.y), xy) for p, xy in zip(points.geometry, centres, strict=True))
    assert len(set(rc)) == len(rc) and points["reference"].isna().all()
    assert points.groupby("map_class").size().to_dict() == {"field": 12, "water": 12, "wood": 12}
    again = tmp_path / "again.gpkg"
    CliRunner().invoke(cli, ["sample", "--map", str(path), "--out", str(again), "--per-class", "12"])
    assert gpd.read_file(again, layer="sample").geometry.equals(points.geometry)
    with sqlite3.connect(out) as db:
        qml = db.execute("SELECT styleQML FROM layer_styles WHERE f_table_name='sample'").fetchone()[0]
    assert 'attr="map_code"' in qml and 'label="water"' in qml and "SimpleMarker" in qml
    monkeypatch.setattr(reference_sample, "WINDOW", 7)
    small = reference_sample.draw(path, per_class=12)
    assert sorted(c for c, _, _ in small["points"]) == [1] * 12 + [2] * 12 + [3] * 12
    assert all(mp[r, c] == code for code, r, c in small["points"]) and small["areas"] == {1: 2344, 2: 590, 3: 16}


def test_labelled_points_give_area_estimates_and_unlabelled_ones_are_left_out(tmp_path):
    """The analyst labels the points (here: four wood points are really field, and two points are left empty):
    evaluate scores the labelled ones and estimates the areas of the stratified design."""
    path, _ = _map(tmp_path)
    out = tmp_path / "points.gpkg"
    assert CliRunner().invoke(cli, ["sample", "--map", str(path), "--out", str(out), "--total", "60",
                                    "--per-class", "10"]).exit_code == 0
    bundle = tmp_path / "model.geocamat"
    _bundle(bundle)
    command = ["evaluate", "--model", str(bundle), "--map", str(path), "--reference", str(out), "--reference-field",
               "reference", "--out", str(tmp_path / "ev")]
    fresh = CliRunner().invoke(cli, command)  # scored before the field visit: said, not "does not overlap the map"
    assert fresh.exit_code == 2 and fresh.output.count("\n") == 1, fresh.output
    assert "none of the 60 features of points.gpkg has a 'reference' value yet: fill in" in fresh.output
    assert not (tmp_path / "ev").exists()
    points = gpd.read_file(out, layer="sample")
    wood = np.flatnonzero(points["map_class"] == "wood")
    points["reference"] = points["map_class"]
    points.loc[points.index[wood[:4]], "reference"] = "field"  # four wood points are really field
    points.loc[points.index[:2], "reference"] = [None, " "]
    points.to_file(out, layer="sample", driver="GPKG")
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    assert "note: 2 features of points.gpkg have no reference value (not labelled yet): left out" in result.output
    assert "58 points (coverage" in result.output  # scored points, not pixels
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    est = metrics["area_estimates"]
    assert est["points"] == 58 and metrics["n"] == 58 and metrics["unlabelled_features"] == 2
    assert points["map_class"].tolist()[:2] == ["field", "field"]  # the two left empty: field points
    assert est["per_class"]["wood"]["users"] == pytest.approx(1 - 4 / len(wood))
    assert est["per_class"]["wood"]["area"] <= est["per_class"]["wood"]["mapped_area"]
    assert est["total_area"] == pytest.approx((2344 + 590 + 16) * 0.01)


def _bundle(path, precision: float | None = None):
    """A bundle with the map's three classes (scoring needs only the classes); with ``precision``, a validation
    map whose per-class precision is that."""
    from geocamat.bundle import Bundle, ClassInfo

    classes = [ClassInfo(1, "field", "#f4d03f"), ClassInfo(2, "wood", "#1a7837"), ClassInfo(3, "water", "#2b83ba")]
    metrics = {} if precision is None else {"validation_map": {"per_class": {
        c.name: {"id": c.id, "precision": precision, "support": 10} for c in classes}}}
    Bundle(task="landuse", model={"name": "camnet", "in_channels": 1, "num_classes": 3, "tile_size": 16,
                                  "arch": "camnet-xs"}, state_dict={}, bands=["b1"], mean=[0.0], std=[1.0],
           classes=classes, tile_size=16, metrics=metrics).save(path)


@pytest.mark.parametrize("kind", ["raster", "polygon"])
def test_a_mask_limits_the_sample_and_evaluate_counts_the_same_area(tmp_path, kind):
    """--mask (here the map's left half: a raster, or a study-area polygon in WGS 84) keeps every point inside it;
    evaluate --mask counts the mapped area of the same part."""
    path, mp = _map(tmp_path)
    half = np.zeros_like(mp)
    half[:, :25] = 1
    mask = write_raster(tmp_path / "mask.tif", half)
    if kind == "polygon":
        from shapely.geometry import box

        area = box(500000.0, 4000000.0 - 600, 500250.0, 4000000.0)  # columns 0-24 of the 10 m map
        mask = tmp_path / "study_area.gpkg"
        gpd.GeoDataFrame({"name": ["west"]}, geometry=[area], crs="EPSG:32617").to_crs("EPSG:4326").to_file(mask)
    out = tmp_path / "points.gpkg"
    result = CliRunner().invoke(cli, ["sample", "--map", str(path), "--out", str(out), "--per-class", "8", "--mask",
                                      str(mask)])
    assert result.exit_code == 0, result.output
    assert "16 points (field 8, wood 8)" in result.output  # water lies outside the mask
    assert f"--reference-field reference --mask {mask}" in result.output  # the hint scores the same area
    points = gpd.read_file(out, layer="sample")
    with rasterio.open(path) as src:
        assert all(src.index(p.x, p.y)[1] < 25 for p in points.geometry)
    points["reference"] = points["map_class"]
    points.to_file(out, layer="sample", driver="GPKG")
    _bundle(tmp_path / "model.geocamat")
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(tmp_path / "model.geocamat"), "--map", str(path),
                                      "--reference", str(out), "--reference-field", "reference", "--mask", str(mask),
                                      "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    est = json.loads((tmp_path / "ev" / "metrics.json").read_text())["area_estimates"]
    assert est["total_area"] == pytest.approx(59 * 25 * 0.01) and est["per_class"]["water"]["mapped_area"] == 0


def test_target_se_sizes_the_sample_from_expected_users_accuracies(tmp_path):
    """--target-se 0.05 with user's accuracies of 0.8 everywhere asks (0.4 / 0.05)^2 = 64 points by Olofsson's
    eq. 13, a few more for the stratified allocation drawn (each class >= 5 points) to reach it by eq. 5; a model
    whose validation map has every class right (precision 1, kept at 0.95) asks fewer; --total with it is
    refused."""
    import re

    path, _ = _map(tmp_path)
    out = tmp_path / "points.gpkg"
    result = CliRunner().invoke(cli, ["sample", "--map", str(path), "--out", str(out), "--per-class", "5",
                                      "--target-se", "0.05"])
    assert result.exit_code == 0, result.output
    points, expected = re.search(r"(\d+) points for a standard error of 0.05 on the overall accuracy \(expected "
                                 r"([0-9.]+)", result.output).groups()
    assert 64 <= int(points) <= 72 and float(expected) <= 0.05 and "0.8 for every class" in result.output
    assert len(gpd.read_file(out, layer="sample")) == int(points)
    _bundle(tmp_path / "model.geocamat", precision=1.0)
    result = CliRunner().invoke(cli, ["sample", "--map", str(path), "--out", str(out), "--per-class", "5",
                                      "--target-se", "0.05", "--model", str(tmp_path / "model.geocamat"),
                                      "--overwrite"])
    assert result.exit_code == 0, result.output
    fewer = int(re.search(r"(\d+) points for a standard error of 0.05", result.output).group(1))
    assert 19 <= fewer < int(points)  # eq. 13: ceil((sqrt(0.95 * 0.05) / 0.05)^2) = 19
    refused = CliRunner().invoke(cli, ["sample", "--map", str(path), "--out", str(tmp_path / "x.gpkg"),
                                       "--target-se", "0.05", "--total", "40"])
    assert refused.exit_code == 2 and "not both" in refused.output


def test_a_csv_sample_of_lon_lat_scores_as_the_geopackage_does(tmp_path):
    """For a field team: the same points as lon/lat in a CSV, labelled there, give the same scores."""
    import pandas as pd

    path, _ = _map(tmp_path)
    bundle = tmp_path / "model.geocamat"
    _bundle(bundle)
    scores = []
    for name in ("points.gpkg", "points.csv"):
        out = tmp_path / name
        result = CliRunner().invoke(cli, ["sample", "--map", str(path), "--out", str(out), "--total", "60",
                                          "--per-class", "10"])
        assert result.exit_code == 0, result.output
        points = gpd.read_file(out, layer="sample") if name.endswith("gpkg") else pd.read_csv(out)
        points["reference"] = points["map_class"].where(points["id"] % 7 != 0, "field")  # some points are field
        if name.endswith("gpkg"):
            points.to_file(out, layer="sample", driver="GPKG")
        else:
            assert list(points.columns) == ["id", "lon", "lat", "map_code", "map_class", "reference"]
            assert out.with_suffix(".csvt").read_text().strip() == '"Integer","Real","Real","Integer","String","String"'
            assert points["lat"].between(-90, 90).all() and points["lon"].between(-180, 180).all()
            points.to_csv(out, index=False)
        scored = tmp_path / f"scores_{out.suffix[1:]}"
        result = CliRunner().invoke(cli, ["evaluate", "--model", str(bundle), "--map", str(path), "--reference",
                                          str(out), "--reference-field", "reference", "--out", str(scored)])
        assert result.exit_code == 0, result.output
        scores.append(json.loads((scored / "metrics.json").read_text()))
    assert scores[0]["n"] == scores[1]["n"] == 60
    assert scores[0]["confusion_matrix"] == scores[1]["confusion_matrix"]
    assert scores[0]["area_estimates"] == scores[1]["area_estimates"]


def test_a_mask_of_points_is_refused_in_one_line(tmp_path):
    from shapely.geometry import Point

    path, _ = _map(tmp_path)
    gpd.GeoDataFrame({"id": [1]}, geometry=[Point(500100, 3999900)], crs="EPSG:32617").to_file(tmp_path / "pt.gpkg")
    result = CliRunner().invoke(cli, ["sample", "--map", str(path), "--out", str(tmp_path / "s.gpkg"), "--mask",
                                      str(tmp_path / "pt.gpkg")])
    assert result.exit_code == 2 and "mask" in result.output and "has no polygon over the map" in result.output
    assert not (tmp_path / "s.gpkg").exists()
