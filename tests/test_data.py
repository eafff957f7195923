
import numpy as np
import pytest
import rasterio
import torch

from geocamat.data.labels import UNLABELLED, grid_of_dataset, labels_on_grid
from geocamat.data.splits import block_windows, checkerboard
from geocamat.data.stack import open_stack, resolve_inputs
from geocamat.data.tiles import TileOptions, band_statistics, extract_tiles, normalise
from geocamat.errors import InputNotFoundError, InvalidLabelsError, InvalidRasterError
from tests.conftest import SAMPLES, write_raster

NC = SAMPLES / "nc_landsat"


def test_single_band_files_are_stacked_in_name_order(tmp_path):
    stack = open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path)
    assert stack.band_names == [f"lsat7_2000_{b}" for b in (10, 20, 30, 40, 50, 70)]
    with rasterio.open(stack.paths[0]) as vrt, rasterio.open(NC / "lsat7_2000_70.tif") as b7:
        assert vrt.count == 6 and vrt.transform == b7.transform
        stacked = vrt.read(6)
        original = b7.read(1, masked=True)
    # band 7's own nodata (-32768) becomes NaN; valid values are kept
    assert np.isnan(stacked[original.mask]).all()
    assert np.array_equal(stacked[~original.mask], original.compressed().astype("float32"))


def test_missing_input_and_missing_crs(tmp_path):
    with pytest.raises(InputNotFoundError):
        resolve_inputs([str(tmp_path / "nothing*.tif")])
    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), "uint8"))
    with pytest.raises(InvalidRasterError, match="no CRS"):
        open_stack([str(path)], tmp_path)


def test_raster_labels_in_another_crs_are_reprojected_onto_the_image_grid(tmp_path):
    stack = open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path)
    grid = grid_of_dataset(stack.dataset())
    labels = labels_on_grid(NC / "strata.tif", grid, tmp_path)
    assert labels.class_ids == [1, 2, 3, 4, 5, 6, 7]
    with rasterio.open(labels.path) as out, rasterio.open(NC / "strata.tif") as ref:
        assert out.shape == ref.shape and out.crs.to_epsg() == 32119
        a, r = out.read(1), ref.read(1)
    same = (a == r.round().astype(int)) | (r < 0)
    assert same.mean() > 0.99  # EPSG:3358 and EPSG:32119 share the grid here


def test_vector_labels_names_and_unknown_field(tmp_path):
    stack = open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path)
    grid = grid_of_dataset(stack.dataset())
    polys = labels_on_grid(NC / "landsat96_polygons.shp", grid, tmp_path, field="id")
    assert polys.names[5] == "forest" and not polys.sparse
    points = labels_on_grid(NC / "landsat96_points.shp", grid, tmp_path, field="id")
    assert points.sparse
    with rasterio.open(points.path) as src:
        labelled = (src.read(1) != UNLABELLED).sum()
    assert 500 < labelled <= 1000
    with pytest.raises(InvalidLabelsError, match="not in"):
        labels_on_grid(NC / "landsat96_polygons.shp", grid, tmp_path, field="klass")


def test_labels_outside_the_image_are_rejected(tmp_path, synthetic_scene):
    far = write_raster(tmp_path / "far.tif", np.ones((10, 10), "uint8"), origin=(900000.0, 100000.0), nodata=0)
    stack = open_stack([str(synthetic_scene["image"])], tmp_path)
    with pytest.raises(InvalidLabelsError, match="do not overlap"):
        labels_on_grid(far, grid_of_dataset(stack.dataset()), tmp_path)


def test_checkerboard_blocks_are_disjoint_and_balanced():
    split = checkerboard((443, 489), 4)
    assert abs(split.mean() - 0.5) < 0.01
    for _, _, r0, r1, c0, c1 in block_windows((443, 489), 4):
        assert split[r0:r1, c0:c1].min() == split[r0:r1, c0:c1].max()


def test_tiles_stay_inside_their_blocks_and_get_the_majority_label(tmp_path, synthetic_scene):
    stack = open_stack([str(synthetic_scene["image"])], tmp_path)
    grid = grid_of_dataset(stack.dataset())
    labels = labels_on_grid(synthetic_scene["labels"], grid, tmp_path)
    train, val = extract_tiles(stack, labels, TileOptions(tile_size=16, stride=8, blocks=2, purity=0.9))
    # 2x2 checkerboard of a 96 px scene: blocks of 48 px; training tiles at stride 8 inside 2 blocks
    assert len(train) == 2 * 25  # two 48 px training blocks, 5 x 5 tiles each (the nodata rows are < 50%)
    for tiles in (train, val):
        bright = tiles.images[:, 0].nanmean(dim=(1, 2)) > 100
        assert ((tiles.labels == 1) == bright).all()  # class index 1 = code 2 = bright half
    mean, std = band_statistics(train)
    x = normalise(train.images, mean, std)
    assert np.isfinite(x.numpy()).all()


def test_a_side_of_the_split_without_labels_is_named_in_the_error(tmp_path, synthetic_scene):
    stack = open_stack([str(synthetic_scene["image"])], tmp_path)
    grid = grid_of_dataset(stack.dataset())
    only_val = synthetic_scene["label_array"].copy()
    only_val[:48, :48] = 0  # a 2x2 checkerboard: the even blocks (training) are the top-left and bottom-right
    only_val[48:, 48:] = 0
    labels = labels_on_grid(write_raster(tmp_path / "val_only.tif", only_val, nodata=0), grid, tmp_path)
    with pytest.raises(InvalidLabelsError, match="no label falls in the training blocks .the even blocks"):
        extract_tiles(stack, labels, TileOptions(tile_size=16, stride=8, blocks=2))
    labels = labels_on_grid(synthetic_scene["labels"], grid, tmp_path)
    with pytest.raises(InvalidLabelsError, match="no training tile passed the label thresholds .purity 1.01"):
        extract_tiles(stack, labels, TileOptions(tile_size=16, stride=8, blocks=2, purity=1.01))


def test_tiles_carry_per_pixel_class_indices_with_invalid_pixels_ignored(tmp_path, synthetic_scene):
    stack = open_stack([str(synthetic_scene["image"])], tmp_path)
    labels = labels_on_grid(synthetic_scene["labels"], grid_of_dataset(stack.dataset()), tmp_path)
    train, _ = extract_tiles(stack, labels, TileOptions(tile_size=16, stride=8, blocks=2, purity=0.5))
    assert train.masks.shape == (len(train), 16, 16)
    bright = train.images[:, 0] > 100
    invalid = torch.isnan(train.images).all(dim=1)
    assert (train.masks[invalid] == -1).all()  # the nodata collar is not a class
    assert ((train.masks == 1) == (bright & ~invalid)).all()  # index 1 = code 2 = the bright half, per pixel
    assert (train.masks[~invalid] >= 0).all()


def test_band_selection_by_name_and_number(tmp_path):
    stack = open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path, bands=["lsat7_2000_40", "3"])
    assert stack.band_names == ["lsat7_2000_40", "lsat7_2000_30"]
    with rasterio.open(stack.paths[0]) as vrt, rasterio.open(NC / "lsat7_2000_40.tif") as b4:
        assert vrt.count == 2
        a, ref = vrt.read(1), b4.read(1, masked=True)
    assert np.array_equal(a[~ref.mask], ref.compressed().astype("float32")) and np.isnan(a[ref.mask]).all()
    with pytest.raises(InvalidRasterError, match="not found"):
        open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path, bands=["B8"])
    with pytest.raises(InvalidRasterError, match="does not exist"):
        open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path, bands=[9])


def _masked_rgb(path, how: str):
    """A 40x40 RGB GeoTIFF whose left 10 columns are masked by an alpha band or an internal mask (values 0)."""
    from rasterio.transform import from_origin

    data = np.full((3, 40, 40), 120, np.uint8)
    data[:, :, :10] = 0
    mask = np.full((40, 40), 255, np.uint8)
    mask[:, :10] = 0
    profile = dict(driver="GTiff", width=40, height=40, dtype="uint8", crs="EPSG:32618",
                   transform=from_origin(500000, 4000000, 10, 10))
    if how == "alpha":
        with rasterio.open(path, "w", count=4, photometric="RGB", alpha="YES", **profile) as dst:
            dst.write(np.concatenate([data, mask[None]]))
    else:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", count=3, **profile) as dst:
            dst.write(data)
            dst.write_mask(mask)
    return path


@pytest.mark.parametrize("how", ["alpha", "internal-mask"])
def test_alpha_bands_and_internal_masks_are_nodata(tmp_path, how):
    path = _masked_rgb(tmp_path / f"{how}.tif", how)
    stack = open_stack([str(path)], tmp_path / "work")
    assert stack.num_bands == 3  # an alpha band is a mask, not a band
    with rasterio.open(stack.paths[0]) as src:
        image = torch.from_numpy(src.read())
    assert torch.isnan(image[:, :, :10]).all() and not torch.isnan(image[:, :, 10:]).any()
    valid = stack.valid_mask(image)
    assert not valid[:, :10].any() and valid[:, 10:].all()
    from geocamat.describe import describe

    info = describe(path)  # `geocamat info` says why those pixels will be nodata
    assert info.get("alpha_bands") == [4] if how == "alpha" else "internal mask" in info.get("mask", "")


def test_a_label_raster_with_an_alpha_band_is_read_from_its_band_of_codes(tmp_path):
    from rasterio.enums import ColorInterp

    stack = open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path)
    grid = grid_of_dataset(stack.dataset())
    with rasterio.open(NC / "strata.tif") as src:
        codes, profile = src.read(1), src.profile
    profile.update(count=2, nodata=None, dtype="uint8", alpha="YES")  # GTiff: the last band is alpha
    alpha = np.where(np.arange(codes.shape[1])[None, :] < codes.shape[1] // 2, 255, 0).astype("uint8")
    alpha = np.where(codes > 0, alpha, 0)  # the file's own nodata pixels are outside too
    path = tmp_path / "strata_alpha.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.stack([codes.astype("uint8"), alpha]))
    with rasterio.open(path) as src:
        assert src.colorinterp[1] == ColorInterp.alpha
    labels = labels_on_grid(path, grid, tmp_path)
    assert labels.class_ids == [1, 2, 3, 4, 5, 6, 7]
    with rasterio.open(labels.path) as out:
        read = out.read(1)
    assert (read[:, -5:] == UNLABELLED).all() and (read[:, :5] > 0).mean() > 0.9  # the alpha's right half masked


def test_a_quoted_glob_in_a_folder_named_like_a_pattern_finds_its_files(tmp_path):
    """'odd dir [ü] ,x/*.tif' (a folder whose name holds [ ]): the folder is taken as named, the rest as the
    pattern (was 'no raster found'); a real pattern in the folder part still works."""
    from geocamat.data.paths import expand_paths

    folder = tmp_path / "odd dir [ü] ,x"
    folder.mkdir()
    for name in ("a.tif", "b.tif", "c.txt"):
        (folder / name).write_bytes(b"x")
    assert [p.name for p in expand_paths(f"{folder}/*.tif")] == ["a.tif", "b.tif"]
    assert [p.name for p in expand_paths(f"{tmp_path}/odd*/b.tif")] == ["b.tif"]
