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
    assert "clean" in result.output and "8 scenes: the images the model did not train on (8 of 16" in result.output
    # a copy with a class left out, an image removed, a hidden macOS copy and a class folder without images:
    # still only images the model did not train on are scored
    import shutil

    from geocamat.bundle import Bundle
    from geocamat.tasks.scenes.workflow import scored_scenes

    copy = tmp_path / "copy"
    shutil.copytree(scenes, copy)
    classes = sorted(p.name for p in copy.iterdir())
    shutil.rmtree(copy / classes[0])
    next(iter(sorted((copy / classes[1]).iterdir()))).unlink()
    (copy / classes[1] / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble: not an image
    (copy / "empty").mkdir()
    bundle = Bundle.load(run / "model.geocamat")
    trained = set(bundle.extra["training_scenes"])
    items, _ = scored_scenes(bundle, copy)
    assert items and not {f"{p.parent.name}/{p.name}" for p, _ in items} & trained
    assert len(items) == sum(1 for c in classes[1:] for f in (copy / c).iterdir()
                             if not f.name.startswith(".") and f"{c}/{f.name}" not in trained)
