"""The land-use inference engine: grids, mosaics, regions, blending, streaming seams, resume, errors."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_helpers import make_bundle, make_raster  # noqa: E402
from test_outputs import assert_cog, category_names  # noqa: E402

from geocamat.errors import (  # noqa: E402
    BundleError,
    ConfigError,
    InputNotFoundError,
    InvalidRasterError,
    OutputExistsError,
)
from geocamat.inference.blend import accumulate_blocks  # noqa: E402
from geocamat.inference.landuse import predict_landuse  # noqa: E402
from geocamat.inference.manifest import PARTIAL  # noqa: E402
from geocamat.inference.plan import UnitSizes  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


#: Units of 32 rows x 48 columns, so that small test scenes have several bands and column blocks.
SMALL_UNITS = UnitSizes(band_rows=32, block_cols=48)


@pytest.fixture(scope="module")
def bundle():
    return make_bundle(tile=16)


def read(path: Path, band: int = 1):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(band), src.profile


def run(bundle, images, out, **kw):
    kw.setdefault("progress", False)
    return predict_landuse(bundle, [str(i) for i in images], out, **kw)


def test_outputs_on_input_grid(tmp_path, bundle):
    import geopandas as gpd
    import rasterio

    img = make_raster(tmp_path / "img.tif", 130, 90, collar=6)
    report = run(bundle, [img], tmp_path / "out", write_probabilities=True)
    out = tmp_path / "out"
    classes, profile = read(out / "landuse.tif")
    with rasterio.open(img) as src:
        valid = (src.read() != 0).any(axis=0)
        assert profile["crs"] == src.crs and profile["transform"] == src.transform
        assert (profile["width"], profile["height"]) == (src.width, src.height)
    assert profile["dtype"] == "uint8" and profile["nodata"] == 0
    assert (classes[~valid] == 0).all() and set(np.unique(classes[valid])) <= {1, 2, 3}
    assert_cog(out / "landuse.tif")
    with rasterio.open(out / "landuse.tif") as src:
        assert src.colormap(1)[1][:3] == (0x1F, 0x77, 0xB4)
    assert category_names(out / "landuse.tif")[1:4] == ["class 1", "class 2", "class 3"]
    assert "class 3" in (out / "landuse.qml").read_text()
    # the attribute table for ArcGIS/gdalinfo, merged into GDAL's own .aux.xml (category names kept)
    from geocamat.data.class_styles import pam_classes

    names, colours = pam_classes(out / "landuse.tif.aux.xml")
    assert names == {1: "class 1", 2: "class 2", 3: "class 3"} and colours[1] == "#1f77b4"
    assert "<Description>" in (out / "landuse.tif.aux.xml").read_text()
    conf, cprof = read(out / "confidence.tif")
    assert np.isnan(conf[~valid]).all() and (conf[valid] >= 1 / 3 - 1e-6).all() and (conf[valid] <= 1).all()
    cam, _ = read(out / "cam.tif")
    assert np.isnan(cam[~valid]).all() and np.nanmin(cam) >= 0
    with rasterio.open(out / "probabilities.tif") as src:
        probs = src.read()
    np.testing.assert_allclose(probs[:, valid].sum(axis=0), 1, atol=1e-4)
    np.testing.assert_array_equal(probs.argmax(axis=0)[valid] + 1, classes[valid])
    for name in ("confidence.tif", "cam.tif", "probabilities.tif"):
        assert_cog(out / name)
    polys = gpd.read_file(out / "landuse.gpkg", layer="landuse")
    assert polys.crs == profile["crs"]
    assert {"class_id", "class_name", "area", "area_ha"} <= set(polys.columns)
    assert polys.area.sum() == pytest.approx(valid.sum() * 100)
    assert set(polys.class_name) <= {"class 1", "class 2", "class 3"}
    with sqlite3.connect(out / "landuse.gpkg") as db:
        table, qml, default = db.execute("SELECT f_table_name, styleQML, useAsDefault FROM layer_styles").fetchone()
    assert table == "landuse" and default == 1 and all(f"class {i}" in qml for i in (1, 2, 3))
    assert report["tiles"]["tiles_planned"] == report["tiles"]["tiles_processed"] + report["tiles"]["skipped_no_data"]
    assert sum(c["pixels"] for c in report["classes"]) == valid.sum()
    assert json.loads((out / "report.json").read_text())["model"]["weights_sha256"] == report["model"]["weights_sha256"]
    assert not (out / PARTIAL).exists()


def test_constant_model_gives_seamless_map(tmp_path):
    bundle = make_bundle(tile=16)
    bundle.state_dict["head.weight"].zero_()
    bundle.state_dict["head.bias"].copy_(torch.tensor([0.1, 1.5, 0.3]))
    img = make_raster(tmp_path / "img.tif", 100, 70, nodata=None)
    run(bundle, [img], tmp_path / "out", vectorise=False, units=SMALL_UNITS)
    classes, _ = read(tmp_path / "out" / "landuse.tif")
    conf, _ = read(tmp_path / "out" / "confidence.tif")
    expected = torch.tensor([0.1, 1.5, 0.3]).softmax(0).max().item()
    assert (classes == 2).all()
    np.testing.assert_allclose(conf, expected, rtol=1e-5)


def test_test_time_augmentation_is_a_setting_of_the_run(tmp_path, bundle):
    img = make_raster(tmp_path / "img.tif", 60, 50, nodata=None)
    plain = run(bundle, [img], tmp_path / "plain", vectorise=False)
    tta = run(bundle, [img], tmp_path / "tta", vectorise=False, tta=True)
    assert tta["settings"]["tta"] is True and plain["settings"]["tta"] is False
    assert tta["tiles"]["tiles_processed"] == plain["tiles"]["tiles_processed"]
    a, b = read(tmp_path / "plain" / "confidence.tif")[0], read(tmp_path / "tta" / "confidence.tif")[0]
    assert not np.allclose(a, b)  # the averaged map differs from the single pass


def _rgba(path, x0: float):
    from rasterio.transform import from_origin

    data = np.full((4, 60, 70), 120, np.uint8)
    data[:3, :, :20] = 0
    data[3] = 255
    data[3, :, :20] = 0  # transparent left part
    with rasterio.open(path, "w", driver="GTiff", width=70, height=60, count=4, dtype="uint8", crs="EPSG:32618",
                       transform=from_origin(x0, 4100000, 10, 10), photometric="RGB", alpha="YES") as dst:
        dst.write(data)
    return path


def test_alpha_band_is_read_as_nodata(tmp_path, bundle):
    report = run(bundle, [_rgba(tmp_path / "rgba.tif", 500000)], tmp_path / "out", vectorise=False)
    classes, profile = read(tmp_path / "out" / "landuse.tif")
    assert (classes[:, :20] == profile["nodata"]).all() and (classes[:, 20:] != profile["nodata"]).all()
    assert report["tiles"]["skipped_no_data"] > 0


@pytest.mark.parametrize("bands, dtype", [(6, "uint16"), (3, "float32")])
def test_an_alpha_band_gdal_does_not_take_as_a_mask_is_one(tmp_path, bands, dtype):
    """gdalwarp -dstalpha on UInt16/Float32 data (or 6 bands + alpha): GDAL gives the file no mask, and the
    transparent collar (36% of the audit's map) was mapped as forest."""
    from rasterio.enums import ColorInterp

    base = make_raster(tmp_path / "base.tif", 60, 50, bands=bands, dtype=dtype, nodata=None)
    with rasterio.open(base) as src:
        data, profile = src.read(), src.profile
    alpha = np.full((1, 50, 60), 255, dtype)
    alpha[:, :, :15] = 0
    profile.update(count=bands + 1)
    with rasterio.open(tmp_path / "alpha.tif", "w", **profile) as dst:
        dst.write(np.concatenate([data, alpha]))
    with rasterio.open(tmp_path / "alpha.tif", "r+") as dst:
        dst.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (bands - 1) + [ColorInterp.alpha]
    run(make_bundle(bands=bands, tile=16), [tmp_path / "alpha.tif"], tmp_path / "out", vectorise=False)
    with rasterio.open(tmp_path / "out" / "landuse.tif") as m:
        mapped = m.read(1, masked=True)
    assert mapped.mask[:, :15].all() and not mapped.mask[:, 15:].any()


def test_infinite_values_are_nodata_not_a_class(tmp_path, bundle):
    """A 10 x 10 px block of inf in a float image: nodata there, the map elsewhere as without it (the normalised
    inf became the largest float and turned 1,024 px around it into a class)."""
    image = make_raster(tmp_path / "scene.tif", 80, 60, dtype="float32", nodata=None)
    with rasterio.open(image) as src:
        data, profile = src.read(), src.profile
    data[:, 20:30, 30:40] = np.inf
    with rasterio.open(tmp_path / "inf.tif", "w", **profile) as dst:
        dst.write(data)
    run(bundle, [image], tmp_path / "clean", vectorise=False, overlap=0.5)
    run(bundle, [tmp_path / "inf.tif"], tmp_path / "out", vectorise=False, overlap=0.5)
    with rasterio.open(tmp_path / "out" / "landuse.tif") as m, rasterio.open(tmp_path / "clean" / "landuse.tif") as c:
        mapped, clean = m.read(1, masked=True), c.read(1)
    assert mapped.mask[20:30, 30:40].all() and mapped.mask.sum() == 100
    assert (mapped[~mapped.mask] == clean[~mapped.mask]).mean() > 0.9


def test_mosaic_of_rgba_files_keeps_each_files_transparency(tmp_path, bundle):
    left, right = _rgba(tmp_path / "left.tif", 500000), _rgba(tmp_path / "right.tif", 500700)
    run(bundle, [left, right], tmp_path / "out", vectorise=False)
    classes, profile = read(tmp_path / "out" / "landuse.tif")
    assert classes.shape == (60, 140)
    nodata = classes == profile["nodata"]
    assert nodata[:, :20].all() and nodata[:, 70:90].all()  # each file's transparent strip
    assert not nodata[:, 20:70].any() and not nodata[:, 90:].any()


def test_window_mode_runs_dense_models_fully_convolutionally(tmp_path, bundle):
    img = make_raster(tmp_path / "img.tif", 100, 70, nodata=None)
    with pytest.raises(ConfigError, match="output: dense"):
        run(bundle, [img], tmp_path / "refused", window=48)  # a window-output model classifies whole tiles
    dense = make_bundle(tile=16)
    dense.model = {**dense.model, "output": "dense"}
    dense.state_dict["head.weight"] = dense.state_dict["head.weight"] * 30  # sharper, more varied output
    with pytest.raises(ConfigError, match="at least the model's tile size"):
        run(dense, [img], tmp_path / "small", window=8)
    report = run(dense, [img], tmp_path / "win", window=48, vectorise=False)
    assert report["plan"]["tile"] == 48 and report["settings"]["window"] == 48
    classes, profile = read(tmp_path / "win" / "landuse.tif")
    assert (classes != profile["nodata"]).all()
    # the blended windows agree with the model run on a larger piece of the scene (up to the zero padding at
    # window edges, which the Hann weights keep small)
    import rasterio as rio

    from geocamat.models.camnet import tile_probabilities

    with rio.open(img) as src:
        x = torch.from_numpy(src.read().astype("float32"))
    x = (x - torch.tensor(dense.mean).view(-1, 1, 1)) / torch.tensor(dense.std).view(-1, 1, 1)
    with torch.no_grad():
        whole, _ = tile_probabilities(dense.build_model(), x[None, :, :64, :64])
    conf, _ = read(tmp_path / "win" / "confidence.tif")
    expected = whole[0].amax(dim=0).numpy()
    np.testing.assert_allclose(conf[20:28, 20:28], expected[20:28, 20:28], atol=0.01)
    assert np.abs(conf[20:28, 20:28] - expected[23:31, 23:31]).max() > 0.05  # the map does vary in space


def test_seams_do_not_change_the_result(tmp_path, bundle):
    import geopandas as gpd

    img = make_raster(tmp_path / "img.tif", 110, 75, collar=3)
    whole = run(bundle, [img], tmp_path / "whole")
    cut = run(bundle, [img], tmp_path / "cut", units=UnitSizes(band_rows=24, block_cols=40))
    assert cut["plan"]["units"] > 6 and whole["plan"]["units"] == 1
    np.testing.assert_array_equal(read(tmp_path / "whole" / "landuse.tif")[0],
                                  read(tmp_path / "cut" / "landuse.tif")[0])
    np.testing.assert_allclose(read(tmp_path / "whole" / "confidence.tif")[0],
                               read(tmp_path / "cut" / "confidence.tif")[0], atol=1e-5)
    a = gpd.read_file(tmp_path / "whole" / "landuse.gpkg", layer="landuse")
    b = gpd.read_file(tmp_path / "cut" / "landuse.gpkg", layer="landuse")
    assert len(a) == len(b) and a.area.sum() == pytest.approx(b.area.sum())


@pytest.mark.parametrize("tile,stride", [(8, 4), (12, 4), (8, 8), (16, 2)])
def test_block_accumulation_equals_tile_by_tile_adds(tile, stride):
    torch.manual_seed(0)
    rows, cols = np.array([0, 0, 1, 3, 2, 0]), np.array([0, 1, 1, 0, 4, 5])
    values = torch.rand(len(rows), 3, tile, tile, dtype=torch.float64)
    height = (rows.max() + 1) * stride + tile - stride
    width = (cols.max() + 1) * stride + tile - stride
    expected = torch.zeros(3, height, width, dtype=torch.float64)
    for v, r, q in zip(values, rows, cols, strict=True):
        expected[:, r * stride:r * stride + tile, q * stride:q * stride + tile] += v
    acc = torch.zeros_like(expected)
    accumulate_blocks(acc, values, rows, cols, tile, stride)
    torch.testing.assert_close(acc, expected)


def test_block_blending_gives_the_same_map_with_and_without_seams(tmp_path, bundle):
    """The CUDA blending path (block adds), run on the CPU: same map as tile-by-tile, across unit seams."""
    img = make_raster(tmp_path / "img.tif", 90, 70, collar=3)
    run(bundle, [img], tmp_path / "tiles", overlap=0.75, vectorise=False)
    whole = run(bundle, [img], tmp_path / "blocks", overlap=0.75, vectorise=False, blend="blocks")
    cut = run(bundle, [img], tmp_path / "cut", overlap=0.75, vectorise=False, blend="blocks",
              units=UnitSizes(band_rows=24, block_cols=40))
    assert cut["plan"]["units"] > 4 and whole["plan"]["units"] == 1
    for other in ("blocks", "cut"):
        np.testing.assert_array_equal(read(tmp_path / "tiles" / "landuse.tif")[0],
                                      read(tmp_path / other / "landuse.tif")[0])
        np.testing.assert_allclose(read(tmp_path / "tiles" / "confidence.tif")[0],
                                   read(tmp_path / other / "confidence.tif")[0], atol=1e-5)
    stages = whole["timings"]["stream_stages"]
    assert stages["model_s"] > 0 and stages["blend_s"] > 0 and stages["write_s_all_threads"] > 0
    assert set(whole["timings"]["assemble_stages"]) == {"landuse.tif_s", "confidence.tif_s", "cam.tif_s"}


def test_resume_after_interrupt_is_identical(tmp_path, bundle):
    img = make_raster(tmp_path / "img.tif", 120, 100, collar=2)
    run(bundle, [img], tmp_path / "ref", write_probabilities=True, units=SMALL_UNITS)

    class Stop(Exception):
        pass

    seen = []

    def stop_after_five(info):
        seen.append(info["unit"])
        if len(seen) == 5:
            raise Stop

    out = tmp_path / "out"
    with pytest.raises(Stop):
        run(bundle, [img], out, write_probabilities=True, on_unit=stop_after_five, units=SMALL_UNITS)
    assert not (out / "landuse.tif").exists() and (out / PARTIAL / "manifest.json").exists()
    redone = []
    report = run(bundle, [img], out, write_probabilities=True, resume=True, on_unit=lambda i: redone.append(i["unit"]),
                 units=SMALL_UNITS)
    assert report["resumed"] and report["runs"] == 2
    assert len(redone) < report["plan"]["units"] and not set(redone) & set(seen[:4])
    for name in ("landuse.tif", "confidence.tif", "cam.tif", "probabilities.tif"):
        import rasterio

        with rasterio.open(tmp_path / "ref" / name) as a, rasterio.open(out / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
    ref = json.loads((tmp_path / "ref" / "report.json").read_text())
    assert report["tiles"] == ref["tiles"] and report["classes"] == ref["classes"]


def test_existing_results_need_overwrite(tmp_path, bundle, capsys, monkeypatch):
    img = make_raster(tmp_path / "img.tif", 40, 40)
    monkeypatch.setenv("GEOCAMAT_PROGRESS_SECONDS", "0")  # stderr is not a terminal here: lines, each update
    run(bundle, [img], tmp_path / "out", vectorise=False, progress=True)
    err = capsys.readouterr().err
    assert "tile/s" in err and "\r" not in err  # progress with the rate on stderr, as lines
    with pytest.raises(OutputExistsError):
        run(bundle, [img], tmp_path / "out", vectorise=False)
    run(bundle, [img], tmp_path / "out", vectorise=False, overwrite=True)
    assert not (tmp_path / "out" / "landuse.gpkg").exists()


def test_mosaic_of_two_files_equals_single_file(tmp_path, bundle):
    import rasterio
    from rasterio.windows import Window

    img = make_raster(tmp_path / "img.tif", 100, 80, nodata=0)
    with rasterio.open(img) as src:
        profile = src.profile
        for name, window in (("left.tif", Window(0, 0, 55, 80)), ("right.tif", Window(55, 0, 45, 80))):
            part = dict(profile, width=window.width, height=window.height, transform=src.window_transform(window))
            (tmp_path / "parts").mkdir(exist_ok=True)
            with rasterio.open(tmp_path / "parts" / name, "w", **part) as dst:
                dst.write(src.read(window=window))
    single = run(bundle, [img], tmp_path / "single", vectorise=False)
    mosaic = run(bundle, [tmp_path / "parts"], tmp_path / "mosaic", vectorise=False)
    assert len(mosaic["inputs"]["images"]) == 2
    a, pa = read(tmp_path / "single" / "landuse.tif")
    b, pb = read(tmp_path / "mosaic" / "landuse.tif")
    assert pa["transform"] == pb["transform"] and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    assert single["tiles"] == mosaic["tiles"]


def test_region_skips_tiles_and_masks_outside(tmp_path, bundle):
    import geopandas as gpd
    import shapely

    img = make_raster(tmp_path / "img.tif", 160, 120)
    # a triangle in the images' CRS covering part of the scene, written in EPSG:4326
    x0, y0 = 500000.0, 4100000.0
    tri = shapely.Polygon([(x0 + 100, y0 - 100), (x0 + 1500, y0 - 100), (x0 + 100, y0 - 1100)])
    gpd.GeoDataFrame({"name": ["a"]}, geometry=[tri], crs="EPSG:32618").to_crs("EPSG:4326").to_file(
        tmp_path / "aoi.gpkg")
    report = run(bundle, [img], tmp_path / "out", region=str(tmp_path / "aoi.gpkg"))
    tiles = report["tiles"]
    assert tiles["skipped_outside_aoi"] > 0 and tiles["tiles_processed"] > 0
    assert tiles["tiles_planned"] == tiles["tiles_processed"] + tiles["skipped_outside_aoi"] + tiles["skipped_no_data"]
    classes, profile = read(tmp_path / "out" / "landuse.tif")
    b = profile["transform"]
    # grid cut to the region's bounds and a tile's margin (16 px) of context, inside the image, started on the whole
    # map's tile lattice (stride 8 px)
    assert (b.c, b.f) == (x0, y0) and profile["width"] == 160 and b.c % 80 == b.f % 80 == 0  # (the image: 160)
    corner = round((b.f - (y0 - 100)) / 10), round((x0 + 100 - b.c) / 10)  # the triangle's right-angle corner
    assert classes[-1, -1] == 0 and classes[corner] != 0 and classes[0, 0] == 0  # outside / inside / outside
    polys = gpd.read_file(tmp_path / "out" / "landuse.gpkg", layer="landuse")
    assert polys.crs.to_epsg() == 32618 and polys.union_all().within(tri.buffer(15))


def test_region_field_one_output_per_value(tmp_path, bundle):
    import geopandas as gpd
    import shapely

    img = make_raster(tmp_path / "img.tif", 80, 60)
    x0, y0 = 500000.0, 4100000.0
    ring = shapely.box(x0 - 500, y0 - 1100, x0 + 1300, y0 + 500).difference(
        shapely.box(x0 - 100, y0 - 700, x0 + 900, y0 + 100))  # around the image, missing it
    frame = gpd.GeoDataFrame({"zone": ["north", "south", "far away", "around"]}, crs="EPSG:32618", geometry=[
        shapely.box(x0, y0 - 250, x0 + 600, y0), shapely.box(x0, y0 - 600, x0 + 600, y0 - 300),
        shapely.box(x0 + 1e5, y0, x0 + 2e5, y0 + 1e5), ring])
    frame.to_file(tmp_path / "zones.gpkg")
    with pytest.raises(ConfigError, match="unknown|not in"):
        run(bundle, [img], tmp_path / "bad", region=str(tmp_path / "zones.gpkg"), region_field="nope")
    report = run(bundle, [img], tmp_path / "out", region=str(tmp_path / "zones.gpkg"), region_field="zone",
                 vectorise=True)
    assert [r["region"]["name"] for r in report["regions"]] == ["north", "south"]
    assert report["skipped_regions"] == []  # "far away" and "around" (its bounding box meets the image) are not read
    assert report["regions_not_read"] == 2  # ... but counted
    for name in ("north", "south"):
        assert (tmp_path / "out" / name / "landuse.tif").exists()
    assert read(tmp_path / "out" / "north" / "landuse.tif")[1]["height"] == 25 + 16  # + a tile's margin below
    polygons = gpd.read_file(tmp_path / "out" / "south" / "landuse.gpkg", layer="landuse")
    assert list(polygons.columns[:2]) == ["region", "class_id"] and set(polygons["region"]) == {"south"}
    import pandas as pd  # the per-region areas as one table, for a spreadsheet or a join to the region layer

    table = pd.read_csv(tmp_path / "out" / "regions.csv")
    assert list(table.columns) == ["region", "folder", "class_id", "class_name", "pixels", "area_ha"]
    assert set(table["region"]) == {"north", "south"} and (tmp_path / "out" / "regions.csvt").is_file()
    north = table[table["region"] == "north"]
    assert north["pixels"].sum() == sum(e["pixels"] for e in report["regions"][0]["classes"])
    np.testing.assert_allclose(north["area_ha"], north["pixels"] * 100 / 1e4)  # 10 m pixels


def test_bbox_in_other_crs_and_output_crs(tmp_path, bundle):
    import geopandas as gpd
    import shapely

    img = make_raster(tmp_path / "img.tif", 100, 100)
    x0, y0 = 500000.0, 4100000.0
    box = gpd.GeoSeries([shapely.box(x0 + 200, y0 - 700, x0 + 600, y0 - 300)], crs="EPSG:32618").to_crs("EPSG:4326")
    report = run(bundle, [img], tmp_path / "out", bbox=tuple(box.total_bounds), bbox_crs="EPSG:4326",
                 vectorise=False)
    classes, profile = read(tmp_path / "out" / "landuse.tif")
    assert profile["crs"].to_epsg() == 32618
    assert 38 <= profile["width"] <= 44 + 7 and 38 <= profile["height"] <= 44 + 7  # + the lattice's start
    assert (classes != 0).all()  # every pixel the box touches is mapped: no nodata rows or columns at its edges
    assert report["tiles"]["tiles_processed"] > 0
    run(bundle, [img], tmp_path / "merc", crs="EPSG:3857", res=20.0, vectorise=False)
    classes, profile = read(tmp_path / "merc" / "landuse.tif")
    assert profile["crs"].to_epsg() == 3857 and profile["transform"].a == 20.0
    assert (classes != 0).mean() > 0.5 and (classes == 0).any()  # the rotated scene does not fill its bounds
    # a bbox without --bbox-crs is in the images' CRS, also when the map is written in another one
    run(bundle, [img], tmp_path / "merc_box", crs="EPSG:3857", res=20.0, vectorise=False,
        bbox=(x0 + 200, y0 - 700, x0 + 600, y0 - 300))
    _, profile = read(tmp_path / "merc_box" / "landuse.tif")
    assert profile["crs"].to_epsg() == 3857 and 18 <= profile["width"] <= 26 + 7 and 18 <= profile["height"] <= 26 + 7


def test_user_errors(tmp_path, bundle):
    import rasterio

    img = make_raster(tmp_path / "img.tif", 40, 40)
    with pytest.raises(BundleError, match="bands"):
        run(make_bundle(bands=4, tile=16), [img], tmp_path / "o1")
    with pytest.raises(ConfigError, match="does not overlap"):
        run(bundle, [img], tmp_path / "o2", bbox=(0, 0, 10, 10))
    with pytest.raises(InputNotFoundError):
        run(bundle, [tmp_path / "missing.tif"], tmp_path / "o3")
    with pytest.raises(InputNotFoundError):
        run(bundle, [img], tmp_path / "o4", region=str(tmp_path / "nope.gpkg"))
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=20, height=20, count=3, dtype="uint8") as dst:
        dst.write(np.ones((3, 20, 20), np.uint8))
    with pytest.raises(InvalidRasterError, match="no CRS"):
        run(bundle, [nocrs], tmp_path / "o5")
    for d in ("o1", "o2", "o3", "o4", "o5"):
        assert not (tmp_path / d).exists()


@pytest.mark.skipif(not (DATA / "rasterio_rgb_byte" / "RGB.byte.tif").exists(), reason="shared data absent")
def test_real_scene_collar_is_nodata(tmp_path):
    import rasterio

    path = DATA / "rasterio_rgb_byte" / "RGB.byte.tif"
    bundle = make_bundle(tile=32)
    report = run(bundle, [path], tmp_path / "out", vectorise=False)
    classes, profile = read(tmp_path / "out" / "landuse.tif")
    with rasterio.open(path) as src:
        collar = (src.read() == 0).all(axis=0)
        assert profile["transform"] == src.transform and profile["crs"] == src.crs
    assert collar.mean() > 0.1
    assert (classes[collar] == 0).all() and (classes[~collar] != 0).all()
    assert report["tiles"]["skipped_no_data"] > 0


def test_overviews_are_computed_per_unit_and_copied_into_the_cogs(tmp_path, bundle, monkeypatch):
    from geocamat.outputs.overviews import mode_2x2, nanmean_2x2

    units = UnitSizes(band_rows=64, block_cols=128)
    img = make_raster(tmp_path / "img.tif", 1100, 300, collar=5)
    report = run(bundle, [img], tmp_path / "units", overlap=0.0, vectorise=False, units=units)
    assert report["plan"]["units"] == 5 * 9
    monkeypatch.setattr("geocamat.outputs.overviews.overview_factors", lambda *a, **k: [])
    run(bundle, [img], tmp_path / "gdal", overlap=0.0, vectorise=False, units=units)  # overviews computed by GDAL
    for name in ("landuse.tif", "confidence.tif"):
        with rasterio.open(tmp_path / "units" / name) as ours, rasterio.open(tmp_path / "gdal" / name) as ref:
            assert ours.overviews(1) == ref.overviews(1) == [2, 4]
            np.testing.assert_array_equal(ours.read(1), ref.read(1))
            full = ours.read(1)
            level2 = ours.read(1, out_shape=(150, 550))  # reads the first overview
            if name == "landuse.tif":
                np.testing.assert_array_equal(level2, mode_2x2(full, ours.nodata))
                agree = (level2 == ref.read(1, out_shape=(150, 550))).mean()
                assert agree > 0.9  # GDAL's MODE breaks ties its own way
            else:
                np.testing.assert_allclose(level2, nanmean_2x2(full[None])[0], rtol=1e-6)
                np.testing.assert_allclose(level2, ref.read(1, out_shape=(150, 550)), rtol=1e-5, atol=1e-6)
    assert_cog(tmp_path / "units" / "landuse.tif")


def test_minimum_mapping_unit_sieves_the_map_and_its_polygons(tmp_path, bundle):
    """--min-polygon-pixels N: no region of the map (one unit) and no polygon (any units) under N pixels."""
    import geopandas as gpd
    import shapely.geometry
    from rasterio.features import shapes

    from geocamat.inference.heads import PixelHead

    class PerPixel(PixelHead):  # each pixel's class is its brightest band: speckle on a noisy image
        outputs = {"probabilities": 3}

        def __call__(self, batch):
            return {"probabilities": torch.softmax(4 * batch[:, :3], dim=1)}

    rng = np.random.default_rng(3)
    img = make_raster(tmp_path / "img.tif", 96, 80)
    with rasterio.open(img, "r+") as dst:
        dst.write(np.clip(dst.read().astype(int) + rng.integers(-60, 60, (3, 80, 96)), 1, 254).astype("uint8"))

    def sizes(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        classes = read(folder / "landuse.tif")[0].astype("int32")
        regions = np.array([shapely.geometry.shape(g).area for g, _ in shapes(classes, connectivity=4)])
        return regions, gpd.read_file(folder / "landuse.gpkg", layer="landuse")["pixels"].to_numpy()

    run(bundle, [img], tmp_path / "raw", min_polygon_pixels=0, head=PerPixel())
    raw_regions, raw_polygons = sizes(tmp_path / "raw")
    assert (raw_regions < 6).sum() > 5 and (raw_polygons < 6).sum() > 5  # the test needs speckle
    run(bundle, [img], tmp_path / "one", min_polygon_pixels=6, head=PerPixel())
    regions, polygons = sizes(tmp_path / "one")
    assert regions.min() >= 6 and polygons.min() >= 6
    cut = run(bundle, [img], tmp_path / "cut", min_polygon_pixels=6, units=UnitSizes(band_rows=24, block_cols=40),
              head=PerPixel())
    assert cut["plan"]["units"] > 4
    assert sizes(tmp_path / "cut")[1].min() >= 6
    # the unit in hectares: 0.06 ha of 10 m pixels is 6 pixels, the same map
    hectares = run(bundle, [img], tmp_path / "ha", min_area_ha=0.06, head=PerPixel())
    assert hectares["settings"]["min_polygon_pixels"] == 6 and hectares["settings"]["min_area_ha"] == 0.06
    assert np.array_equal(read(tmp_path / "ha" / "landuse.tif")[0], read(tmp_path / "one" / "landuse.tif")[0])


def test_a_mapping_unit_in_hectares_is_the_pixels_of_its_area_in_any_crs():
    from pyproj import CRS

    from geocamat.errors import ConfigError
    from geocamat.inference.mapping_unit import pixel_area_m2, unit_pixels
    from geocamat.tasks.landuse.options import PredictOptions

    assert unit_pixels(0.5, CRS.from_epsg(32119).to_wkt(), (28.5, 28.5)) == 7  # 6.16 pixels of 812.25 m2
    assert unit_pixels(0.5, CRS.from_epsg(32618).to_wkt(), (10.0, 10.0)) == 50  # exactly: no pixel more
    us_foot = 1200 / 3937  # EPSG:2264 is in US survey feet
    assert pixel_area_m2(CRS.from_epsg(2264).to_wkt(), (100.0, 100.0)) == pytest.approx((100 * us_foot) ** 2)
    # a degree grid: the pixel (1 arc-second) at the map's centre, as pyproj's geodesic polygon area measures it
    from pyproj import Geod

    wgs84, side = CRS.from_epsg(4326).to_wkt(), 1 / 3600
    for lat in (0.0, 35.8, 60.0):
        lons, lats = [0, side, side, 0], [lat + side / 2, lat + side / 2, lat - side / 2, lat - side / 2]
        geodesic = abs(Geod(ellps="WGS84").polygon_area_perimeter(lons, lats)[0])
        assert pixel_area_m2(wgs84, (side, side), lat) == pytest.approx(geodesic, rel=1e-6)
    with pytest.raises(ConfigError, match=r"--min-area \(hectares\) or --min-polygon-pixels"):
        PredictOptions(min_area=0.5, min_polygon_pixels=9).check()
    with pytest.raises(ConfigError, match="hectares and must be > 0"):
        PredictOptions(min_area=0).check()


def test_a_map_in_feet_gives_its_areas_in_hectares_too(tmp_path, bundle):
    import geopandas as gpd

    img = make_raster(tmp_path / "img.tif", 60, 60)
    report = run(bundle, [img], tmp_path / "ft", crs="EPSG:2264", res=30.0)  # NC State Plane, US survey feet
    foot = 1200 / 3937  # metres
    for entry in report["classes"]:
        assert entry["area"] == entry["pixels"] * 900.0  # square feet
        assert entry["area_ha"] == pytest.approx(entry["pixels"] * 900.0 * foot**2 / 1e4)
    polygons = gpd.read_file(tmp_path / "ft" / "landuse.gpkg")
    assert np.allclose(polygons.area_ha, polygons.geometry.area * foot**2 / 1e4, rtol=1e-6)


LOCAL_CS = ('LOCAL_CS["site grid",LOCAL_DATUM["local",0],UNIT["US survey foot",0.304800609601219],'
            'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')


def test_an_image_in_a_local_engineering_crs_is_mapped_with_its_unit(tmp_path, bundle):
    """A site grid without EPSG code (LOCAL_CS, as survey and drone software write): GDAL gives it no linear unit;
    the pixel-size check and the areas read the unit of its axes (was an internal error, exit 1)."""
    from geocamat.data.crs import metres_per_unit
    from geocamat.preflight import pixel_metres

    assert metres_per_unit(LOCAL_CS) == pytest.approx(0.3048006)
    assert metres_per_unit(LOCAL_CS.replace('UNIT["US survey foot",0.304800609601219]', 'UNIT["metre",1]')) == 1.0
    assert metres_per_unit("EPSG:4326") is None and metres_per_unit("EPSG:32618") == 1.0
    assert pixel_metres(LOCAL_CS, (10.0, 10.0)) == pytest.approx(3.048006)
    img = make_raster(tmp_path / "img.tif", 60, 40, crs=LOCAL_CS, res=32.8)  # ~10 m pixels in feet: the model's
    report = run(bundle, [img], tmp_path / "out")
    assert report["classes"] and all(e["area_ha"] == pytest.approx(e["pixels"] * 32.8**2 * 0.3048006**2 / 1e4)
                                     for e in report["classes"])


def test_a_bbox_map_tiles_as_the_whole_scene_map_does(tmp_path, bundle):
    """A --bbox (or --region) map starts its tiles, and their test-time views, where the whole scene's map does:
    away from its edges it equals the whole map (its tiles started at the bbox's corner: 3-5% of the pixels of a
    region differed, spread over it, and per-district areas did not add up to the whole map's)."""
    import rasterio

    img = make_raster(tmp_path / "img.tif", 120, 100)
    whole = run(bundle, [img], tmp_path / "whole", tta=True, tta_views="spread", overlap=0.75)
    x0, y0 = 500000.0, 4100000.0
    part = run(bundle, [img], tmp_path / "part", tta=True, tta_views="spread", overlap=0.75,
               bbox=(x0 + 21 * 10 + 3, y0 - 83 * 10 - 3, x0 + 101 * 10 + 3, y0 - 13 * 10 - 3))
    assert whole["tiles"]["tiles_processed"] > part["tiles"]["tiles_processed"] > 0
    with (rasterio.open(tmp_path / "whole" / "confidence.tif") as w,
          rasterio.open(tmp_path / "part" / "confidence.tif") as p):
        col, row = (~w.transform) @ (p.transform.c, p.transform.f)
        col, row = round(col), round(row)
        assert col % 4 == 0 and row % 4 == 0  # on the whole map's tile lattice (stride 4 at 16 px, overlap 0.75)
        a, b = w.read(1)[row:row + p.height, col:col + p.width], p.read(1)
    inner = (slice(16, -16), slice(16, -16))  # a tile from the edges: the same tiles cover these pixels
    np.testing.assert_allclose(b[inner], a[inner], rtol=0, atol=1e-5)


def test_results_cut_short_while_moved_into_place_carry_no_report(tmp_path, bundle, monkeypatch):
    """A run killed while its files move into place (after an earlier run's): the folder must not hold the earlier
    run's report.json beside this run's first files, as if complete; the manifest stays for --resume."""
    import geocamat.outputs.raster as raster

    img = make_raster(tmp_path / "img.tif", 40, 40)
    run(bundle, [img], tmp_path / "out", vectorise=False)
    moved, real = [], raster.move_raster

    def killed_after_two(src, dst):
        if len(moved) == 2:
            raise KeyboardInterrupt
        moved.append(dst.name)
        real(src, dst)

    monkeypatch.setattr(raster, "move_raster", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run(bundle, [img], tmp_path / "out", vectorise=False, overwrite=True, overlap=0.75)
    assert moved == ["landuse.tif", "landuse.qml"] and not (tmp_path / "out" / "report.json").exists()
    monkeypatch.setattr(raster, "move_raster", real)
    resumed = run(bundle, [img], tmp_path / "out", vectorise=False, resume=True, overlap=0.75)
    assert resumed["settings"]["overlap"] == 0.75 and (tmp_path / "out" / "report.json").exists()


def test_the_float_rasters_open_in_qgis_as_a_colour_ramp(tmp_path, bundle):
    """confidence.tif, cam.tif and probabilities.tif come with a .qml: viridis over [0, 1] (QGIS opened them as
    stretched grey, and probabilities.tif as an RGB of three classes; checked rendered in QGIS 3.22)."""
    import xml.etree.ElementTree as ET

    img = make_raster(tmp_path / "img.tif", 40, 40)
    report = run(bundle, [img], tmp_path / "out", write_probabilities=True)
    for name in ("confidence", "cam", "probabilities"):
        root = ET.parse(tmp_path / "out" / f"{name}.qml").getroot()
        renderer = root.find("pipe/rasterrenderer")
        assert renderer.get("type") == "singlebandpseudocolor" and renderer.get("band") == "1"
        items = root.findall(".//colorrampshader/item")
        assert [float(i.get("value")) for i in items][::4] == [0.0, 1.0] and len(items) == 5
        assert f"{name}.qml" in report["outputs"] or any(o.endswith(f"{name}.qml") for o in report["outputs"])


def test_a_region_map_equals_the_whole_map_up_to_its_edges(tmp_path, bundle):
    """A region's map reads a tile's margin of context around it: every pixel of the region, edges included, is
    mapped as the whole map maps it (its edges were mapped from cut tiles)."""
    import geopandas as gpd
    import rasterio
    import shapely

    img = make_raster(tmp_path / "img.tif", 120, 100)
    x0, y0 = 500000.0, 4100000.0
    zone = shapely.Polygon([(x0 + 213, y0 - 133), (x0 + 1013, y0 - 233), (x0 + 613, y0 - 833)])
    gpd.GeoDataFrame({"zone": ["z"]}, geometry=[zone], crs="EPSG:32618").to_file(tmp_path / "zone.gpkg")
    run(bundle, [img], tmp_path / "whole", tta=True, tta_views="spread", overlap=0.75)
    run(bundle, [img], tmp_path / "part", tta=True, tta_views="spread", overlap=0.75,
        region=str(tmp_path / "zone.gpkg"), region_field="zone")
    with (rasterio.open(tmp_path / "whole" / "confidence.tif") as w,
          rasterio.open(tmp_path / "part" / "z" / "confidence.tif") as p):
        col, row = (round(v) for v in (~w.transform) @ (p.transform.c, p.transform.f))
        a, b = w.read(1)[row:row + p.height, col:col + p.width], p.read(1)
    inside = np.isfinite(b)
    assert inside.sum() > 2000 and np.isnan(b[0]).all()  # the region, and a margin of nodata around it
    np.testing.assert_allclose(b[inside], a[inside], rtol=0, atol=1e-5)
