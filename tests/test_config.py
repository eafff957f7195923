"""Typed settings: YAML, flags and --set resolve into one dataclass per task; each default has one home."""

from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from geocamat.errors import ConfigError
from geocamat.settings import apply_override, build, load_raw
from geocamat.tasks import TASKS, get_task
from geocamat.tasks.landuse.config import LandUseConfig
from geocamat.tasks.scenes.config import SceneConfig


def landuse(values: dict, assignments=()) -> LandUseConfig:
    raw = load_raw(None, values, assignments).values
    return build(LandUseConfig, raw, what="land-use training")


def test_yaml_paths_resolve_against_the_file_and_flags_override(tmp_path: Path):
    cfg_file = tmp_path / "sub" / "c.yaml"
    cfg_file.parent.mkdir()
    cfg_file.write_text("images: [img/*.tif]\nlabels: lab.tif\nepochs: 3\ncamat: {tau: 0.6}\n")
    raw = load_raw(cfg_file, {"epochs": 5, "camat": {"p": 0.3}}, ["camat.fill=white", "tile_size=24"])
    cfg = build(LandUseConfig, raw.values, what="land-use training")
    assert cfg.images == [str(tmp_path / "sub" / "img/*.tif")]
    assert cfg.labels == str(tmp_path / "sub" / "lab.tif")
    assert cfg.epochs == 5 and cfg.tile_size == 24
    assert (cfg.camat.tau, cfg.camat.p, cfg.camat.fill, cfg.camat.warmup) == (0.6, 0.3, "white", 0.2)
    assert raw.explicit == {"epochs", "camat.p", "camat.fill", "tile_size"}


def test_numbers_in_exponent_form_are_numbers(tmp_path: Path):
    """``lr: 1e-3`` (YAML 1.1 reads it as text: 'lr must be a number >= 0, not '1e-3'') in a file and in --set."""
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("images: [a.tif]\nlabels: b.tif\nlr: 1e-3\nweight_decay: 5E-5\ncamat: {tau: 6e-1}\n")
    cfg = build(LandUseConfig, load_raw(cfg_file, {}, ["label_smoothing=2.5e-2"]).values, what="land-use training")
    assert (cfg.lr, cfg.weight_decay, cfg.camat.tau, cfg.label_smoothing) == (1e-3, 5e-5, 0.6, 0.025)
    with pytest.raises(ConfigError, match="lr must be a number"):
        landuse({"images": ["a.tif"], "labels": "b.tif"}, ["lr=1e-3x"])


def test_labels_that_are_not_paths_are_named(tmp_path: Path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("images: [a.tif]\nlabels: {a: 1}\n")  # was "labels not found: .../{'a': 1}"
    with pytest.raises(ConfigError, match="labels must be a path"):
        build(LandUseConfig, load_raw(cfg_file).values, what="land-use training")
    assert build(LandUseConfig, {"images": ["a.tif"], "labels": tmp_path / "b.tif"}, what="t").labels


@pytest.mark.parametrize("assignment, message", [
    ("epochs=0", "epochs"), ("purity=2", "purity"), ("regulariser=magic", "regulariser"), ("colour=red", "colour"),
    ("pixel_loss=-1", "pixel_loss"), ("pixel_loss=lots", "pixel_loss"), ("output=fancy", "output"),
    ("label_offset=sideways", "label_offset"), ("label_offset=[1]", "label_offset"), ("ema_decay=1", "ema_decay"),
    ("ema_decay=-0.5", "ema_decay"), ("cutmix=1.5", "cutmix"), ("cutmix=often", "cutmix"),
    ("camat.fill=glitter", "fill"), ("camat.tau=0", "tau"), ("camat.colour=1", "colour"), ("arch=vgg", "arch"),
    ("tile_size=4", "tile_size"), ("num_workers=-1", "num_workers"), ("num_threads=0", "num_threads"),
    ("num_threads=two", "num_threads"),
])
def test_invalid_settings_are_reported(assignment, message):
    with pytest.raises(ConfigError, match=message):
        landuse({"images": ["a.tif"], "labels": "b.tif"}, [assignment])


def test_missing_images_or_labels():
    with pytest.raises(ConfigError, match="no images"):
        landuse({"labels": "b.tif"})
    with pytest.raises(ConfigError, match="no labels"):
        landuse({"images": ["a.tif"]})


def test_settings_of_another_task_are_refused():
    with pytest.raises(ConfigError, match="pixel_loss.*scene-classification"):
        build(SceneConfig, {"scenes": "rsscn7/", "pixel_loss": 1}, what="scene-classification training")


def test_defaults_that_depend_on_the_task_or_on_pixel_loss():
    pixels = {"images": ["a.tif"], "labels": "b.tif"}
    assert (landuse(pixels).pixel_loss, landuse(pixels).output, landuse(pixels).arch) == (1.0, "dense", "camnet-xs")
    assert (landuse(pixels, ["pixel_loss=0"]).output) == "window"  # CAM logits untrained per pixel: window map
    cfg = landuse(pixels, ["output=window"])
    assert (cfg.pixel_loss, cfg.output) == (1.0, "window")
    assert build(SceneConfig, {"scenes": "rsscn7/"}, what="scenes").arch == "resnet18"
    assert landuse(pixels, ["arch=resnet10"]).arch == "resnet10"


def test_cutmix_needs_fresh_class_activation_maps():
    base = {"images": ["a.tif"], "labels": "b.tif"}
    with pytest.raises(ConfigError, match="fresh"):
        landuse(base, ["cutmix=0.5", "camat.source=cached"])
    assert landuse(base, ["cutmix=0.5"]).cutmix == 0.5
    assert landuse(base, ["cutmix=0.5", "camat.source=cached", "regulariser=none"]).cutmix == 0.5


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError):
        apply_override({}, "epochs")


def _defaults_in_source(root: Path) -> list[str]:
    """Lines of the library that still hold a dict of defaults of settings (the old shapes)."""
    bad = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        for marker in ("DEFAULTS: dict", "TRAIN_DEFAULTS", "PREDICT_DEFAULTS"):
            if marker in text:
                bad.append(f"{path}: {marker}")
    return bad


def test_every_default_has_one_home():
    """CLI options default to None (the dataclass holds the default); no dict of defaults is left anywhere."""
    from click.testing import CliRunner  # noqa: F401  (the commands are click commands)

    from cli.evaluate import evaluate
    from cli.predict import predict
    from cli.train import train

    structural = {"out", "inputs", "task", "images", "model_path", "assignments", "overwrite", "quiet", "as_json",
                  "camat", "no_vector", "map_path"}
    for command in (train, predict, evaluate):
        for param in command.params:
            if param.name in structural:
                continue
            assert param.default is None, f"geocamat {command.name} --{param.name} has its own default"
    assert _defaults_in_source(Path(__file__).resolve().parents[1] / "geocamat") == []
    # every field of every task's settings has a default and a help text
    for name in TASKS:
        task = get_task(name)
        for cls in (task.Config, task.PredictOptions, task.EvaluateOptions):
            for f in fields(cls):
                assert f.default is not MISSING or f.default_factory is not MISSING, (cls, f.name)
                assert f.metadata.get("help"), (cls.__name__, f.name)
    # a setting shared by the tasks through their base class is declared once
    from geocamat.tasks.base import ClassifierSettings, TrainSettings

    classifier = {f.name for f in fields(ClassifierSettings)}
    for name in ("landuse", "scenes"):  # the classifier settings come from ClassifierSettings alone
        assert issubclass(get_task(name).Config, ClassifierSettings)
        assert all(get_task(name).Config.__dataclass_fields__[k] is ClassifierSettings.__dataclass_fields__[k]
                   or k not in classifier for k in classifier)
    assert issubclass(get_task("detection").Config, TrainSettings)


def test_help_shows_each_tasks_default():
    from click.testing import CliRunner

    from cli.main import cli

    out = CliRunner().invoke(cli, ["train", "--help"], terminal_width=200).output
    assert "landuse 16; detection 400" in out
    for fill in ("mean", "zero", "white", "max", "noise", "blur", "mixed"):
        assert fill in out


@pytest.mark.parametrize("config", [SceneConfig, LandUseConfig, "detection"])
def test_every_task_sets_torch_threads_from_num_threads(config):
    """num_threads is a setting of every training task (one run per core when several share a machine)."""
    import torch

    from geocamat.tasks.training import use_threads

    cls = get_task(config).Config if isinstance(config, str) else config
    before = torch.get_num_threads()
    try:
        use_threads(cls(num_threads=1))
        assert torch.get_num_threads() == 1
        use_threads(cls())  # unset: torch's default is left alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
