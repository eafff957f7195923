"""`geocamat train --scenes` and `geocamat evaluate --scenes` on a tiny class-folder dataset."""

import json

from click.testing import CliRunner

from cli.main import cli
from tests.conftest import scene_folder


def test_train_and_evaluate_scene_folder(tmp_path):
    scenes = scene_folder(tmp_path / "scenes")
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--scenes", str(scenes), "--set", "image_size=16", "--epochs", "4",
                                      "--arch", "camnet-xs", "--batch-size", "4", "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["held_out"]["n"] == 8  # half of each class held out
    assert {"clean", "cloud30"} <= set(metrics["robustness"]["accuracy"])
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(run / "model.geocamat"), "--scenes", str(scenes)])
    assert result.exit_code == 0, result.output
    assert "clean" in result.output and "8 scenes: the held-out part" in result.output
