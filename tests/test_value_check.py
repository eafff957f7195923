"""Images whose values are unlike the training imagery's (another scaling or product) get a warning."""

import numpy as np

from geocamat.data.value_check import sampled_means, scaling_notes
from tests.conftest import write_raster


def test_a_rescaled_image_is_reported_and_the_training_imagery_is_not(tmp_path, synthetic_scene):
    image = synthetic_scene["array"]  # bands ~50 and ~150 on two halves, -9999 nodata collar
    valid = image[:, 4:, :]
    mean, std = valid.mean(axis=(1, 2)).tolist(), valid.std(axis=(1, 2)).tolist()
    same = synthetic_scene["image"]
    shifted = write_raster(tmp_path / "later_date.tif", np.where(image > -9999, image * 1.1 + 5, image),
                           nodata=-9999.0)  # another date: a little brighter
    rescaled = write_raster(tmp_path / "reflectance.tif", np.where(image > -9999, image / 10000, image),
                            nodata=-9999.0)
    names = ["b1", "b2", "b3"]
    np.testing.assert_allclose(sampled_means([same]), mean, rtol=0.1)  # nodata left out of the sample
    assert scaling_notes([same], names, mean, std) == []
    assert scaling_notes([shifted], names, mean, std) == []
    # a model trained on a few homogeneous polygons has tiny standard deviations: a whole scene is not a "scaling"
    assert scaling_notes([same], names, [m * 1.3 for m in mean], [1.0, 1.0, 1.0]) == []
    notes = scaling_notes([rescaled], names, mean, std)
    assert len(notes) == 1 and notes[0].startswith("warning: the images' values are unlike the training imagery's")
    assert "another product or scaling" in notes[0]
    empty = write_raster(tmp_path / "empty.tif", np.full((3, 32, 32), -9999.0, "float32"), nodata=-9999.0)
    assert scaling_notes([empty], names, mean, std) == []  # nothing valid to compare: other checks speak


def test_one_band_in_another_scaling_is_reported(tmp_path, synthetic_scene):
    """One band delivered x40 (a 0-10,000 product among digital numbers): the median band matched, so nothing was
    said and the map collapsed to one class."""
    image = synthetic_scene["array"]
    valid = image[:, 4:, :]
    mean, std = valid.mean(axis=(1, 2)).tolist(), valid.std(axis=(1, 2)).tolist()
    mixed = image.copy()
    mixed[2] = np.where(image[2] > -9999, image[2] * 40, image[2])
    path = write_raster(tmp_path / "mixed.tif", mixed, nodata=-9999.0)
    (note,) = scaling_notes([path], ["b1", "b2", "b3"], mean, std)
    assert note.startswith("warning: a band of the images is a scaling away") and "b3 (mean" in note
    assert "b1" not in note and "b2" not in note


def test_a_declared_scale_and_offset_is_named_with_the_fix(tmp_path, synthetic_scene):
    """Digital numbers with a declared scale and offset (Landsat Collection 2 style), given to a model trained on
    the scaled values: the warning names them and how to unscale."""
    import rasterio

    image = synthetic_scene["array"]
    valid = image[:, 4:, :]
    mean, std = valid.mean(axis=(1, 2)).tolist(), valid.std(axis=(1, 2)).tolist()
    dn = write_raster(tmp_path / "dn.tif", np.where(image > -9999, (image + 0.2) / 0.01, image), nodata=-9999.0)
    with rasterio.open(dn, "r+") as dst:
        dst.scales, dst.offsets = [0.01] * 3, [-0.2] * 3
    (note,) = scaling_notes([dn], ["b1", "b2", "b3"], mean, std)
    assert "dn.tif declares scale 0.01 and offset -0.2 (read as stored)" in note and "gdal_translate -unscale" in note
    plain = write_raster(tmp_path / "plain.tif", np.where(image > -9999, image / 1000, image), nodata=-9999.0)
    assert "declares" not in scaling_notes([plain], ["b1", "b2", "b3"], mean, std)[0]


def test_values_outside_the_training_range_are_reported(tmp_path):
    """+3 training standard deviations (haze, another calibration: under the 4x of a scaling) and one band out of
    place (bands swapped) gave confident wrong maps with no word; the training imagery itself, none."""
    import torch

    from geocamat.data.value_check import band_range, range_notes

    rng = np.random.default_rng(0)
    mean, std = [100.0, 60.0, 80.0], [10.0, 8.0, 12.0]
    image = np.stack([rng.normal(m, s, (64, 64)) for m, s in zip(mean, std, strict=True)]).astype("float32")
    sample = torch.from_numpy(((image - np.array(mean)[:, None, None]) / np.array(std)[:, None, None])
                              .reshape(3, 16, 4, 16, 4).transpose(1, 3, 0, 2, 4).reshape(-1, 3, 4, 4).copy())
    ranges = band_range(sample, mean, std)
    assert ranges[0][0] < 100 < ranges[0][1] and len(ranges) == 3
    names = ["b1", "b2", "b3"]
    assert range_notes([write_raster(tmp_path / "same.tif", image)], names, ranges) == []
    hazy = image + 3 * np.array(std, "float32")[:, None, None]
    (note,) = range_notes([write_raster(tmp_path / "hazy.tif", hazy)], names, ranges)
    assert note.startswith("warning: ") and "(median band) lie outside the training imagery's 1st-99th" in note
    swapped = image.copy()
    swapped[0] = image[1] + 0  # a band of another mean in the first place
    (note,) = range_notes([write_raster(tmp_path / "swapped.tif", swapped)], names, ranges)
    assert "one band's values lie outside its training range" in note and "band b1" in note
    assert range_notes([write_raster(tmp_path / "old.tif", hazy)], names, None) == []  # a bundle without a range
