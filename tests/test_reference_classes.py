"""A reference raster that codes the classes otherwise than the model is scored by the classes' names (from a
QGIS style beside it), not code against code; one whose codes are none of the model's is refused."""

import numpy as np
import pytest

from geocamat.errors import InvalidLabelsError
from geocamat.outputs.qml import write_paletted_qml
from geocamat.outputs.style import ClassStyle
from geocamat.tasks.landuse.reference_classes import UNSCORED, reference_codes
from geocamat.tasks.landuse.scoring import score_map
from tests.conftest import write_raster

#: the model's classes, coded alphabetically (as a model trained on vector labels codes them)
IDS, NAMES = [1, 2, 3], ["agriculture", "developed", "forest"]
#: the reference's own codes of the same classes (developed 1, agriculture 2, forest 5)
THEIRS = {"developed": 1, "agriculture": 2, "forest": 5}


def _rasters(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (40, 40))  # index into NAMES
    mapped = np.array(IDS)[truth].astype("uint8")
    mapped[:4] = np.array(IDS)[(truth[:4] + 1) % 3]  # 160 of 1600 pixels wrong
    reference = np.array([THEIRS[n] for n in NAMES])[truth].astype("uint8")
    return (write_raster(tmp_path / "landuse.tif", mapped, nodata=0),
            write_raster(tmp_path / "reference.tif", reference, nodata=0), int((truth == 2).sum()))


def test_a_named_reference_is_scored_by_name_and_an_unnamed_one_by_code(tmp_path):
    map_path, reference, forest = _rasters(tmp_path)
    by_code = score_map(map_path, reference, IDS, NAMES)  # codes 1 and 2 swapped in meaning, 5 unknown
    assert by_code["notes"][1:] == [f"note: {forest} reference pixels of codes 5 (none of the model's classes) are "
                                    "not scored"]
    assert by_code["notes"][0].startswith("note: reference.tif names no classes, so its codes are read as the "
                                          "model's (1 agriculture, 2 developed, 3 forest, ...), which it numbered "
                                          "alphabetically")  # the shuffled legend is told, not only scored
    assert by_code["overall_accuracy"] < 0.5
    write_paletted_qml(reference.with_suffix(".qml"), ClassStyle([1, 2, 5], ["Developed", "agriculture", "forest"],
                                                                 ["#d7191c", "#f4d03f", "#1a7837"]))
    by_name = score_map(map_path, reference, IDS, NAMES)
    assert by_name["overall_accuracy"] == pytest.approx(0.9) and by_name["n"] == 1600
    assert by_name["notes"] == ["note: the reference's classes are matched to the model's by name (from "
                                "reference.qml): Developed 1 -> 2, agriculture 2 -> 1, forest 5 -> 3"]


def test_named_classes_that_are_none_of_the_model_are_not_scored_and_other_names_fall_back_to_codes(tmp_path):
    map_path, reference, _ = _rasters(tmp_path)
    write_paletted_qml(reference.with_suffix(".qml"), ClassStyle([1, 2, 5], ["developed", "agriculture", "wetland"],
                                                                 ["#d7191c", "#f4d03f", "#1a7837"]))
    matching = reference_codes(reference, IDS, NAMES)
    assert matching.lookup == {1: 2, 2: 1, 5: UNSCORED}
    assert matching.notes[1] == "note: reference classes that are none of the model's are not scored: wetland (5)"
    write_paletted_qml(reference.with_suffix(".qml"), ClassStyle([1, 2, 5], ["bâti", "culture", "forêt"],
                                                                 ["#d7191c", "#f4d03f", "#1a7837"]))
    matching = reference_codes(reference, IDS, NAMES)
    assert matching.lookup == {} and "are none of the model's; scored by code" in matching.notes[0]


def test_a_reference_whose_codes_are_none_of_the_models_is_refused(tmp_path):
    map_path, _, _ = _rasters(tmp_path)
    tens = write_raster(tmp_path / "tens.tif", np.full((40, 40), 10, "uint8"), nodata=0)
    with pytest.raises(InvalidLabelsError, match=r"holds class codes 10 and none of the model's \(1 agriculture, "
                                                 r"2 developed, 3 forest\): recode it, or name its classes in a QGIS "
                                                 r"style beside it \(tens.qml\)"):
        score_map(map_path, tens, IDS, NAMES)
