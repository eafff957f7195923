"""The main job on the embedded sample, checked as a GIS user would (rasterio/geopandas/XML)."""

import json
import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import rasterio
from click.testing import CliRunner

from cli.main import cli
from tests.conftest import SAMPLES


def test_nc_sample_train_predict_outputs(tmp_path):
    run, out = tmp_path / "run", tmp_path / "map"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(SAMPLES / "nc_landsat.yaml"), "--out", str(run), "--epochs", "1",
                                 "--set", "samples_per_epoch=400", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation_map"]["n"] > 50000 and 0 <= metrics["validation_map"]["overall_accuracy"] <= 1
    # strata.tif sits one pixel down-right of the bands; the check on the training tiles finds it
    assert metrics["label_registration"]["offset_px"] == [1, 1]
    assert metrics["validation_map"]["map_offset_px"] == [1, 1] and "validation_map_image_frame" in metrics
    bands = sorted(str(p) for p in (SAMPLES / "nc_landsat").glob("lsat7_2000_*.tif"))
    # --no-tta: the sample's recipe averages 8 transforms per tile; this test checks the outputs, not accuracy,
    # and the dense default overlap (0.75) already means 4x the tiles of the validation map
    result = runner.invoke(cli, ["predict", "--model", str(run / "model.geocamat"), "--out", str(out), "--quiet",
                                 "--no-tta", *bands])
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "landuse.tif") as m, rasterio.open(bands[0]) as src:
        assert m.crs == src.crs and m.transform == src.transform and m.shape == src.shape
        assert m.nodata is not None and m.dtypes[0] == "uint8"
        assert m.profile.get("tiled") and m.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        colours = m.colormap(1)
        data = m.read(1, masked=True)
        valid_input = src.read_masks(1) > 0
        input_crs = src.crs.to_wkt()
    assert set(np.unique(data.compressed())) <= set(range(1, 8))  # label codes of strata.tif
    assert data.mask[~valid_input].all()  # the collar without valid bands is nodata
    assert colours[5][:3] == (0x1A, 0x78, 0x37)  # forest colour from the sample config
    aux = ET.parse(str(out / "landuse.tif") + ".aux.xml").getroot()
    names = [c.text for c in aux.iter("Category")]
    assert names[5] == "forest" and names[1] == "developed"
    qml = ET.parse(out / "landuse.qml").getroot()
    labels = {e.get("label") for e in qml.iter("paletteEntry")}
    assert labels == {"developed", "agriculture", "herbaceous", "shrubland", "forest", "water", "sediment"}
    polygons = gpd.read_file(out / "landuse.gpkg")
    assert polygons.crs.equals(input_crs)  # polygons in the input CRS
    assert {"class_name", "area"} <= set(polygons.columns)
    report = json.loads((out / "report.json").read_text())
    assert report["tiles"]["tiles_processed"] > 0
