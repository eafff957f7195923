"""Stop a training whose loss became NaN or infinite: its weights are gone, and a model saved from them maps one
class everywhere (a run at ``lr 1e12`` exited 0 and its map was class 1 on every pixel)."""

from __future__ import annotations

import lightning as L

from geocamat.errors import TrainingDivergedError

#: on a GPU the loss is checked every this many steps (and at each epoch's end): one host sync, not one per step
CHECK_EVERY = 50


class FiniteLoss(L.Callback):
    """Raises :class:`TrainingDivergedError` (one line, no model written) once a training loss is not finite."""

    def __init__(self) -> None:
        self.flag = None  # on the loss's device: some loss since the last check was not finite

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        import torch

        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self.flag = bad if self.flag is None else self.flag | bad
        if loss.device.type == "cpu" or (batch_idx + 1) % CHECK_EVERY == 0:
            self.check(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        """The validation losses too: weights grown huge but finite overflow on the validation tiles."""
        import math

        if trainer.sanity_checking:
            return
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val") and "loss" in name and not math.isfinite(float(value)):
                self.diverged(trainer)

    def check(self, trainer) -> None:
        """Raise if a loss since the last check was NaN or infinite."""
        flag, self.flag = self.flag, None
        if flag is not None and bool(flag):
            self.diverged(trainer)

    @staticmethod
    def diverged(trainer) -> None:
        lr = next((g["lr"] for o in trainer.optimizers for g in o.param_groups), None)
        at = f" (learning rate {lr:g})" if lr is not None else ""
        raise TrainingDivergedError(
            f"training diverged: the loss became NaN or infinite in epoch {trainer.current_epoch + 1}{at}; no model "
            "was written: lower the learning rate (--lr), or check the images for NaN/inf values (geocamat info)")
