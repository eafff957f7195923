"""Which pixels a run is scored on, and scoring a map that covers only them."""

import numpy as np

from geocamat.tasks.landuse.scoring import score_map, scored_blocks, scored_bounds
from tests.conftest import write_raster

ORIGIN, RES = (500000.0, 4000000.0), 10.0


def _sparse_reference(tmp_path):
    """A 40x40 reference, unlabelled (0) but for one patch in a validation block and one in a training block."""
    ref = np.zeros((40, 40), "uint8")
    ref[2:6, 24:28] = 1  # block (0, 2) of a 4x4 checkerboard: even, training
    ref[12:15, 3:7] = 2  # block (1, 0): odd, validation
    return write_raster(tmp_path / "ref.tif", ref, nodata=0), ref


def test_bounds_are_the_box_of_the_scored_labels_grown_by_the_margin(tmp_path):
    path, _ = _sparse_reference(tmp_path)
    x0, y1 = ORIGIN
    # rows 12..14, cols 3..6, grown by 2 px: rows 10..16, cols 1..8
    assert scored_bounds(path, 4, "odd", margin=2) == (x0 + 1 * RES, y1 - 17 * RES, x0 + 9 * RES, y1 - 10 * RES)
    # the margin is clipped to the raster; with even blocks the training patch is the one scored
    assert scored_bounds(path, 4, "even", margin=5) == (x0 + 19 * RES, y1 - 11 * RES, x0 + 33 * RES, y1)
    # no blocks: every labelled pixel
    assert scored_bounds(path, None, "odd", margin=0) == (x0 + 3 * RES, y1 - 15 * RES, x0 + 28 * RES, y1 - 2 * RES)


def test_the_validation_map_covers_the_scored_blocks_that_hold_labels(tmp_path):
    """The blocks a validation map needs: the scored parity's blocks with a labelled pixel (the training blocks
    cost as much to map, for nothing: the whole 10x scene was mapped after training)."""
    path, _ = _sparse_reference(tmp_path)
    x0, y1 = ORIGIN
    assert scored_blocks(path, 4, "odd") == [(x0, y1 - 20 * RES, x0 + 10 * RES, y1 - 10 * RES)]  # block (1, 0)
    assert scored_blocks(path, 4, "even") == [(x0 + 20 * RES, y1 - 10 * RES, x0 + 30 * RES, y1)]  # block (0, 2)
    odd = write_raster(tmp_path / "full.tif", np.ones((41, 43), "uint8"), nodata=0)  # blocks of unequal sides
    boxes = scored_blocks(odd, 4, "odd")
    assert len(boxes) == 8 and sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes) / RES**2 == sum(
        ((r * 4 // 41) + (c * 4 // 43)) % 2 == 1 for r in range(41) for c in range(43))


def test_whole_raster_when_the_labels_cover_most_of_it(tmp_path):
    path = write_raster(tmp_path / "ref.tif", np.ones((40, 40), "uint8"), nodata=0)
    assert scored_bounds(path, 4, "odd", margin=0) is None
    empty = write_raster(tmp_path / "empty.tif", np.zeros((40, 40), "uint8"), nodata=0)
    assert scored_bounds(empty, 4, "odd", margin=0) is None


def test_a_map_of_the_bounds_alone_scores_like_the_whole_map(tmp_path):
    path, ref = _sparse_reference(tmp_path)
    rng = np.random.default_rng(0)
    full = np.where(rng.random((40, 40)) < 0.7, ref, 3 - np.maximum(ref, 1)).astype("uint8")
    full[full == 0] = 1
    whole = score_map(write_raster(tmp_path / "full.tif", full), path, [1, 2], ["a", "b"], blocks=4)
    xmin, _, _, ymax = scored_bounds(path, 4, "odd", margin=2)
    c0, r0 = int((xmin - ORIGIN[0]) / RES), int((ORIGIN[1] - ymax) / RES)
    part = write_raster(tmp_path / "part.tif", full[r0:17, c0:9], origin=(xmin, ymax))
    clipped = score_map(part, path, [1, 2], ["a", "b"], blocks=4)
    assert whole["reference_pixels"] == clipped["reference_pixels"] == 12
    assert clipped["confusion_matrix"] == whole["confusion_matrix"]
    assert clipped["coverage"] == 1.0


def _points(tmp_path, names, rows_cols, crs="EPSG:32617"):
    import geopandas as gpd
    import shapely

    geoms = [shapely.Point(ORIGIN[0] + (c + 0.5) * RES, ORIGIN[1] - (r + 0.5) * RES) for r, c in rows_cols]
    path = tmp_path / "points.gpkg"
    gpd.GeoDataFrame({"cls": names}, geometry=geoms, crs="EPSG:32617").to_crs(crs).to_file(path)
    return path


def test_a_vector_reference_is_scored_by_the_models_class_names(tmp_path):
    mp = np.ones((40, 40), "uint8")
    mp[:, 20:] = 2  # left half class 1 ("field"), right half class 2 ("wood")
    map_path = write_raster(tmp_path / "map.tif", mp)
    # three right, one wrong; given in another CRS
    ref = _points(tmp_path, ["field", "wood", "wood", "field"], [(5, 5), (5, 30), (30, 25), (30, 35)], "EPSG:4326")
    out = score_map(map_path, ref, [1, 2], ["field", "wood"], reference_field="cls")
    assert out["reference_pixels"] == 4 and out["overall_accuracy"] == 0.75
    assert out["confusion_matrix"] == [[1, 1], [0, 2]]  # rows: reference, columns: map
    # a checkerboard over the map: 2x2 blocks, odd = top right and bottom left
    odd = score_map(map_path, ref, [1, 2], ["field", "wood"], reference_field="cls", blocks=2)
    assert odd["reference_pixels"] == 1 and odd["overall_accuracy"] == 1.0


def test_a_reference_numbered_from_0_for_a_model_numbered_from_1_is_named(tmp_path):
    """Codes 0-2 for the model's 1-3: each class compared with its neighbour (OA 0.018 on the NC sample), and only
    a note that code 0 was not scored."""
    mp = np.repeat(np.array([1, 2, 3], "uint8"), [14, 13, 13])[None].repeat(40, axis=0)
    map_path = write_raster(tmp_path / "map.tif", mp)
    out = score_map(map_path, write_raster(tmp_path / "ref.tif", mp - 1), [1, 2, 3], ["a", "b", "c"])
    assert any("reference's codes 0-2 look like the model's 1-3 numbered from 0" in n for n in out["notes"])
    same = score_map(map_path, write_raster(tmp_path / "same.tif", mp), [1, 2, 3], ["a", "b", "c"])
    assert not any("look like" in n for n in same.get("notes", []))


def test_a_vector_reference_with_unknown_classes_or_no_field_is_refused(tmp_path):
    import pytest

    from geocamat.errors import InvalidLabelsError

    map_path = write_raster(tmp_path / "map.tif", np.ones((40, 40), "uint8"))
    ref = _points(tmp_path, ["field", "meadow"], [(5, 5), (6, 6)])
    with pytest.raises(InvalidLabelsError, match=r"does not know \(meadow\).*field, wood"):
        score_map(map_path, ref, [1, 2], ["field", "wood"], reference_field="cls")
    with pytest.raises(InvalidLabelsError, match="need --reference-field: one of cls"):
        score_map(map_path, ref, [1, 2], ["field", "wood"])


def test_macro_f1_counts_a_class_the_map_never_predicts():
    import numpy as np

    from geocamat.metrics import confusion_matrix, summarise

    reference = np.array([1] * 90 + [2] * 10)
    predicted = np.array([1] * 100)  # class 2 never predicted: OA 0.9, but half the classes are lost
    m = summarise(confusion_matrix(reference, predicted, [1, 2, 3]), [1, 2, 3])
    assert m["overall_accuracy"] == 0.9
    f1_first = 2 * 0.9 * 1.0 / 1.9
    assert m["macro_f1"] == round((f1_first + 0.0) / 2, 4)  # class 3 occurs nowhere: not counted
    assert m["confusion_matrix"][1] == [10, 0, 0]  # the row of reference class 2: all 10 mapped as class 1
    assert m["confusion_matrix"][0][0] == 90 and m["confusion_matrix_axes"] == "rows: reference, columns: predicted"


# -- scoring by windows: the numbers of a whole-array score, in bounded memory --------------------------------

def _whole_array_score(map_path, reference, class_ids, *, blocks=None, parity="odd", mask=None, offset=None):
    """The confusion matrix and counts as the whole-array scoring computed them (before windows)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    from geocamat.data.registration import in_label_frame
    from geocamat.data.splits import checkerboard
    from geocamat.metrics import confusion_matrix

    def on_grid(path, like, array=None):
        with rasterio.open(path) as src:
            data = src.read(1, masked=True).astype("float64").filled(np.nan) if array is None else array
            out = np.full((like.height, like.width), np.nan)
            reproject(data, out, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                      dst_transform=like.transform, dst_crs=like.crs, dst_nodata=np.nan,
                      resampling=Resampling.nearest)
            return out

    with rasterio.open(map_path) as m:
        pred = m.read(1, masked=True)
        if offset:
            moved = in_label_frame(np.ma.getmaskarray(pred), offset, True)
            pred = np.ma.masked_array(in_label_frame(np.asarray(pred), offset, 0), mask=moved)
        ref = on_grid(reference, m)
        keep = np.isfinite(ref)
        if blocks:
            with rasterio.open(reference) as r:
                board = checkerboard((r.height, r.width), blocks, parity).astype("float64")
            keep &= on_grid(reference, m, board) == 1
        if mask is not None:
            mk = on_grid(mask, m)
            keep &= np.isfinite(mk) & (mk != 0)
    mapped = keep & ~np.ma.getmaskarray(pred)
    cm = confusion_matrix(ref[mapped].astype(int), np.asarray(pred)[mapped], class_ids)
    return cm.tolist(), int(keep.sum()), int(mapped.sum())


def _scene(tmp_path):
    """A 53 x 47 map (3 classes, nodata holes) and, on other grids, a reference (20 m, shifted) and a mask."""
    rng = np.random.default_rng(1)
    mp = rng.integers(1, 4, (53, 47)).astype("uint8")
    mp[rng.random((53, 47)) < 0.1] = 0
    ref = rng.integers(0, 4, (29, 26)).astype("uint8")  # 0: unlabelled
    mask = (rng.random((60, 60)) < 0.8).astype("uint8")
    return (write_raster(tmp_path / "map.tif", mp, nodata=0),
            write_raster(tmp_path / "ref.tif", ref, origin=(ORIGIN[0] - 35.0, ORIGIN[1] + 25.0), res=20.0, nodata=0),
            write_raster(tmp_path / "mask.tif", mask, origin=(ORIGIN[0] - 50.0, ORIGIN[1] + 50.0), res=10.0))


def test_checkerboard_part_is_the_window_of_the_checkerboard():
    from rasterio.windows import Window

    from geocamat.data.splits import checkerboard
    from geocamat.tasks.landuse.scoring import checkerboard_part

    for shape, blocks in (((53, 47), 4), ((10, 300), 7), ((1, 1), 2)):
        for parity in ("odd", "even"):
            board = checkerboard(shape, blocks, parity)
            for r0, c0, h, w in ((0, 0, *shape), (3, 5, 7, 11), (shape[0] - 1, shape[1] - 1, 1, 1)):
                if r0 < shape[0] and c0 < shape[1]:
                    part = checkerboard_part(shape, blocks, parity, Window(c0, r0, w, h))
                    np.testing.assert_array_equal(part, board[r0:r0 + h, c0:c0 + w])


def test_a_map_scored_by_windows_scores_as_the_whole_arrays(tmp_path):
    from geocamat.tasks.landuse.scoring import score_map

    map_path, ref, mask = _scene(tmp_path)
    names = ["a", "b", "c"]
    for kw in (dict(), dict(blocks=4), dict(blocks=3, parity="even", mask=mask), dict(blocks=4, offset=(1, -2))):
        cm, reference_pixels, mapped = _whole_array_score(map_path, ref, [1, 2, 3], **kw)
        assert mapped > 100, kw
        for window in (5, 16, 4096):  # windows cutting the map every few pixels, and one window
            out = score_map(map_path, ref, [1, 2, 3], names, window_size=window, **kw)
            assert out["confusion_matrix"] == cm, (kw, window)
            assert out["reference_pixels"] == reference_pixels
            assert out["coverage"] == round(mapped / reference_pixels, 4)


def test_windows_score_alike_across_crs_and_with_vector_references(tmp_path):
    import geopandas as gpd
    import rasterio
    import shapely
    from rasterio.warp import calculate_default_transform, reproject

    from geocamat.tasks.landuse.scoring import score_map

    map_path, ref, _ = _scene(tmp_path)
    with rasterio.open(ref) as src:  # the reference in geographic coordinates
        transform, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        data = np.zeros((h, w), "uint8")
        reproject(src.read(1), data, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                  dst_crs="EPSG:4326", src_nodata=0, dst_nodata=0)
    geo = tmp_path / "ref_4326.tif"
    with rasterio.open(geo, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=transform, nodata=0) as dst:
        dst.write(data, 1)
    polygons = [shapely.box(ORIGIN[0] + x, ORIGIN[1] - y - 95, ORIGIN[0] + x + 125, ORIGIN[1] - y)
                for x, y in ((0, 0), (60, 40), (200, 130), (330, 400))]
    layer = tmp_path / "ref.gpkg"
    gpd.GeoDataFrame({"cls": ["a", "c", "b", "a"]}, geometry=polygons, crs="EPSG:32617").to_file(layer)
    for reference, kw in ((geo, dict(blocks=4)), (layer, dict(reference_field="cls", blocks=2))):
        scores = [score_map(map_path, reference, [1, 2, 3], ["a", "b", "c"], window_size=window, **kw)
                  for window in (6, 4096)]
        assert scores[0]["reference_pixels"] > 50
        assert scores[0] == scores[1], reference


def test_scored_bounds_by_small_windows_are_the_same(tmp_path, monkeypatch):
    from geocamat.tasks.landuse import scoring

    path, _ = _sparse_reference(tmp_path)
    cases = ((4, "odd", 2), (4, "even", 5), (None, "odd", 0))
    expected = [scoring.scored_bounds(path, b, p, margin=m) for b, p, m in cases]
    monkeypatch.setattr(scoring, "SCORE_WINDOW", 7)
    assert [scoring.scored_bounds(path, b, p, margin=m) for b, p, m in cases] == expected
    assert expected[0] is not None


def test_a_finer_reference_is_scored_by_its_majority_class_in_each_map_pixel(tmp_path):
    # 2.5 m reference under a 10 m map: in each 4 x 4 block 12 pixels of class 1 and a centre 2 x 2 of class 2
    block = np.ones((4, 4), np.uint8)
    block[1:3, 1:3] = 2
    ref = write_raster(tmp_path / "ref.tif", np.tile(block, (16, 16)), res=2.5, nodata=0)
    ones = write_raster(tmp_path / "ones.tif", np.ones((16, 16), np.uint8), nodata=0)
    twos = write_raster(tmp_path / "twos.tif", np.full((16, 16), 2, np.uint8), nodata=0)
    assert score_map(ones, ref, [1, 2], ["a", "b"])["overall_accuracy"] == 1.0
    assert score_map(twos, ref, [1, 2], ["a", "b"])["overall_accuracy"] == 0.0


def test_class_codes_kept_as_text_are_codes_and_unknown_point_codes_are_told(tmp_path):
    """'1', '2' in a text field (as shapefiles and CSVs often keep codes) score as codes 1, 2, not as names; points
    of a code the model lacks are left out with a note, as reference pixels are."""
    mp = np.ones((40, 40), "uint8")
    mp[:, 20:] = 2
    map_path = write_raster(tmp_path / "map.tif", mp)
    ref = _points(tmp_path, ["1", "2", " 2", "1", "9"], [(5, 5), (5, 30), (30, 25), (30, 35), (20, 20)])
    out = score_map(map_path, ref, [1, 2], ["field", "wood"], reference_field="cls")
    assert out["reference_pixels"] == 4 and out["confusion_matrix"] == [[1, 1], [0, 2]]
    assert out["notes"] == ["note: 1 reference points of codes 9 (none of the model's classes) are not scored"]
