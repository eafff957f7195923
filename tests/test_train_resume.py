"""`geocamat train --resume RUN`: a run killed after a checkpoint continues to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}


# what a resumed run must get back besides the weights and optimiser: the EMA normaliser, the RNG states
# (cutmix draws from them) and, with cached CAMAT maps (which exclude cutmix), the maps
STATES = {"ema+cutmix": ["--cutmix", "0.5"], "cached-maps": ["--camat-source", "cached"]}


def _train_args(scene: dict, out: Path, epochs: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "cli.main", "train", "--images", str(scene["image"]), "--labels",
            str(scene["labels"]), "--out", str(out), "--tile-size", "16", "--blocks", "2", "--epochs", str(epochs),
            "--batch-size", "16", "--accelerator", "cpu", "--devices", "1", "--ema-decay", "0.9", *extra,
            "--quiet", "--set", "label_offset=none", "--set", "stride=2"]


def _checkpoint_epoch(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except Exception:  # not written yet
        return None


def kill_after_a_checkpoint(args: list[str], stage_parent: Path, name: str, epochs: int) -> int:
    """Start ``args`` (a training into ``stage_parent/name``), SIGKILL it once its stage holds a checkpoint of an
    epoch before the last; return that epoch (the test is skipped when the run finishes first)."""
    proc = subprocess.Popen(args, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    epoch = None
    deadline = time.time() + 600
    while epoch is None and proc.poll() is None and time.time() < deadline:
        found = list(stage_parent.glob(f".{name}.partial-*/checkpoints/last.ckpt"))
        epoch = _checkpoint_epoch(found[0]) if found else None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if epoch is None or epoch >= epochs - 1:
        pytest.skip("the run finished before it could be killed (machine too fast for this test)")
    return epoch


def _comparable(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("train_seconds", "resumed_from_epoch"):
        metrics.pop(key, None)
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("state", list(STATES))
def test_a_killed_run_resumes_from_its_checkpoint_with_the_uninterrupted_metrics(tmp_path, synthetic_scene, state):
    epochs = 3
    whole = tmp_path / "whole"
    subprocess.run(_train_args(synthetic_scene, whole, epochs, STATES[state]), check=True, env=ENV, cwd=ROOT,
                   capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    epoch = kill_after_a_checkpoint(_train_args(synthetic_scene, killed, epochs, STATES[state]), tmp_path, "killed",
                                    epochs)
    stage = next(tmp_path.glob(".killed.partial-*"))
    assert not killed.exists() and (stage / "config.yaml").exists()

    # a new run into the same folder would start over; --resume continues (other settings are refused)
    refused = subprocess.run([sys.executable, "-m", "cli.main", "train", "--resume", str(killed), "--epochs", "9"],
                             env=ENV, cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume continues a run" in refused.stderr
    resumed = subprocess.run([sys.executable, "-m", "cli.main", "train", "--resume", str(killed), "--quiet"],
                             env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout == ""  # --quiet: nothing on success
    assert not stage.exists() and (killed / "model.geocamat").exists()
    assert not list(tmp_path.glob(".killed.partial-*"))
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == epoch + 1
    assert _comparable(killed) == _comparable(whole)

    nothing = subprocess.run([sys.executable, "-m", "cli.main", "train", "--resume", str(killed)], env=ENV, cwd=ROOT,
                             capture_output=True, text=True)
    assert nothing.returncode == 2 and "it finished" in nothing.stderr
