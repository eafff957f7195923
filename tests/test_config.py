from pathlib import Path

import pytest

from geocamat.config import apply_override, load_config
from geocamat.errors import ConfigError


def test_yaml_paths_resolve_against_the_file_and_flags_override(tmp_path: Path):
    cfg_file = tmp_path / "sub" / "c.yaml"
    cfg_file.parent.mkdir()
    cfg_file.write_text("images: [img/*.tif]\nlabels: lab.tif\nepochs: 3\ncamat: {tau: 0.6}\n")
    cfg = load_config(cfg_file, {"epochs": 5, "camat": {"p": 0.3}}, ["camat.fill=white", "tile_size=24"])
    assert cfg["images"] == [str(tmp_path / "sub" / "img/*.tif")]
    assert cfg["labels"] == str(tmp_path / "sub" / "lab.tif")
    assert cfg["epochs"] == 5 and cfg["tile_size"] == 24
    assert cfg["camat"] == {"tau": 0.6, "p": 0.3, "fill": "white"}


@pytest.mark.parametrize("assignment, message", [
    ("epochs=0", "epochs"), ("purity=2", "purity"), ("regulariser=magic", "regulariser"), ("colour=red", "unknown"),
    ("pixel_loss=-1", "pixel_loss"), ("pixel_loss=lots", "pixel_loss"), ("output=fancy", "output"),
    ("label_offset=sideways", "label_offset"), ("label_offset=[1]", "label_offset"), ("ema_decay=1", "ema_decay"),
    ("ema_decay=-0.5", "ema_decay"), ("cutmix=1.5", "cutmix"), ("cutmix=often", "cutmix"),
])
def test_invalid_settings_are_reported(assignment, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"images": ["a.tif"], "labels": "b.tif"}, [assignment])


def test_missing_images_or_labels():
    with pytest.raises(ConfigError, match="no images"):
        load_config(None, {"labels": "b.tif"})
    with pytest.raises(ConfigError, match="no labels"):
        load_config(None, {"images": ["a.tif"]})


def test_pixel_loss_needs_per_pixel_labels():
    with pytest.raises(ConfigError, match="labels per pixel"):
        load_config(None, {"scenes": "rsscn7/"}, ["pixel_loss=1"])
    assert load_config(None, {"images": ["a.tif"], "labels": "b.tif"}, ["pixel_loss=1"])["pixel_loss"] == 1


def test_defaults_that_depend_on_per_pixel_labels_or_scene_folders():
    pixels = {"images": ["a.tif"], "labels": "b.tif"}
    cfg = load_config(None, pixels)
    assert (cfg["pixel_loss"], cfg["output"]) == (1.0, "dense")
    cfg = load_config(None, pixels, ["pixel_loss=0"])
    assert (cfg["pixel_loss"], cfg["output"]) == (0, "window")  # CAM logits untrained per pixel: window map
    cfg = load_config(None, pixels, ["output=window"])
    assert (cfg["pixel_loss"], cfg["output"]) == (1.0, "window")
    cfg = load_config(None, {"scenes": "rsscn7/"})
    assert (cfg["pixel_loss"], cfg["output"], cfg["arch"]) == (0.0, "window", "resnet18")
    assert load_config(None, pixels)["arch"] == "camnet-xs"
    assert load_config(None, pixels, ["arch=resnet10"])["arch"] == "resnet10"


def test_cutmix_needs_fresh_class_activation_maps():
    base = {"images": ["a.tif"], "labels": "b.tif"}
    with pytest.raises(ConfigError, match="fresh"):
        load_config(None, base, ["cutmix=0.5", "camat.source=cached"])
    assert load_config(None, base, ["cutmix=0.5"])["cutmix"] == 0.5
    assert load_config(None, base, ["cutmix=0.5", "camat.source=cached", "regulariser=none"])["cutmix"] == 0.5


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError):
        apply_override({}, "epochs")
