"""Images that tile one grid are detected as one mosaic: objects on sheet edges found once, whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from test_detection_inference import fake_detector

from geocamat.data.detection_images import image_info
from geocamat.data.image_mosaic import build_mosaic, mosaic_groups
from geocamat.inference.detect import detect_image

#: objects (one per band for fake_detector): across the vertical sheet edge at x = 150, across the horizontal one
#: at y = 100, on the corner of four sheets, and inside one sheet
OBJECTS = [(130, 20, 170, 50), (20, 85, 50, 115), (140, 90, 165, 112), (200, 150, 230, 180)]


def _write(path: Path, arr: np.ndarray, x0: float, y0: float, crs: str = "EPSG:32617", res: float = 1.0) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype="uint8", crs=crs, transform=from_origin(x0, y0, res, res),
                       photometric="MINISBLACK") as dst:  # four bands of imagery, none of them alpha
        dst.write(arr)
    return str(path)


def _scene() -> np.ndarray:
    arr = np.zeros((len(OBJECTS), 200, 300), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(OBJECTS):
        arr[k, y0:y1, x0:x1] = 255
    return arr


def _sheets(tmp_path: Path, arr: np.ndarray, cut_x: int = 150, cut_y: int = 100) -> list[str]:
    """The scene cut into four sheets (GeoTIFFs on the scene's grid), as orthophotos are delivered."""
    paths = []
    for r0, r1 in ((0, cut_y), (cut_y, arr.shape[1])):
        for c0, c1 in ((0, cut_x), (cut_x, arr.shape[2])):
            paths.append(_write(tmp_path / f"sheet_{r0}_{c0}.tif", arr[:, r0:r1, c0:c1], 500000 + c0, 4000000 - r0))
    return paths


def _detect(source) -> np.ndarray:
    det = detect_image(source, fake_detector, tile_size=128, mean=[0.0] * 4, std=[255.0] * 4, overlap=0.25,
                       score_threshold=0.5)
    return det.boxes[np.lexsort(det.boxes.T[::-1])]


def test_objects_on_sheet_edges_are_found_once_and_whole(tmp_path):
    arr = _scene()
    whole = _detect(_write(tmp_path / "whole.tif", arr, 500000, 4000000))
    np.testing.assert_allclose(whole, np.array(sorted(OBJECTS), np.float32))
    sheets = _sheets(tmp_path, arr)
    infos = [image_info(p) for p in sheets]
    assert mosaic_groups(infos) == [[0, 1, 2, 3]]
    mosaic = build_mosaic(infos)
    assert (mosaic.width, mosaic.height) == (300, 200) and mosaic.info.transform == from_origin(500000, 4000000, 1, 1)
    np.testing.assert_allclose(_detect(mosaic), whole)
    # what detection sheet by sheet gives: pieces (the corner object in four)
    pieces = sum(len(_detect(p)) for p in sheets)
    assert pieces == 1 + 2 + 2 + 4
    # each object is listed under the sheet holding its centre (on an edge: the sheet read on top)
    centres = (whole[:, :2] + whole[:, 2:]) / 2
    held = mosaic.sheet_of(centres[:, 0], centres[:, 1])
    assert [Path(mosaic.sheets[k].path).name for k in held] == [
        "sheet_100_0.tif", "sheet_0_150.tif", "sheet_100_150.tif", "sheet_100_150.tif"]
    assert mosaic.sheet_of(np.array([10.0, -5.0]), np.array([10.0, 300.0])).tolist() == [0, 2]  # outside: nearest


def test_only_images_on_one_grid_that_touch_are_grouped(tmp_path):
    a = np.zeros((1, 50, 50), np.uint8)
    paths = [
        _write(tmp_path / "a.tif", a, 0, 100),             # 0
        _write(tmp_path / "b.tif", a, 50, 100),            # 1: right of a, sharing an edge
        _write(tmp_path / "c.tif", a, 100, 50),            # 2: touches b at a corner only
        _write(tmp_path / "far.tif", a, 1000, 100),        # 3: same grid, far away
        _write(tmp_path / "shift.tif", a, 100.5, 100),     # 4: touches b, half a pixel off the grid
        _write(tmp_path / "crs.tif", a, 0, 50, "EPSG:32618"),   # 5: below a, another CRS
        _write(tmp_path / "res.tif", a, 0, 50, res=2.0),   # 6: below a, another pixel size
        _write(tmp_path / "over.tif", a, 25, 75),          # 7: overlaps a and b
    ]
    groups = mosaic_groups([image_info(p) for p in paths])
    assert groups == [[0, 1, 2, 7], [3], [4], [5], [6]]


def test_an_l_shaped_mosaic_reads_holes_as_invalid_and_skips_their_windows(tmp_path):
    arr = _scene()
    sheets = _sheets(tmp_path, arr)
    del sheets[3]  # no bottom-right sheet
    mosaic = build_mosaic([image_info(p) for p in sheets])
    data, valid = mosaic.read((140, 90, 40, 40))
    assert valid[:10].all() and valid[10:, :10].all() and not valid[10:, 10:].any()
    assert (data[2][valid] > 0).any() and (data[:, 10:, 10:] == 0).all()
    assert not mosaic.covers(160, 110, 100, 80) and mosaic.covers(140, 90, 40, 40)
    found = detect_image(mosaic, fake_detector, tile_size=64, mean=[0.0] * 4, std=[255.0] * 4, overlap=0.25)
    full = detect_image(build_mosaic([image_info(p) for p in _sheets(tmp_path, arr)]), fake_detector, tile_size=64,
                        mean=[0.0] * 4, std=[255.0] * 4, overlap=0.25)
    assert found.windows < full.windows


def test_images_of_the_same_ground_are_never_mosaicked(tmp_path):
    """Two dates of one place (on one grid) and a sheet beside them: a mosaic would hide one date under the
    other, so each stays alone; sheets that overlap by a margin still mosaic."""
    from geocamat.data.image_mosaic import stacked_images

    a = np.zeros((1, 50, 50), np.uint8)
    paths = [_write(tmp_path / "2019.tif", a, 0, 100), _write(tmp_path / "2021.tif", a, 0, 100),
             _write(tmp_path / "east.tif", a, 50, 100), _write(tmp_path / "margin.tif", a, 90, 100)]
    infos = [image_info(p) for p in paths]
    assert stacked_images(infos) == [0, 1]
    assert mosaic_groups(infos) == [[0], [1], [2, 3]]  # east and margin overlap by 10 of 50 columns: sheets
