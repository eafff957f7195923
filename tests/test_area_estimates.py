"""Area and accuracy estimates from a reference point sample (Olofsson et al. 2014), and their place in scoring."""

import numpy as np
import pytest

from geocamat.metrics.area import sample_size, stratified_estimates
from tests.conftest import write_raster
from tests.test_scoring import _points


def test_the_published_example_of_olofsson_et_al_2014():
    """Their worked example (section 5): 10,000,000 Landsat pixels of 0.09 ha mapped as deforestation, forest gain,
    stable forest and stable non-forest, 640 reference points stratified by map class. The paper gives the areas
    21,158 +- 6,158, 11,686 +- 3,756, 285,770 +- 15,510 and 581,386 +- 16,282 ha, deforestation's user's accuracy
    0.88 and producer's 0.75 +- 0.21, and an overall accuracy of 0.95 +- 0.02."""
    sample = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])  # rows: the map
    mapped = np.array([200_000, 150_000, 3_200_000, 6_450_000]) * 0.09
    out = stratified_estimates(sample, mapped, ["deforestation", "gain", "forest", "non-forest"])
    c = out["per_class"]
    assert [round(c[k]["area"]) for k in c] == [21_158, 11_686, 285_770, 581_386]
    assert [round(c[k]["area_ci"]) for k in c] == [6_158, 3_756, 15_510, 16_282]
    assert c["deforestation"]["users"] == 0.88 and round(c["deforestation"]["producers"], 2) == 0.75
    assert round(c["deforestation"]["producers_ci"], 2) == 0.21
    assert (round(out["overall_accuracy"], 2), round(out["overall_accuracy_ci"], 2)) == (0.95, 0.02)
    assert sum(c[k]["area"] for k in c) == pytest.approx(900_000) and out["points"] == 640 and not out["notes"]


def test_sample_size_of_the_published_example():
    """Olofsson et al. 2014 (section 5.1.1): conjectured user's accuracies 0.7, 0.6, 0.9, 0.95 and a target
    standard error of 0.01 for the overall accuracy give n = 641 (they round to 640)."""
    weights = np.array([200_000, 150_000, 3_200_000, 6_450_000]) / 10_000_000
    assert sample_size(weights, np.array([0.7, 0.6, 0.9, 0.95]), 0.01) == 641
    assert sample_size(weights, np.array([1.0, 1.0, 1.0, 1.0]), 0.01) == 1  # a perfect map needs no sample


def test_map_classes_with_too_few_points_are_named_and_bounded():
    """A map class with one point: its variance is taken at its largest (1/4), an upper bound, so the intervals
    stay computable and wide; a mapped class with no point adds nothing and is named; a class with no mapped
    area weighs nothing."""
    sample = np.array([[9, 1, 0], [0, 1, 0], [0, 0, 0]])
    out = stratified_estimates(sample, np.array([60.0, 30.0, 10.0]), ["a", "b", "c"])
    assert out["per_class"]["b"]["users_ci"] == pytest.approx(1.96 * 0.5)
    with_two = stratified_estimates(np.array([[9, 1, 0], [0, 2, 0], [0, 0, 0]]), np.array([60.0, 30.0, 10.0]),
                                    ["a", "b", "c"])
    assert out["overall_accuracy_ci"] > with_two["overall_accuracy_ci"]
    assert any("one reference point only in the map's b" in n for n in out["notes"])
    assert any("no reference point falls in the map's c" in n for n in out["notes"])
    assert out["per_class"]["c"]["users"] is None and out["per_class"]["c"]["area"] == 0
    ok = stratified_estimates(np.array([[9, 1], [0, 0]]), np.array([60.0, 0.0]), ["a", "b"])
    assert not ok["notes"]  # b has no mapped area: nothing to sample


def test_a_point_reference_gives_area_estimates_in_hectares(tmp_path):
    """Points on a 10 m map (40 x 40 px, left half field, right half wood): the mapped areas are 8 ha each; the
    estimates follow the points' confusion (one field point mapped as wood moves area to field); they do not
    depend on the scoring windows; a checkerboard scores its blocks' area only; polygons give none."""
    import geopandas as gpd
    import shapely

    from geocamat.tasks.landuse.scoring import score_map

    mp = np.ones((40, 40), "uint8")
    mp[:, 20:] = 2
    map_path = write_raster(tmp_path / "map.tif", mp)
    points = [(5, 5), (8, 8), (5, 30), (30, 25), (30, 35), (12, 33), (35, 28)]
    ref = _points(tmp_path, ["field", "field", "wood", "wood", "field", "wood", "wood"], points)
    outs = [score_map(map_path, ref, [1, 2], ["field", "wood"], reference_field="cls", window_size=w)
            for w in (7, 4096)]
    assert outs[0] == outs[1]
    est = outs[0]["area_estimates"]
    assert est["unit"] == "ha" and est["total_area"] == pytest.approx(16.0) and est["points"] == 7
    field, wood = est["per_class"]["field"], est["per_class"]["wood"]
    assert field["mapped_area"] == pytest.approx(8.0) and wood["mapped_area"] == pytest.approx(8.0)
    assert field["area"] == pytest.approx(8.0 + 8.0 / 5) and wood["area"] == pytest.approx(8.0 * 4 / 5)
    assert field["users"] == 1.0 and wood["users"] == 0.8 and field["area_ci"] > 0
    odd = score_map(map_path, ref, [1, 2], ["field", "wood"], reference_field="cls", blocks=2)
    assert odd["area_estimates"]["total_area"] == pytest.approx(8.0)  # top right + bottom left quadrants
    layer = tmp_path / "polygons.gpkg"
    gpd.GeoDataFrame({"cls": ["field"]}, geometry=[shapely.box(500_000, 3_999_800, 500_100, 3_999_900)],
                     crs="EPSG:32617").to_file(layer)
    assert "area_estimates" not in score_map(map_path, layer, [1, 2], ["field", "wood"], reference_field="cls")


def test_a_geographic_map_measures_its_areas_on_the_ellipsoid(tmp_path):
    """A map in EPSG:4326 (0.0001 degree pixels at 45 N): areas in hectares, near 7.87 m x 11.11 m a pixel."""
    from geocamat.tasks.landuse.scoring import score_map

    mp = np.ones((40, 40), "uint8")
    map_path = write_raster(tmp_path / "geo.tif", mp, crs="EPSG:4326", origin=(10.0, 45.002), res=0.0001)
    import geopandas as gpd
    import shapely

    ref = tmp_path / "p.gpkg"
    gpd.GeoDataFrame({"cls": ["field", "field"]}, geometry=[shapely.Point(10.0005, 45.0015),
                                                            shapely.Point(10.002, 45.001)],
                     crs="EPSG:4326").to_file(ref)
    est = score_map(map_path, ref, [1, 2], ["field", "wood"], reference_field="cls")["area_estimates"]
    assert est["unit"] == "ha" and est["total_area"] == pytest.approx(1600 * 7.87 * 11.12 / 1e4, rel=0.01)


def test_evaluate_prints_and_keeps_the_area_estimates_of_a_point_reference(table_env, tmp_path):
    """`geocamat evaluate --map M --reference points.gpkg`: the area lines after the usual scores, and
    area_estimates in metrics.json; the estimated areas add up to the mapped area."""
    import json

    import geopandas as gpd
    import rasterio
    import shapely
    from click.testing import CliRunner

    from cli.main import cli

    files, model, _, _ = table_env
    with rasterio.open(files["labels"]) as src:
        labels, t, crs = src.read(1), src.transform, src.crs
    rows, cols = np.nonzero(labels)
    pick = np.random.default_rng(0).choice(len(rows), 40, replace=False)
    gpd.GeoDataFrame({"code": [int(labels[r, c]) for r, c in zip(rows[pick], cols[pick], strict=True)]},
                     geometry=[shapely.Point(*(t @ (c + 0.5, r + 0.5))) for r, c in zip(rows[pick], cols[pick],
                                                                                           strict=True)],
                     crs=crs).to_file(tmp_path / "points.gpkg")
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(model), "--map", str(files["labels"]), "--reference",
                                      str(tmp_path / "points.gpkg"), "--reference-field", "code", "--out",
                                      str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "area estimates from 40 reference points (Olofsson et al. 2014" in result.output
    assert "overall accuracy 1.000 +- 0.000" in result.output  # the map is the reference
    est = json.loads((tmp_path / "ev" / "metrics.json").read_text())["area_estimates"]
    assert sum(c["area"] for c in est["per_class"].values()) == pytest.approx(est["total_area"])
    import csv

    table = list(csv.DictReader((tmp_path / "ev" / "area_estimates.csv").open()))
    assert [r["class"] for r in table] == [*est["per_class"], "overall accuracy"]
    assert float(table[0]["estimated_ha"]) == pytest.approx(next(iter(est["per_class"].values()))["area"])
    assert float(table[-1]["overall_accuracy"]) == est["overall_accuracy"] and table[-1]["users_accuracy"] == ""
    assert (tmp_path / "ev" / "area_estimates.csvt").read_text().startswith('"String","Real"')  # numbers in QGIS
    assert est["unit"] == "ha" and est["points"] == 40


def test_two_points_in_one_pixel_are_two_sample_units(tmp_path):
    """A point sample may put two points in one map pixel (labelled alike or not): each is a unit of the sample
    (burnt onto the grid, the pair counted once, with the last label only); points on window edges count once."""
    from geocamat.tasks.landuse.scoring import score_map

    mp = np.ones((40, 40), "uint8")
    mp[:, 20:] = 2
    map_path = write_raster(tmp_path / "map.tif", mp)
    ref = _points(tmp_path, ["field", "wood", "field", "wood"], [(5, 5), (5, 5), (5, 30), (6, 7)])
    for window in (4, 7, 4096):
        out = score_map(map_path, ref, [1, 2], ["field", "wood"], reference_field="cls", window_size=window)
        assert out["reference_pixels"] == 4 and out["area_estimates"]["points"] == 4
        # reference x map: field mapped field, wood mapped field (twice: the shared pixel and (6, 7)), field mapped
        # wood
        assert out["confusion_matrix"] == [[1, 1], [2, 0]]
