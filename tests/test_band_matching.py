"""A model's bands found by name in the images: reordered or picked, never silently mixed up."""

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from cli.main import cli
from geocamat.data.stack import match_bands, open_stack
from geocamat.errors import BundleError
from tests.conftest import write_raster


def _named(path, image, names, nodata=-9999.0):
    write_raster(path, image, nodata=nodata)
    with rasterio.open(path, "r+") as dst:
        for b, name in enumerate(names, start=1):
            dst.set_band_description(b, name)
    return path


def test_bands_are_matched_by_name_or_refused(tmp_path, synthetic_scene):
    image = synthetic_scene["array"].copy()
    image[1] += 1000.0
    image[2] += 2000.0  # each band recognisable by its level
    stack = open_stack([str(_named(tmp_path / "rgb.tif", image, ["red", "green", "blue"]))], tmp_path / "w")
    assert match_bands(stack, ["red", "green", "blue"], tmp_path / "w") is stack
    reordered = match_bands(stack, ["blue", "green", "red"], tmp_path / "w")
    assert reordered.band_names == ["blue", "green", "red"] and "reordered by name" in reordered.notes[-1]
    with rasterio.open(reordered.paths[0]) as src:
        data = src.read()
    np.testing.assert_array_equal(data[0, 4:], image[2, 4:])
    np.testing.assert_array_equal(data[2, 4:], image[0, 4:])
    picked = match_bands(stack, ["green"], tmp_path / "w")
    assert picked.band_names == ["green"] and "1 of the images' 3 picked" in picked.notes[-1]
    other = match_bands(stack, ["b1", "b2", "b3"], tmp_path / "w")
    assert other.band_names == ["red", "green", "blue"] and other.notes[-1].startswith("warning: band names differ")
    with pytest.raises(BundleError, match="expects 2 bands"):
        match_bands(stack, ["b1", "b2"], tmp_path / "w")


def test_predict_on_bands_in_another_order_gives_the_same_map(tmp_path, synthetic_scene):
    image = synthetic_scene["array"]
    names = ["red", "green", "blue"]
    trained_on = _named(tmp_path / "a.tif", image, names)
    reversed_file = _named(tmp_path / "b.tif", image[::-1].copy(), names[::-1])
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--images", str(trained_on), "--labels", str(synthetic_scene["labels"]),
                                 "--tile-size", "16", "--blocks", "2", "--epochs", "1", "--arch", "camnet-xs",
                                 "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    maps = {}
    for name, path in (("same", trained_on), ("reversed", reversed_file)):
        result = runner.invoke(cli, ["predict", "--model", str(run / "model.geocamat"), "--out", str(tmp_path / name),
                                     "--quiet", "--no-vector", str(path)])
        assert result.exit_code == 0, result.output
        with rasterio.open(tmp_path / name / "confidence.tif") as src:
            maps[name] = src.read(1)
    assert "reordered by name" in result.output
    np.testing.assert_allclose(maps["reversed"], maps["same"], atol=1e-5)
    result = runner.invoke(cli, ["info", "--check", str(run / "model.geocamat"), str(reversed_file)])
    assert "reordered by name" in result.output, result.output
