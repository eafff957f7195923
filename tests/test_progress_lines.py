"""Progress in log files: whole lines, not a bar's carriage-return redraws."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest


def test_line_progress_writes_lines_with_rate_eta_and_a_last_line():
    from geocamat.inference.telemetry import progress_bar
    from geocamat.progress_lines import LineProgress

    log = io.StringIO()
    bar = progress_bar(total=8, initial=2, unit="tile", desc="map scene.tif", file=log)
    assert isinstance(bar, LineProgress)  # a file is not a terminal
    bar.every = 0.0
    bar.update(2)
    bar.update(4)
    bar.close()
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2, lines
    assert lines[0].startswith("map scene.tif: 4/8 tiles (50%), ") and "tile/s" in lines[0] and "left" in lines[0]
    assert lines[1].startswith("map scene.tif: 8/8 tiles (100%), ") and lines[1].endswith(" s")
    short = LineProgress(total=100, file=log, every=3600)  # work within one interval: no line at all
    short.update(50)
    short.close()
    assert log.getvalue().count("\n") == 2


@pytest.mark.parametrize("seconds, text", [(42, "42 s"), (185, "3 min 05 s"), (3725, "1 h 02 min")])
def test_durations_read_as_people_write_them(seconds, text):
    from geocamat.progress_lines import duration

    assert duration(seconds) == text


def test_training_in_a_log_prints_a_line_per_epoch_and_no_bar(capsys):
    """build_trainer with progress on, stdout not a terminal (pytest's capture): Lightning's bar is off and each
    epoch is one line with its metrics."""
    import lightning as L
    import torch

    from geocamat.tasks.training import build_trainer

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            loss = self.w(batch[0]).pow(2).mean()
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    config = SimpleNamespace(epochs=2, accelerator="cpu", devices=1, strategy="auto", num_nodes=1, precision=None)
    trainer = build_trainer(config, None, [], progress=True, logger=False, enable_checkpointing=False)
    assert trainer.progress_bar_callback is None
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer.fit(Tiny(), data)
    captured = capsys.readouterr()
    err = captured.err
    epochs = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1/2", "epoch 2/2"], err
    assert "train_loss " in epochs[0] and "\r" not in err
    said = captured.out + err  # Lightning's lines that say nothing of the run are dropped
    assert "TPU available" not in said and "Trainer.fit` stopped" not in said, said
    # within an epoch, a line every GEOCAMAT_PROGRESS_SECONDS (a 10x scene's epoch was 10 minutes of silence)
    from geocamat.tasks.epoch_lines import EpochLines

    lines = EpochLines(every=1e-9)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[lines])
    trainer.fit(Tiny(), data)
    inner = [line for line in capsys.readouterr().err.splitlines() if "batches" in line]
    assert inner[0].startswith("epoch 1/1: 1/2 batches (50%), ~") and inner[0].endswith(" left"), inner


def test_a_disabled_bar_counts_and_writes_nothing():
    from geocamat.inference.telemetry import progress_bar

    log = io.StringIO()
    bar = progress_bar(total=4, file=log, disable=True)
    bar.update(4)
    bar.close()
    assert bar.n == 4 and log.getvalue() == ""
