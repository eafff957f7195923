"""`geocamat train --resume RUN` for detection: a run killed after a checkpoint ends with the uninterrupted model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from test_detection_workflow import scene
from test_train_resume import ENV, kill_after_a_checkpoint

from geocamat.bundle import Bundle
from tests.conftest import ROOT

#: metrics that depend on the machine's timing or count only the resumed run's own steps
TIMING = ("step_time_s", "fit_seconds", "total_seconds", "steps", "occluded_pixel_fraction", "resumed_from_epoch")


def _args(img, csv, out, epochs: int) -> list[str]:
    return [sys.executable, "-m", "cli.main", "train", "--task", "detection", "--images", str(img), "--labels",
            str(csv), "--tile-size", "64", "--epochs", str(epochs), "--out", str(out), "--quiet", "--camat",
            "--set", "backbone=tiny", "--set", "batch_size=2", "--set", "max_tiles=8", "--set", "fpn_channels=16",
            "--set", "anchor_sizes=[8,16,32,64]", "--set", "camat.warmup=0", "--set", "num_threads=1",
            "--accelerator", "cpu", "--devices", "1"]


@pytest.mark.slow
def test_a_killed_detection_run_resumes_to_the_uninterrupted_model(tmp_path):
    img, csv = scene(tmp_path, n=10, size=176)
    epochs = 4
    whole = tmp_path / "whole"
    done = subprocess.run(_args(img, csv, whole, epochs), env=ENV, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (whole / "checkpoints").exists()  # a finished run keeps no checkpoint

    killed = tmp_path / "killed"
    epoch = kill_after_a_checkpoint(_args(img, csv, killed, epochs), tmp_path, "killed", epochs)
    assert not killed.exists()

    resumed = subprocess.run([sys.executable, "-m", "cli.main", "train", "--resume", str(killed), "--quiet"],
                             env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list(tmp_path.glob(".killed.partial-*")) and not (killed / "checkpoints").exists()
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == epoch + 1
    expected = json.loads((whole / "metrics.json").read_text())
    assert {k: v for k, v in metrics.items() if k not in TIMING} == \
        {k: v for k, v in expected.items() if k not in TIMING}
    a, b = Bundle.load(killed / "model.geocamat"), Bundle.load(whole / "model.geocamat")
    for name, value in b.state_dict.items():
        torch.testing.assert_close(a.state_dict[name], value, msg=name)
    # the run folder's settings name their task: the file trains the same detector again
    saved = (killed / "config.yaml").read_text()
    assert saved.startswith("task: detection")
