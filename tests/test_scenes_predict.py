"""``geocamat predict`` with a scene model: one class per image, streamed, georeferenced footprints styled."""

from __future__ import annotations

import csv
import json
import sqlite3

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image
from rasterio.transform import from_origin

from cli.main import cli
from tests.conftest import scene_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes_predict")
    scene_folder(d / "data", per_class=6, size=16)
    result = CliRunner().invoke(cli, ["train", "--scenes", str(d / "data"), "--set", "image_size=16", "--epochs", "4",
                                      "--arch", "camnet-xs", "--batch-size", "4", "--out", str(d / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return d


def _chip(path, level: int, x0: float, crs: str = "EPSG:32617") -> None:
    """A 3-band uint8 GeoTIFF chip of 16 px at 10 m, filled around ``level``."""
    rng = np.random.default_rng(level)
    pixels = np.clip(rng.normal(level, 20, (3, 16, 16)), 0, 255).astype("uint8")
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=3, dtype="uint8", crs=crs,
                       transform=from_origin(x0, 3_285_000, 10, 10)) as dst:
        dst.write(pixels)


def test_predict_classifies_every_image_and_scores_class_folders(model, tmp_path):
    """A folder per class: every image gets a row; the classes follow brightness (the model learned that);
    the report says how often the class is the folder's name."""
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", "--model", str(model / "run" / "model.geocamat"), "--out", str(out),
                                      "--batch-size", "5", str(model / "data")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "scenes.csv").open()))
    types = (out / "scenes.csvt").read_text().strip().split(",")  # QGIS reads the numbers as numbers
    assert len(types) == len(rows[0]) and types[2] == '"Integer"' and types[-1] == '"Real"'
    assert len(rows) == 12 and {r["folder"] for r in rows} == {"dark", "bright"}
    assert all(abs(sum(float(r[k]) for k in ("p_bright", "p_dark")) - 1) < 1e-3 for r in rows)
    assert all(float(r["confidence"]) == max(float(r["p_bright"]), float(r["p_dark"])) for r in rows)
    report = json.loads((out / "report.json").read_text())
    agree = report["folder_agreement"]
    assert agree["images"] == 12 and agree["agree"] == sum(r["class_name"] == r["folder"] for r in rows)
    assert agree["share"] >= 0.9  # dark and bright noise are trivially separable
    assert sum(report["counts"].values()) == 12 and report["georeferenced"] == 0
    assert not (out / "scenes.gpkg").exists()


def test_georeferenced_chips_become_a_styled_footprint_layer(model, tmp_path):
    """GeoTIFF chips (EuroSAT-style) give scenes.gpkg: one footprint per chip in the first chip's CRS (a chip in
    another CRS reprojected), with the class and a stored QGIS style; a grey PNG is repeated into 3 bands and a
    plain PNG stays out of the layer, each said in a note."""
    import geopandas as gpd

    chips = tmp_path / "chips"
    chips.mkdir()
    _chip(chips / "a.tif", 40, 400_000)
    _chip(chips / "b.tif", 200, 400_160)
    _chip(chips / "c.tif", 200, 400_320, crs="EPSG:32618")
    Image.fromarray(np.full((16, 16), 210, np.uint8)).save(chips / "grey.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", "--model", str(model / "run" / "model.geocamat"), "--out", str(out),
                                      str(chips)])
    assert result.exit_code == 0, result.output
    assert "1 grey image repeated" in result.output and "1 of 4 images are not georeferenced" in result.output
    layer = gpd.read_file(out / "scenes.gpkg")
    assert len(layer) == 3 and layer.crs.to_epsg() == 32617
    a = layer[layer["image"].str.endswith("a.tif")].iloc[0]
    assert a.geometry.bounds == pytest.approx((400_000, 3_284_840, 400_160, 3_285_000))
    assert a["class_name"] == "dark" and set(layer["class_name"]) == {"dark", "bright"}
    rows = {r["image"]: r for r in csv.DictReader((out / "scenes.csv").open())}  # the CSV's columns, joinable
    assert [c for c in rows[a["image"]] if c not in layer.columns] == []
    assert a["folder"] == "chips" and a[["col", "row", "width", "height"]].isna().all()  # a whole image: no cell
    assert a["p_dark"] == pytest.approx(float(rows[a["image"]]["p_dark"]), abs=1e-4)
    with sqlite3.connect(out / "scenes.gpkg") as db:
        (qml,) = db.execute("SELECT styleQML FROM layer_styles WHERE f_table_name = 'scenes'").fetchone()
    assert 'attr="class_id"' in qml and "bright" in qml and 'alpha="0.55"' in qml
    assert (out / "scenes.qml").read_text() == qml


def test_bad_scene_inputs_are_one_line_errors_with_no_output(model, tmp_path):
    two = tmp_path / "two.tif"
    with rasterio.open(two, "w", driver="GTiff", width=16, height=16, count=2, dtype="uint8") as dst:
        dst.write(np.zeros((2, 16, 16), np.uint8))
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    for images, needle in (([str(two)], "2 bands"), ([str(tmp_path / "empty")], "no image"),
                           ([str(broken)], "broken.png"), ([str(tmp_path / "none*.png")], "no image found")):
        out = tmp_path / "out"
        result = CliRunner().invoke(cli, ["predict", "--model", str(model / "run" / "model.geocamat"), "--out",
                                          str(out), *images])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], result.output
        assert not out.exists() or not any(out.iterdir())


def test_evaluate_a_test_folder_with_fewer_classes_by_the_model_class_names(model, tmp_path):
    """A test folder holding only `dark` is scored against the model's `dark` (index 1 of bright, dark), not as
    the folder's first class; --all-images scores all of it; an unknown class folder is one line."""
    import shutil

    test = tmp_path / "test"
    shutil.copytree(model / "data" / "dark", test / "dark")
    args = ["evaluate", "--model", str(model / "run" / "model.geocamat"), "--scenes", str(test)]
    half = CliRunner().invoke(cli, args)
    whole = CliRunner().invoke(cli, [*args, "--all-images"])
    assert half.exit_code == 0 and whole.exit_code == 0, half.output + whole.output
    assert "3 scenes: the images the model did not train on (3 of 6" in half.output
    assert "6 scenes: every image of the folder" in whole.output
    assert float(whole.output.split("clean")[1].split("OA")[1].split()[0]) >= 0.8  # dark is recognised as dark
    shutil.copytree(model / "data" / "dark", test / "lake")
    bad = CliRunner().invoke(cli, args)
    assert bad.exit_code == 2 and "lake" in bad.output and bad.output.count("\n") == 1, bad.output


def test_a_scene_larger_than_the_training_images_is_classified_in_chips(model, tmp_path, monkeypatch):
    """A 70 x 50 px GeoTIFF (dark left, bright right; the model saw 16 px images) is cut into 16-px cells that
    tile it (edge cells cut), each classified from a full 16-px window: dark cells on the left, bright on the
    right; cells whose window holds nodata only are skipped; --chip-size 0 classifies the scene whole. The
    footprints are appended 7 at a time (as 20,000 are for a large scene)."""
    import geopandas as gpd
    import shapely

    from geocamat.tasks.scenes import classify

    monkeypatch.setattr(classify, "FLUSH_ROWS", 7)

    rng = np.random.default_rng(1)
    pixels = np.where(np.arange(70) < 32, 40, 200)[None, None, :] + rng.normal(0, 20, (3, 50, 70))
    pixels = np.clip(pixels, 1, 255).astype("uint8")
    pixels[:, 32:, :16] = 0  # nodata: the cell at rows 32-47, cols 0-15, and the edge cell below it (rows 48-49)
    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=70, height=50, count=3, dtype="uint8", crs="EPSG:32617",
                       nodata=0, transform=from_origin(400_000, 3_285_000, 10, 10)) as dst:
        dst.write(pixels)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", "--model", str(model / "run" / "model.geocamat"), "--out", str(out),
                                      str(scene)])
    assert result.exit_code == 0, result.output
    assert "scene.tif is 70x50 px, 4x the training images (16 px): classified in cells of 16 px" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["chips"] == 5 * 4 and report["empty_chips"] == 2 and report["classified"] == 18
    layer = gpd.read_file(out / "scenes.gpkg")
    assert len(layer) == 18
    union = shapely.union_all(layer.geometry.values)
    nodata_cell = shapely.box(400_000, 3_285_000 - 500, 400_160, 3_285_000 - 320)
    assert shapely.equals(union.union(nodata_cell), shapely.box(400_000, 3_284_500, 400_700, 3_285_000))
    assert abs(layer.geometry.area.sum() - (700 * 500 - 160 * 180)) < 1e-6  # cells do not overlap
    rows = list(csv.DictReader((out / "scenes.csv").open()))
    by_cell = {(int(r["col"]), int(r["row"])): r["class_name"] for r in rows}
    assert {(int(f["col"]), int(f["row"])): f["class_name"] for _, f in layer.iterrows()} == by_cell
    left = [r["class_name"] for r in rows if int(r["col"]) + int(r["width"]) <= 32]
    right = [r["class_name"] for r in rows if int(r["col"]) >= 32]
    assert left.count("dark") >= len(left) - 1 and right.count("bright") >= len(right) - 1
    with rasterio.open(out / "cells" / "scene.tif") as cells:  # one pixel per cell, styled, nodata where skipped
        grid = cells.read(1)
        assert grid.shape == (4, 5) and cells.transform == from_origin(400_000, 3_285_000, 160, 160)
        assert grid[2, 0] == cells.nodata and grid[3, 0] == cells.nodata and (grid != cells.nodata).sum() == 18
        ids = {r["class_name"]: int(r["class_id"]) for r in rows}
        assert all(grid[int(r["row"]) // 16, int(r["col"]) // 16] == int(r["class_id"]) for r in rows)
        assert set(ids) <= {"dark", "bright"} and cells.colormap(1)
    assert (out / "cells" / "scene.qml").exists() and report["outputs"]["cell_rasters"] == ["cells/scene.tif"]
    whole = CliRunner().invoke(cli, ["predict", "--model", str(model / "run" / "model.geocamat"), "--out",
                                     str(tmp_path / "whole"), "--chip-size", "0", str(scene)])
    assert whole.exit_code == 0 and "1 image (" in whole.output, whole.output
    with rasterio.open(scene, "r+") as dst:  # every pixel nodata: refused in one line, nothing written
        dst.write(np.zeros((3, 50, 70), np.uint8))
    empty = CliRunner().invoke(cli, ["predict", "--model", str(model / "run" / "model.geocamat"), "--out",
                                     str(tmp_path / "empty"), str(scene)])
    assert empty.exit_code == 2 and "every cell of scene.tif is nodata" in empty.output, empty.output
    assert empty.output.count("\n") == 1 and not (tmp_path / "empty" / "scenes.csv").exists()


def test_values_unlike_the_training_images_are_said_and_info_check_knows_scene_models(model, tmp_path):
    """16-bit chips (raw values ~3000) given to a model of 8-bit images: predict warns of a scaling; info --check
    reads plain PNGs (no CRS needed for scene models), names a chip with other bands, and warns of the values."""
    chips = tmp_path / "u16"
    chips.mkdir()
    for i in range(3):
        with rasterio.open(chips / f"c{i}.tif", "w", driver="GTiff", width=16, height=16, count=3, dtype="uint16",
                           crs="EPSG:32617", transform=from_origin(400_000 + 160 * i, 3_285_000, 10, 10)) as dst:
            dst.write(np.full((3, 16, 16), 3000, np.uint16))
    bundle = str(model / "run" / "model.geocamat")
    result = CliRunner().invoke(cli, ["predict", "--model", bundle, "--out", str(tmp_path / "out"), str(chips)])
    assert result.exit_code == 0 and "warning: the images' values are unlike the training imagery's" in result.output
    check = CliRunner().invoke(cli, ["info", "--check", bundle, str(model / "data")])
    assert check.exit_code == 0, check.output
    assert "ok: images: 12 images readable with the model's bands, 16 px a side" in check.output
    assert "ok: values: the first 12 images' values are like the training images'" in check.output
    with rasterio.open(chips / "two.tif", "w", driver="GTiff", width=16, height=16, count=2, dtype="uint16") as dst:
        dst.write(np.zeros((2, 16, 16), np.uint16))
    check = CliRunner().invoke(cli, ["info", "--check", bundle, str(chips)])
    assert "two.tif: 2 bands but the model expects 3" in check.output and "warning: values:" in check.output


@pytest.mark.parametrize("chips", ["geotiff", "png"])
def test_a_model_of_georeferenced_chips_cuts_other_resolutions_by_ground(chips, tmp_path):
    """Trained on 16-px GeoTIFF chips at 10 m (or PNG chips with pixel_metres 10), the bundle records 10 m pixels;
    a 5 m scene is cut into 32-px cells (the 160 m of a training chip), not 16-px ones; a 16-px chip at 1 m (16 m a
    side, 10x less ground) is warned about; info --check says the cells follow the ground."""
    import geopandas as gpd

    from geocamat.bundle import Bundle

    data, told = tmp_path / "data", []
    if chips == "png":
        scene_folder(data, per_class=6, size=16)
        told = ["--set", "pixel_metres=10"]
    for name, level in (("dark", 40), ("bright", 200)) if chips == "geotiff" else ():
        (data / name).mkdir(parents=True)
        for i in range(6):
            _chip(data / name / f"{i}.tif", level + i, 400_000 + 160 * i)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--scenes", str(data), "--set", "image_size=16", "--epochs", "2",
                                      "--arch", "camnet-xs", "--batch-size", "4", "--out", str(run), "--quiet",
                                      *told])
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(run / "model.geocamat")
    assert bundle.extra["source_side"] == 16 and bundle.extra["source_metres"] == pytest.approx(10)

    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=96, height=64, count=3, dtype="uint8", crs="EPSG:32617",
                       transform=from_origin(400_000, 3_285_000, 5, 5)) as dst:
        dst.write(np.full((3, 64, 96), 120, np.uint8))
    small = tmp_path / "small.tif"
    with rasterio.open(small, "w", driver="GTiff", width=16, height=16, count=3, dtype="uint8", crs="EPSG:32617",
                       transform=from_origin(400_000, 3_285_000, 1, 1)) as dst:
        dst.write(np.full((3, 16, 16), 120, np.uint8))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", "--model", str(run / "model.geocamat"), "--out", str(out),
                                      str(scene), str(small)])
    assert result.exit_code == 0, result.output
    assert ("scene.tif is 96x64 px at 5 m, 3x the training images (16 px (160 m)): classified in cells of "
            "32 px (160 m)") in result.output
    assert "warning: 1 image covers under 1/4 or over 4x the ground of a training image (e.g. small.tif: 16 m" \
        in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["chips"] == 3 * 2 and report["classified"] == 7 and report["model"]["source_metres"] == 10
    cells = gpd.read_file(out / "scenes.gpkg")
    assert sorted(round(g.area) for g in cells.geometry)[-6:] == [160 * 160] * 6
    check = CliRunner().invoke(cli, ["info", "--check", str(run / "model.geocamat"), str(scene)])
    assert "1 over 2x the training images' 16 px (160 m), classified in cells of that ground" in check.output, \
        check.output
