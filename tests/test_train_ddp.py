"""Two-process DDP training on CPU (gloo): the same metrics as one process, one run folder written by rank 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}


def _train(scene: dict, out, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "cli.main", "train", "--images", str(scene["image"]), "--labels",
            str(scene["labels"]), "--out", str(out), "--tile-size", "16", "--blocks", "2", "--epochs", "3",
            "--accelerator", "cpu", "--quiet", "--set", "label_offset=none", "--set", "stride=2", *extra]
    return subprocess.run(args, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_process_ddp_training_matches_one_process(tmp_path, synthetic_scene):
    one = _train(synthetic_scene, tmp_path / "one", "--devices", "1", "--batch-size", "16")
    assert one.returncode == 0, one.stderr[-2000:]
    two = _train(synthetic_scene, tmp_path / "two", "--devices", "2", "--strategy", "ddp", "--batch-size", "8")
    assert two.returncode == 0, two.stderr[-2000:]
    assert "Traceback" not in two.stderr
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["training_tiles"] == b["training_tiles"] and a["validation_tiles"]["n"] == b["validation_tiles"]["n"]
    assert abs(a["validation_map"]["overall_accuracy"] - b["validation_map"]["overall_accuracy"]) <= 0.05
    assert abs(a["validation_tiles"]["accuracy"] - b["validation_tiles"]["accuracy"]) <= 0.05
    assert b["validation_map"]["overall_accuracy"] >= 0.9  # two well separated classes
    # rank 0 alone wrote the run folder; the other rank left nothing beside it
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert {p.name for p in (tmp_path / "two").iterdir()} == {p.name for p in (tmp_path / "one").iterdir()}
    # the learning curve has one row per epoch, metrics reduced over both ranks
    assert b["weights_epoch"] == 2


@pytest.mark.slow
def test_two_process_ddp_detection_shards_training_and_scores_every_validation_tile(tmp_path):
    from test_detection_workflow import scene

    img, csv = scene(tmp_path, n=14, size=240)

    def train(out, *extra):
        args = [sys.executable, "-m", "cli.main", "train", "--task", "detection", "--images", str(img), "--labels",
                str(csv), "--out", str(out), "--tile-size", "64", "--epochs", "2", "--accelerator", "cpu", "--quiet",
                "--set", "backbone=tiny", "--set", "fpn_channels=16", "--set", "anchor_sizes=[8,16,32,64]", *extra]
        return subprocess.run(args, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)

    one = train(tmp_path / "one", "--devices", "1", "--batch-size", "4")
    assert one.returncode == 0, one.stderr[-2000:]
    two = train(tmp_path / "two", "--devices", "2", "--strategy", "ddp", "--batch-size", "2")
    assert two.returncode == 0, two.stderr[-2000:]
    assert "Traceback" not in two.stderr
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["train_tiles"] == b["train_tiles"] and a["val_tiles"] == b["val_tiles"] > 0
    # each rank trains its own half of the tiles: at half the batch, as many steps as one process (+- the last)
    assert abs(b["steps"] - a["steps"]) <= 2
    # rank 0 scored every validation tile (as many labelled objects as one process saw)
    assert b["best_f1"]["n_gt"] == a["best_f1"]["n_gt"] > 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert {p.name for p in (tmp_path / "two").iterdir()} == {p.name for p in (tmp_path / "one").iterdir()}
