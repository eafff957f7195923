"""The task functions called from Python (a notebook, a script) check what the command line checks: settings made
as dataclasses, one image given as a path, no image at all."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_helpers import make_bundle, make_raster  # noqa: E402

from geocamat.errors import ConfigError  # noqa: E402
from geocamat.settings import build  # noqa: E402
from geocamat.tasks import get_task  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_image_as_a_path_is_one_image_and_no_image_is_refused(tmp_path):
    lu = get_task("landuse")
    image = make_raster(tmp_path / "scene.tif", 40, 30)
    report = lu.predict(make_bundle(tile=16), str(image), tmp_path / "map", lu.PredictOptions(vector=False),
                        progress=False)  # was "no raster found at 's'": the path read one character at a time
    assert report["inputs"]["images"] == [str(image)] and (tmp_path / "map" / "landuse.tif").is_file()
    for task in ("landuse", "detection", "scenes"):
        module = get_task(task)
        with pytest.raises(ConfigError, match="no images given"):  # was an IndexError
            module.predict(make_bundle(tile=16), [], tmp_path / task, module.PredictOptions(), progress=False)
    assert not (tmp_path / "landuse").exists()


def test_settings_made_in_python_are_checked_as_the_command_line_checks_them(tmp_path):
    lu = get_task("landuse")
    image = make_raster(tmp_path / "scene.tif", 40, 30)
    for options, needle in ((lu.PredictOptions(min_area=-1), "--min-area"),  # was recorded as -12 px
                            (lu.PredictOptions(min_polygon_pixels=-3), "--min-polygon-pixels")):
        with pytest.raises(ConfigError, match=needle):
            lu.predict(make_bundle(tile=16), [str(image)], tmp_path / "map", options, progress=False)
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):  # ran 12 s, then torch's ValueError
        lu.train(lu.Config(images=[str(image)], labels=str(image), epochs=-3), tmp_path / "run", progress=False)
    assert not (tmp_path / "map").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("values, needle", [({"score_threshold": 5}, "score_threshold"),
                                            ({"nms_iou": 0}, "nms_iou"), ({"overlap": 1}, "overlap"),
                                            ({"batch_size": 0}, "batch_size")])
def test_detection_scores_and_ious_are_fractions(values, needle):
    """A score threshold of 5 returned no object, silently (from Python and from the command line)."""
    det = get_task("detection")
    with pytest.raises(ConfigError, match=needle):
        build(det.PredictOptions, values, what="detection")
    with pytest.raises(ConfigError, match=needle):
        det.evaluate(make_bundle(tile=16), ["a.tif"], det.EvaluateOptions(reference=["b.csv"], **values),
                     progress=False)


def test_a_map_that_fails_leaves_torch_threads_as_they_were(tmp_path):
    """The engine runs per-tile copies and blending on one thread; a head that fails there (a notebook's own head)
    left the caller's process on one thread."""
    import torch

    from geocamat.inference.heads import PixelHead
    from geocamat.inference.landuse import predict_landuse

    class CutShort(PixelHead):  # a tile's outputs one pixel short: blending fails
        outputs = {"probabilities": 3}

        def __call__(self, batch):
            return {"probabilities": torch.softmax(batch[:, :3, :-1, :-1], dim=1)}

    image = make_raster(tmp_path / "scene.tif", 40, 30)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError):
            predict_landuse(make_bundle(tile=16), [str(image)], tmp_path / "map", head=CutShort(), progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_training_from_python_puts_the_callers_state_back():
    """Threads, warnings filters, Lightning's log levels and its seed variables, as they were before the call."""
    import logging
    import os
    import warnings

    import torch

    from geocamat.tasks.training import caller_state, quiet_lightning, use_threads

    before = (torch.get_num_threads(), list(warnings.filters), logging.getLogger("lightning.pytorch").level,
              os.environ.get("PL_GLOBAL_SEED"))
    with caller_state():
        use_threads(get_task("landuse").Config(num_threads=1))
        quiet_lightning(progress=False)
        os.environ["PL_GLOBAL_SEED"] = "7"
        assert torch.get_num_threads() == 1 and warnings.filters != before[1]
    assert (torch.get_num_threads(), list(warnings.filters), logging.getLogger("lightning.pytorch").level,
            os.environ.get("PL_GLOBAL_SEED")) == before


def test_metric_functions_refuse_what_they_would_silently_miscount():
    import numpy as np

    from geocamat.metrics.classification import confusion_matrix
    from geocamat.metrics.detection import mean_average_precision

    assert confusion_matrix(np.array([], int), np.array([], int), [1, 2]).tolist() == [[0, 0], [0, 0]]  # TypeError
    target = {"boxes": np.array([[0, 0, 4, 4]], float), "labels": np.array([3])}
    pred = {"boxes": np.array([[0, 0, 4, 4]], float), "scores": np.array([0.9]), "labels": np.array([0])}
    with pytest.raises(ValueError, match="target label is 3: labels must be class indexes 0..1"):  # was a NaN mAP
        mean_average_precision([pred], [target], num_classes=2)


def test_evaluate_says_what_predict_says_of_the_images(tmp_path):
    """Images 40x the training values: predict warned, evaluate printed only the (bad) scores."""
    import numpy as np
    import rasterio

    lu = get_task("landuse")
    image = make_raster(tmp_path / "scene.tif", 48, 40, dtype="float32", nodata=None)
    with rasterio.open(image) as src:
        data, profile = src.read(), src.profile
    with rasterio.open(tmp_path / "x40.tif", "w", **profile) as dst:
        dst.write(data * 40)
    profile.update(count=1, dtype="uint8")
    with rasterio.open(tmp_path / "ref.tif", "w", **profile) as dst:
        dst.write(np.arange(48 * 40, dtype="uint8").reshape(1, 40, 48) % 3 + 1)
    lines = []
    lu.evaluate(make_bundle(tile=16), [str(tmp_path / "x40.tif")],
                lu.EvaluateOptions(reference=str(tmp_path / "ref.tif")), progress=False, log=lines.append)
    assert any(line.startswith("warning: the images' values are unlike the training imagery's") for line in lines)
    assert any(" OA " in line for line in lines)


def test_training_lines_are_said_by_rank_0_only(monkeypatch, capsys):
    """Under DDP every rank runs the command: its lines ("4479 training and 1102 validation tiles ...") came twice."""
    from cli.train import _log

    monkeypatch.setenv("LOCAL_RANK", "1")
    _log(quiet=False)("4479 training and 1102 validation tiles")
    monkeypatch.setenv("LOCAL_RANK", "0")
    _log(quiet=False)("said once")
    assert capsys.readouterr().out == "said once\n"


def test_detection_reads_nan_pixels_as_nodata(tmp_path):
    """0.1% of NaN pixels (a float orthophoto without a nodata tag): its statistics were NaN, every pixel
    normalised to NaN, and predict found 0 objects, saying to lower the score threshold."""
    import numpy as np
    import rasterio

    from geocamat.data.detection_images import NormalisedImage, image_band_stats, read_image

    image = make_raster(tmp_path / "rgb.tif", 64, 48, dtype="float32", nodata=None)
    with rasterio.open(image) as src:
        data, profile = src.read(), src.profile
    data[:, 5, 7] = np.nan
    data[1, 20, 30] = np.inf
    with rasterio.open(tmp_path / "nan.tif", "w", **profile) as dst:
        dst.write(data)
    mean, std = image_band_stats(str(tmp_path / "nan.tif"))
    assert np.isfinite(mean).all() and np.isfinite(std).all()
    pixels, valid = read_image(str(tmp_path / "nan.tif"))
    assert not valid[5, 7] and not valid[20, 30] and valid.sum() == 64 * 48 - 2 and np.isfinite(pixels).all()
    assert np.isfinite(NormalisedImage(str(tmp_path / "nan.tif"), mean, std).read(0, 0, 64, 48)).all()


def test_boxes_mostly_off_the_image_are_dropped():
    """A detector sees padding around a small image: a 1 x 1 px image gave 201 boxes, each clipped to its pixel.
    A box cut by the image's edge keeps its part inside when that is at least a quarter of it."""
    from types import SimpleNamespace

    import numpy as np

    from geocamat.inference.detect import RawDetections, merge_raw

    boxes = np.array([[10, 10, 30, 30], [90, 40, 110, 60], [95, 10, 135, 50]], np.float32)  # in, half out, 1/8 in
    raw = RawDetections(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.zeros(3, np.int64), np.zeros(3, bool),
                        np.tile(np.array([0, 0, 100, 100], np.float32), (3, 1)), np.ones(3, np.float32),
                        np.zeros(3, np.int64))
    out = merge_raw(raw, SimpleNamespace(width=100, height=100), windows=1)
    assert out.boxes.tolist() == [[10, 10, 30, 30], [90, 40, 100, 60]]


def test_detection_warns_of_images_of_one_value(tmp_path):
    """A white image: the detector 'found' 462 objects, nothing said."""
    import numpy as np
    import rasterio

    from geocamat.tasks.detection.predicting import value_notes

    image = make_raster(tmp_path / "scene.tif", 40, 30)
    with rasterio.open(image) as src:
        profile = src.profile
    with rasterio.open(tmp_path / "white.tif", "w", **profile) as dst:
        dst.write(np.full((3, 30, 40), 255, "uint8"))
    (note,) = value_notes(make_bundle(tile=16), [tmp_path / "white.tif", image])
    assert note.startswith("warning: 1 image holds one value in every band (white.tif (255, 255, 255))")
    assert value_notes(make_bundle(tile=16), [image]) == []


def test_the_validation_map_continues_the_killed_runs_and_starts_again_when_it_cannot(tmp_path, monkeypatch):
    """A kill during a 10x scene's validation map: --resume restarted the map from zero (overwrite). Now the map
    is resumed; a map of other weights (killed before the last epoch) is started again."""
    import geocamat.inference.landuse as inference
    import geocamat.tasks.landuse.scoring as scoring
    import geocamat.tasks.landuse.workflow as workflow
    from geocamat.errors import ConfigError

    calls = []

    def fake_predict(*args, resume=False, **kwargs):
        calls.append(resume)
        if resume and len(calls) == 1:
            raise ConfigError("cannot resume: the inputs or settings differ from the interrupted run")

    monkeypatch.setattr(inference, "predict_landuse", fake_predict)
    monkeypatch.setattr(scoring, "scored_bounds", lambda *a, **k: None)
    monkeypatch.setattr(workflow, "_score", lambda *a, **k: {"scored": True})
    config = get_task("landuse").Config(images=["a.tif"], labels="b.tif", blocks=None)
    labels = type("Labels", (), {"path": tmp_path / "labels.tif"})()
    stack = type("Stack", (), {"sources": [tmp_path / "a.tif"]})()
    out = workflow._validation_map_metrics(make_bundle(tile=16), tmp_path, stack, labels, config, None, False,
                                           lambda line: None)
    assert out == {"scored": True} and calls == [True, False]


def test_camat_pieces_refuse_options_they_do_not_have_in_their_words():
    import torch

    from geocamat.camat import build_regulariser
    from geocamat.camat.masks import top_area_mask

    with pytest.raises(ValueError, match="camat has no option 'tua' \\(did you mean 'tau'\\?\\)"):  # TypeError
        build_regulariser("camat", tua=0.5)
    with pytest.raises(ValueError, match="cutout option area is a fraction in \\[0, 1\\], not 5"):  # taken
        build_regulariser("cutout", area=5)
    assert type(build_regulariser("random-erasing", area=(0.1, 0.3))).__name__ == "RandomErasing"
    with pytest.raises(ValueError, match="area is a fraction"):  # torch's "selected index k out of range"
        top_area_mask(torch.rand(2, 8, 8), 1.5)
