"""Class names as several labellers type them ("Forest", "forest ", "forest"): one class, with a warning, in
land-use labels and references and in detection boxes; a reference's "Forest" is the model's "forest"."""

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from geocamat.data.boxes import load_boxes
from geocamat.data.classes import one_spelling
from geocamat.data.detection_images import image_info
from geocamat.data.labels import Grid, vector_labels
from geocamat.errors import GeocamatWarning
from tests.test_detection_labels import geotiff


def test_names_differing_in_case_or_spaces_are_one_class_spelled_as_most_features_do():
    mapping, warning = one_spelling({"Forest": 12, "forest ": 2, "forest": 1, " water": 4, "water": 1, "Crop": 3})
    assert mapping == {"Forest": "Forest", "forest ": "Forest", "forest": "Forest", " water": "water",
                       "water": "water", "Crop": "Crop"}
    assert "'Forest' (12) = 'forest' (3)" in warning and "water" not in warning  # spaces alone: no warning
    assert one_spelling({" a ": 1, "a": 2}) == ({" a ": "a", "a": "a"}, None)


def test_land_use_labels_and_references_take_one_spelling(tmp_path):
    grid = Grid("EPSG:32617", Affine(10, 0, 500000, 0, -10, 4000000), (20, 20))
    frame = gpd.GeoDataFrame({"cls": ["Forest", "forest ", "Water", "Forest"]},
                             geometry=[box(500000 + 50 * i, 3999850, 500040 + 50 * i, 3999990) for i in range(4)],
                             crs="EPSG:32617")
    frame.to_file(tmp_path / "labels.gpkg")
    with pytest.warns(GeocamatWarning, match=r"'Forest' \(2\) = 'forest' \(1\)"):
        out, names, _ = vector_labels(tmp_path / "labels.gpkg", "cls", grid)
    assert names == {1: "Forest", 2: "Water"}  # was three classes: Forest, Water, forest
    assert set(np.unique(out)) == {-1, 1, 2}
    # a reference scored against a model whose classes are lower case
    out, names, _ = vector_labels(tmp_path / "labels.gpkg", "cls", grid, name_codes={"forest": 5, "water": 6},
                                  field_flag="--reference-field")
    assert set(np.unique(out)) == {-1, 5, 6}  # was refused: "holds classes the model does not know (Forest, ...)"


def test_detection_boxes_take_one_spelling(tmp_path):
    img = geotiff(tmp_path / "a.tif")
    (tmp_path / "a.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\na.tif,1,1,5,5,Tree\na.tif,6,6,9,9,tree\n"
                                    "a.tif,10,10,14,14,Tree \na.tif,2,10,6,14,car\n")
    with pytest.warns(GeocamatWarning, match=r"'Tree' \(2\) = 'tree' \(1\)"):
        (boxes,), names = load_boxes([tmp_path / "a.csv"], [image_info(str(img))])
    assert names == ["Tree", "car"] and boxes.names == ["Tree", "Tree", "Tree", "car"]
    (boxes,), names = load_boxes([tmp_path / "a.csv"], [image_info(str(img))], classes=["tree", "car"])
    assert names == ["tree", "car"] and boxes.names.count("tree") == 3  # a model's classes keep their spelling
