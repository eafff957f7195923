"""Training progress for logs: a line per epoch with its logged metrics, instead of Lightning's bar, when the output
is not a terminal (see :mod:`geocamat.progress_lines`)."""

from __future__ import annotations

import math
import sys
import time

import lightning as L

from geocamat.progress_lines import duration


class EpochLines(L.Callback):
    """One line per training epoch (Lightning's bar when the output is not a terminal): ``epoch 3/30:
    train_loss 2.12, val_map_50 0.168 (2 min 44 s)``."""

    def __init__(self, file=None) -> None:
        self.file = file
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        shown = []
        for key, value in sorted(trainer.callback_metrics.items()):
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(v):
                shown.append(f"{key} {v:.4g}")
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        print(f"epoch {trainer.current_epoch + 1}{epochs}: {', '.join(shown) or 'no metrics logged'} "
              f"({duration(time.monotonic() - self._t0)})", file=self.file or sys.stderr, flush=True)
