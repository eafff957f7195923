"""Fill and "not labelled" values the files do not declare (a collar of zeros, 0 in a label raster): a warning,
and `--nodata` / `--label-nodata` to mask them."""

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from cli.main import cli
from geocamat.bundle import Bundle
from geocamat.data.fill_check import fill_share, undeclared_fill_notes
from geocamat.data.stack import open_stack
from tests.conftest import write_raster


def _collared(synthetic_scene, path, nodata=None):
    """The synthetic scene with its -9999 collar (rows 0-3) and a left strip (columns 0-7) set to 0, no nodata."""
    image = synthetic_scene["array"].copy()
    image[:, :4, :] = 0.0
    image[:, :, :8] = 0.0
    return write_raster(path, image, nodata=nodata)


def test_zero_collar_without_nodata_is_reported_and_declared_nodata_is_not(tmp_path, synthetic_scene):
    collared = _collared(synthetic_scene, tmp_path / "collar.tif")
    declared = _collared(synthetic_scene, tmp_path / "declared.tif", nodata=0.0)
    clean = write_raster(tmp_path / "clean.tif", synthetic_scene["array"][:, 4:, :] + 1000.0)
    value, share = fill_share(collared)
    assert value == 0 and share > 0.02  # 12% of the pixels; the sampled windows (edges included) see some
    assert fill_share(declared) == fill_share(clean) == (None, 0.0)
    notes = undeclared_fill_notes([collared, declared, clean])
    assert len(notes) == 1 and "--nodata 0" in notes[0]
    assert notes[0].startswith("warning: collar.tif declares no nodata")
    # one image with 0 in a band but not in every band: not fill
    partial = synthetic_scene["array"][:, 4:, :].copy() + 1000.0
    partial[0, :, :20] = 0.0
    assert fill_share(write_raster(tmp_path / "partial.tif", partial)) == (None, 0.0)


def test_other_fill_values_and_a_zero_collar_beside_a_declared_nodata_are_reported(tmp_path, synthetic_scene):
    """An undeclared -9999 collar, and a 0 collar in a file that declares -9999: both were mapped as forest."""
    image = synthetic_scene["array"].copy()  # its collar (rows 0-3) is -9999
    image[:, :, :8] = -9999.0
    undeclared = write_raster(tmp_path / "fill9999.tif", image)
    zeros = image.copy()
    zeros[zeros == -9999.0] = 0.0
    beside = write_raster(tmp_path / "zero_beside.tif", zeros, nodata=-9999.0)
    first, second = undeclared_fill_notes([undeclared, beside])
    assert first.startswith("warning: fill9999.tif declares no nodata but") and first.endswith("--nodata -9999")
    assert second.startswith("warning: zero_beside.tif declares nodata -9999 but") and "are 0 in every band" in second
    assert undeclared_fill_notes([write_raster(tmp_path / "ok.tif", image, nodata=-9999.0)]) == []


def test_nodata_override_masks_the_fill_and_silences_the_warning(tmp_path, synthetic_scene):
    collared = _collared(synthetic_scene, tmp_path / "collar.tif")
    stack = open_stack([str(collared)], tmp_path / "w1")
    assert any("declares no nodata" in n for n in stack.notes)
    masked = open_stack([str(collared)], tmp_path / "w2", nodata=0.0)
    assert masked.notes == []
    with rasterio.open(masked.paths[0]) as src:
        data = src.read()
    assert np.isnan(data[:, :4]).all() and np.isnan(data[:, :, :8]).all()
    assert not np.isnan(data[:, 4:, 8:]).any()


def test_a_model_trained_with_nodata_keeps_it_and_predict_maps_the_fill_as_nodata(tmp_path, synthetic_scene):
    collared = _collared(synthetic_scene, tmp_path / "collar.tif")
    run, out = tmp_path / "run", tmp_path / "map"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--images", str(collared), "--labels", str(synthetic_scene["labels"]),
                                 "--tile-size", "16", "--blocks", "2", "--epochs", "1", "--arch", "camnet-xs",
                                 "--nodata", "0", "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "declares no nodata" not in result.output
    assert Bundle.load(run / "model.geocamat").extra["image_nodata"] == 0.0
    assert "'image_nodata': 0.0" in runner.invoke(cli, ["info", str(run / "model.geocamat")]).output
    result = runner.invoke(cli, ["predict", "--model", str(run / "model.geocamat"), "--out", str(out), "--quiet",
                                 "--no-vector", str(collared)])
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "landuse.tif") as m:
        data = m.read(1, masked=True)
    assert data.mask[:4].all() and data.mask[:, :8].all() and not data.mask[4:, 8:].any()
    # the same image mapped by a model without it: the collar gets classes, and the user is told
    run2 = tmp_path / "run2"
    result = runner.invoke(cli, ["train", "--images", str(collared), "--labels", str(synthetic_scene["labels"]),
                                 "--tile-size", "16", "--blocks", "2", "--epochs", "1", "--arch", "camnet-xs",
                                 "--out", str(run2), "--quiet"])
    assert result.exit_code == 0 and "declares no nodata" in result.output, result.output
    result = runner.invoke(cli, ["predict", "--model", str(run2 / "model.geocamat"), "--out", str(tmp_path / "m2"),
                                 "--quiet", "--no-vector", str(collared)])
    assert result.exit_code == 0 and "declares no nodata" in result.output, result.output
    with rasterio.open(tmp_path / "m2" / "landuse.tif") as m:
        assert not m.read(1, masked=True).mask.any()
    # --nodata on predict overrides the model's (none here)
    result = runner.invoke(cli, ["predict", "--model", str(run2 / "model.geocamat"), "--out", str(tmp_path / "m3"),
                                 "--quiet", "--no-vector", "--nodata", "0", str(collared)])
    assert result.exit_code == 0 and "declares no nodata" not in result.output, result.output
    with rasterio.open(tmp_path / "m3" / "landuse.tif") as m:
        assert m.read(1, masked=True).mask[:4].all()


def test_an_undeclared_zero_in_a_label_raster_is_named_and_label_nodata_makes_it_unlabelled(tmp_path,
                                                                                             synthetic_scene):
    from geocamat.data.labels import UNLABELLED, grid_of_dataset, labels_on_grid
    from geocamat.errors import InvalidLabelsError

    labels = synthetic_scene["label_array"].copy()
    labels[:, :30] = 0  # "not labelled", as many classified rasters write it, without a nodata tag
    undeclared = write_raster(tmp_path / "undeclared.tif", labels)
    declared = write_raster(tmp_path / "declared.tif", labels, nodata=0)
    grid = grid_of_dataset(open_stack([str(synthetic_scene["image"])], tmp_path / "w").dataset())
    as_class = labels_on_grid(undeclared, grid, tmp_path / "a")
    assert as_class.class_ids == [0, 1, 2] and len(as_class.notes) == 1
    assert "declares no nodata and 0 labels 31%" in as_class.notes[0] and "--label-nodata 0" in as_class.notes[0]
    masked = labels_on_grid(undeclared, grid, tmp_path / "b", nodata=0)
    assert masked.class_ids == [1, 2] and masked.notes == []
    with rasterio.open(masked.path) as src:
        out = src.read(1)
    assert (out[:, :30] == UNLABELLED).all() and (out[:, 30:] != UNLABELLED).all()
    assert labels_on_grid(declared, grid, tmp_path / "c").notes == []
    for fill, dtype in ((65535, "uint16"), (-9999, "int16")):  # other usual fills: trained as class_65535, unsaid
        other = synthetic_scene["label_array"].astype(dtype)
        other[:, :30] = fill
        named = labels_on_grid(write_raster(tmp_path / f"{dtype}.tif", other), grid, tmp_path / dtype)
        assert len(named.notes) == 1 and f"--label-nodata {fill}" in named.notes[0], named.notes
    vector = tmp_path / "labels.gpkg"
    import geopandas as gpd
    from shapely.geometry import box

    gpd.GeoDataFrame({"class": [1]}, geometry=[box(500000, 3999500, 500400, 4000000)], crs="EPSG:32617").to_file(vector)
    with pytest.raises(InvalidLabelsError, match="--label-nodata applies to a label raster"):
        labels_on_grid(vector, grid, tmp_path / "d", "class", nodata=0)


def test_labels_finer_than_the_imagery_are_resampled_by_majority(tmp_path, synthetic_scene):
    from geocamat.data.labels import grid_of_dataset, labels_on_grid

    # 2.5 m labels under the 10 m imagery: in each 4 x 4 block, 12 pixels of class 1 and a 2 x 2 of class 2 at
    # the block's centre, where a nearest-neighbour pick would sample
    block = np.ones((4, 4), np.uint8)
    block[1:3, 1:3] = 2
    fine = np.tile(block, (96, 96))
    path = write_raster(tmp_path / "fine.tif", fine, res=2.5, nodata=0)
    grid = grid_of_dataset(open_stack([str(synthetic_scene["image"])], tmp_path / "w").dataset())
    labels = labels_on_grid(path, grid, tmp_path / "l")
    with rasterio.open(labels.path) as src:
        out = src.read(1)
    assert (out == 1).all()  # the class covering 75% of each image pixel, not the one under its centre
    assert labels.notes and "4x finer" in labels.notes[0] and "majority" in labels.notes[0]
    same = labels_on_grid(synthetic_scene["labels"], grid, tmp_path / "s")
    assert same.notes == []  # labels on the imagery's own grid: nearest, nothing to say


def test_a_jpeg_compressed_image_with_a_nodata_value_and_no_mask_is_warned(tmp_path):
    """JPEG moves the collar's fill values (0 becomes 1, 2, 3 ... near the data): they are read as data."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from geocamat.data.stack import open_stack

    data = np.zeros((3, 64, 64), "uint8")
    data[:, 8:56, 8:56] = 120
    profile = dict(driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32618", nodata=0,
                   transform=from_origin(500000, 4100000, 10, 10), tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(tmp_path / "jpeg.tif", "w", compress="jpeg", **profile) as dst:
        dst.write(data)
    with rasterio.open(tmp_path / "deflate.tif", "w", compress="deflate", **profile) as dst:
        dst.write(data)
    warned = open_stack([tmp_path / "jpeg.tif"], tmp_path / "w1").notes
    assert any("jpeg.tif is JPEG-compressed with nodata 0 and no mask" in n for n in warned), warned
    assert not any("JPEG" in n for n in open_stack([tmp_path / "deflate.tif"], tmp_path / "w2").notes)
