"""Scenes of a land-use mosaic that cover the same ground (two dates of one place) get a warning: the map shows
only the first where both have data."""

from __future__ import annotations

import numpy as np
from conftest import write_raster

from geocamat.data.stack import open_stack


def test_two_dates_of_one_place_are_named_in_a_warning(tmp_path):
    arr = np.random.default_rng(0).integers(1, 200, (3, 40, 50), dtype=np.uint8)
    for folder in ("2019", "2021"):
        (tmp_path / folder).mkdir()
        write_raster(tmp_path / folder / "scene.tif", arr)
    write_raster(tmp_path / "east.tif", arr, origin=(500500.0, 4000000.0))  # beside 2019: a mosaic, no warning
    write_raster(tmp_path / "margin.tif", arr, origin=(500900.0, 4000000.0))  # overlaps east by 10 of 50 columns
    tiles = open_stack([str(tmp_path / "2019"), str(tmp_path / "east.tif"), str(tmp_path / "margin.tif")],
                       tmp_path / "w1")
    assert not [n for n in tiles.notes if "same ground" in n]
    dates = open_stack([str(tmp_path / "2019"), str(tmp_path / "2021")], tmp_path / "w2")
    warnings = [n for n in dates.notes if "same ground" in n]
    assert warnings == ["warning: 2019/scene.tif and 2021/scene.tif cover the same ground: the map shows the first "
                        "given where both have data, the other only fills its nodata; to map each date, run each "
                        "on its own"]


def test_where_scenes_overlap_the_first_given_is_read_whatever_the_file_names(tmp_path):
    """b_newer.tif given before a_older.tif: the mosaic shows b_newer's pixels (TorchGeo alone sorts by name)."""
    from geocamat.data.torchgeo_datasets import stack_dataset
    from geocamat.inference.grid import OutputGrid
    from geocamat.inference.reader import MosaicReader

    newer = write_raster(tmp_path / "b_newer.tif", np.full((3, 20, 20), 7, np.uint8))
    older = write_raster(tmp_path / "a_older.tif", np.full((3, 20, 20), 3, np.uint8))
    for given, on_top in (([newer, older], 7), ([older, newer], 3)):
        stack = open_stack([str(p) for p in given], tmp_path / f"w{on_top}")
        assert [p.name for p in stack.paths] == [p.name for p in given]
        dataset = stack_dataset(stack.paths)
        assert [p.split("/")[-1] for p in dataset.index.filepath] == [p.name for p in given]
        import rasterio

        with rasterio.open(newer) as src:
            grid = OutputGrid(src.crs.to_wkt(), src.transform, 20, 20)
        reader = MosaicReader(dataset.index, grid, 3, workers=1)
        try:
            window = reader.read_into(np.empty((3, 20, 20), np.float32), 0, 0)
        finally:
            reader.close()
        assert (window == on_top).all()
