"""Which pixels a run is scored on, and scoring a map that covers only them."""

import numpy as np

from geocamat.tasks.landuse.scoring import score_map, scored_bounds
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
