"""Lightning module for object detection with object-aware CAMAT (or a baseline) in the training step."""

from __future__ import annotations

import copy
import math
import time

import lightning as L
import torch
from torch import Tensor

from geocamat.camat.detection import ObjectRegulariser
from geocamat.camat.regularisers import frozen_batchnorm_stats
from geocamat.metrics.detection import best_f1_threshold, detection_metrics
from geocamat.models.detectors import build_detector


class DetectionTask(L.LightningModule):
    """Train a :class:`geocamat.models.detectors.Detector`.

    Args:
        model_kwargs: kwargs of :func:`build_detector` (stored in the bundle).
        regulariser: object-aware occlusion applied to each training batch.
        lr: AdamW peak learning rate (linear warm-up over ``lr_warmup`` of the steps, then cosine decay to 1%).
        weight_decay: AdamW weight decay.
        cam_weight: weight of the auxiliary multi-label (CAM head) loss.
        score_threshold: threshold for validation precision/recall.
        lr_warmup: fraction of the steps of linear warm-up (at least one step).
        ema_decay: > 0: keep ``ema_model``, a bias-corrected exponential moving average of the weights and
            buffers, used for validation (and the weights a bundle stores); None: ``1 - 10 / steps`` clipped to
            [0.9, 0.9998], set when training starts; 0: off.
    """

    def __init__(self, model_kwargs: dict, regulariser: ObjectRegulariser | None = None, lr: float = 1e-3,
                 weight_decay: float = 1e-4, cam_weight: float = 1.0, score_threshold: float = 0.3,
                 lr_warmup: float = 0.05, ema_decay: float | None = None) -> None:
        super().__init__()
        self.model = build_detector(**model_kwargs)
        self.lr_warmup, self.ema_decay = lr_warmup, ema_decay
        self.ema_model: torch.nn.Module | None = None
        if ema_decay is None or ema_decay > 0:
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
        self._ema_norm = 0.0
        self.regulariser = regulariser or ObjectRegulariser()
        self.lr, self.weight_decay, self.cam_weight = lr, weight_decay, cam_weight
        self.score_threshold = score_threshold
        self.num_classes = model_kwargs.get("num_classes", 1)
        self._val_preds: list[dict] = []
        self._val_targets: list[dict] = []
        self.val_metrics: dict = {}
        self.step_times: list[float] = []
        self.occluded_fraction: list[float] = []
        self.init_record: dict | None = None  # where the starting weights came from (kept in checkpoints)

    def training_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> Tensor:
        t0 = time.perf_counter()
        images, targets = batch
        boxes = [t["boxes"] for t in targets]
        labels = [t["labels"] for t in targets]
        occluded, mask = self.regulariser(images, boxes, labels, cam_fn=self._cams,
                                          epoch=self.current_epoch, max_epochs=self.trainer.max_epochs or 1)
        if mask is not None:
            self.occluded_fraction.append(float(mask.float().mean()))
        pairs = self.regulariser.pairs_weight
        if pairs > 0 and mask is not None:  # every clean tile, plus the occluded copies as a weighted second forward
            loss = self._loss(images, targets)
            hit = mask.flatten(1).any(dim=1).nonzero().flatten().tolist()
            if hit:
                loss = loss + pairs * self._loss(occluded[hit], [targets[i] for i in hit])
        else:
            loss = self._loss(occluded, targets)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(targets))
        self._t0 = t0
        return loss

    def _loss(self, images: Tensor, targets: list[dict]) -> Tensor:
        """The detector's training loss of a batch: its box/class terms plus the weighted CAM-head term."""
        losses = self.model(images, targets)
        return sum(v for k, v in losses.items() if k != "loss_cam") + self.cam_weight * losses["loss_cam"]

    def _cams(self, images: Tensor) -> Tensor:
        """CAMAT's maps: one extra pass of the body that leaves BatchNorm's running statistics as they were."""
        with frozen_batchnorm_stats(self.model):
            return self.model.class_activation_maps(images)

    def on_train_start(self) -> None:
        if self.ema_decay is None and self.ema_model is not None:
            steps = max(1, int(self.trainer.estimated_stepping_batches))
            self.ema_decay = min(0.9998, max(0.9, 1.0 - 10.0 / steps))

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema_model is not None:
            from geocamat.models.ema import ema_update

            self._ema_norm = ema_update(self.ema_model, self.model, float(self.ema_decay), self._ema_norm)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.step_times.append(time.perf_counter() - self._t0)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep what a resumed run needs to continue as if uninterrupted: the weight average's decay and
        normaliser, the RNG states (augmentation and occlusion draw from them), the starting weights' record."""
        from geocamat.tasks.training import rng_states

        checkpoint["geocamat"] = {"ema_decay": self.ema_decay, "ema_norm": float(self._ema_norm), **rng_states(),
                                  "init_record": self.init_record}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the state saved by :meth:`on_save_checkpoint` (``train --resume``)."""
        from geocamat.tasks.training import restore_rng_states

        state = checkpoint.get("geocamat")
        if not state:
            return
        self.ema_decay, self._ema_norm = state["ema_decay"], float(state["ema_norm"])
        self.init_record = state.get("init_record")
        restore_rng_states(state)

    def final_model(self) -> torch.nn.Module:
        """The weights to keep: the moving average when there is one, else the trained model."""
        return self.ema_model if self.ema_model is not None else self.model

    def validation_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        images, targets = batch
        model = self.final_model()
        model.eval()
        dets = model(images)
        self._val_preds += [{k: v.detach().cpu() for k, v in d.items()} for d in dets]
        self._val_targets += [{k: v.detach().cpu() for k, v in t.items()} for t in targets]

    def on_validation_epoch_end(self) -> None:
        if self._val_targets:
            self.val_metrics = detection_metrics(self._val_preds, self._val_targets, self.num_classes,
                                                 self.score_threshold)
            self.val_metrics["best_f1"] = best_f1_threshold(self._val_preds, self._val_targets, self.num_classes)
            for k in ("map_50", "map", "precision", "recall"):
                self.log(f"val_{k}", float(self.val_metrics[k]), prog_bar=k == "map_50")
        self._val_preds, self._val_targets = [], []

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, self.lr_warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_factor(step: int, steps: int, warmup: float) -> float:
    """Learning-rate multiplier at ``step`` of ``steps``: linear warm-up over ``warmup`` of the steps (at least
    one), then cosine decay from 1 to 0.01 over the remaining steps."""
    warm = max(1, int(round(warmup * steps)))
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, steps - warm))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))
