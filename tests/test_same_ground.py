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
