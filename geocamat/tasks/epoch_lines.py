"""Training progress for logs: a line per epoch with its logged metrics, instead of Lightning's bar, when the output
is not a terminal (see :mod:`geocamat.progress_lines`)."""

from __future__ import annotations

import math
import sys
import time

import lightning as L

from geocamat.progress_lines import duration, line_seconds


class EpochLines(L.Callback):
    """One line per training epoch (Lightning's bar when the output is not a terminal): ``epoch 3/30:
    train_loss 2.12, val_map_50 0.168 (2 min 44 s)``; within a long epoch a line every
    :func:`~geocamat.progress_lines.line_seconds` (``epoch 1/1: 120/2000 batches (6%), ~9 min left``, validation
    likewise): a 10x scene's epoch was 10 minutes of silence."""

    def __init__(self, file=None, every: float | None = None) -> None:
        self.file = file
        self.every = line_seconds() if every is None else every
        self._t0 = self._last = self._stage_t0 = 0.0

    def _say(self, line: str) -> None:
        print(line, file=self.file or sys.stderr, flush=True)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self._last = self._stage_t0 = time.monotonic()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stage_t0 = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._progress(trainer, "batches", batch_idx + 1, trainer.num_training_batches)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            total = trainer.num_val_batches[dataloader_idx] if trainer.num_val_batches else None
            self._progress(trainer, "validation batches", batch_idx + 1, total)

    def _progress(self, trainer, what: str, done: int, total) -> None:
        now = time.monotonic()
        if not trainer.is_global_zero or self.every <= 0 or now - self._last < self.every:
            return
        self._last = now
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        shown = f"{done}"
        if isinstance(total, int | float) and math.isfinite(total) and total > 0:
            left = (now - self._stage_t0) / done * (total - done)
            shown += f"/{int(total)} {what} ({done / total:.0%}), ~{duration(left)} left"
        else:
            shown += f" {what}"
        self._say(f"epoch {trainer.current_epoch + 1}{epochs}: {shown}")

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
        self._say(f"epoch {trainer.current_epoch + 1}{epochs}: {', '.join(shown) or 'no metrics logged'} "
                  f"({duration(time.monotonic() - self._t0)})")
