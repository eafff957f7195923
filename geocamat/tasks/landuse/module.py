"""Land-use tile classification trained with CAMAT (or a baseline regulariser)."""

from __future__ import annotations

import copy

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from geocamat.camat import Regulariser
from geocamat.camat.consistency import consistency_loss, paired_batch
from geocamat.camat.geometry import dihedral
from geocamat.models import build_model
from geocamat.models.ema import ema_update
from geocamat.tasks.landuse.cutmix import cutmix


class TileDataset(Dataset):
    """Normalised tiles in memory as TorchGeo-style samples: tensors only (image, label, index[, mask]).

    ``masks`` (optional) are per-pixel class indices, -1 where a pixel has no label.
    """

    def __init__(self, images: Tensor, labels: Tensor, masks: Tensor | None = None) -> None:
        self.images, self.labels, self.masks = images, labels, masks

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        sample = {"image": self.images[i], "label": self.labels[i], "index": torch.tensor(i)}
        if self.masks is not None:
            sample["mask"] = self.masks[i].long()
        return sample


class LandUseTask(L.LightningModule):
    """Tile classifier: random flips/quarter turns, the regulariser's occlusion, cross-entropy.

    With ``pixel_loss > 0`` and per-pixel masks in the batches, the class activation logits (upsampled to
    the tile) are also trained against each pixel's label, weighted by ``pixel_loss``; pixels the regulariser
    occluded are left out of that term (their content is gone). The tile loss and CAMAT are unchanged.

    Args:
        model_spec: architecture spec for :func:`geocamat.models.build_model`.
        regulariser: CAMAT or a baseline (see :mod:`geocamat.camat`).
        lr: peak learning rate (AdamW, one-cycle schedule).
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing.
        class_weights: optional per-class loss weights.
        pixel_loss: weight of the per-pixel term (0: tile labels only).
        ema_decay: > 0: keep ``ema_model``, an exponential moving average of the model's weights and buffers
            (updated after every optimiser step, bias-corrected so the initial weights fade out); validation
            uses it, and the bundle should take its weights.
        cutmix: probability that a batch is mixed with :func:`geocamat.tasks.landuse.cutmix.cutmix` (after the flips,
            before the regulariser's occlusion); the tile loss weights both tiles' labels by their share of
            the central label ``footprint``.
        footprint: side of the central square that decides a tile's class, as a share of the tile.
    """

    def __init__(self, model_spec: dict, regulariser: Regulariser, lr: float = 2e-3, weight_decay: float = 1e-4,
                 label_smoothing: float = 0.05, class_weights: list[float] | None = None,
                 pixel_loss: float = 0.0, ema_decay: float = 0.0, cutmix: float = 0.0,
                 footprint: float = 1.0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["regulariser"])
        self.model = build_model(model_spec)
        self.ema_model = None
        self._ema_norm = 0.0
        if ema_decay > 0:
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
        self.regulariser = regulariser
        self.class_weights = torch.tensor(class_weights) if class_weights else None

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        weight = self.class_weights.to(logits) if self.class_weights is not None else None
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=self.hparams.label_smoothing,
                               ignore_index=-1)

    def _pixel_loss(self, features: Tensor, mask: Tensor) -> Tensor:
        """Cross-entropy of the upsampled class activation logits against per-pixel labels (-1 ignored)."""
        up = F.interpolate(self.model.cam_logits(features), size=mask.shape[-2:], mode="bilinear", align_corners=False)
        if not bool((mask >= 0).any()):
            return up.sum() * 0.0
        return self._loss(up, mask)

    def on_train_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        try:
            self.regulariser.reserve(len(dataset))  # sample ids index this dataset
        except TypeError:  # no length (an iterable dataset): the cache sizes itself from the ids it sees
            pass

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x, y, ids = batch["image"], batch["label"], batch["index"]
        turns = torch.randint(0, 8, (x.shape[0],), device=x.device)
        clean = dihedral(x, turns)
        mask = dihedral(batch["mask"], turns) if "mask" in batch else None
        pasted, share = y, 1.0
        if self.hparams.cutmix > 0 and float(torch.rand(())) < self.hparams.cutmix:
            clean, mask, pasted, share = cutmix(clean, mask, y, self.hparams.footprint)
        x = self.regulariser(clean, y, model=self.model, epoch=self.current_epoch,
                             max_epochs=self.trainer.max_epochs, sample_ids=ids, transforms=turns)
        occluded = self.regulariser.occluded
        pairs = self.regulariser.consistency > 0 and occluded is not None and bool(occluded.any())
        if pairs:  # clean + occluded pairs: every sample clean, plus the occluded copies of the chosen ones
            n = clean.shape[0]
            x_in, index = paired_batch(clean, x, occluded)
            y, pasted = torch.cat([y, y[index]]), torch.cat([pasted, pasted[index]])
            if mask is not None:
                mask = torch.cat([mask, mask[index]])
            clean = torch.cat([clean, clean[index]])
            x = x_in
        features = self.model.forward_features(x)
        logits = self.model.head(features.mean(dim=(2, 3)))
        head_features = features[:n] if pairs else features
        self.regulariser.observe(head_features.detach(), self.model.head, y[:len(ids)], sample_ids=ids,
                                 transforms=turns)
        loss = self._loss(logits, y) if share >= 1.0 else (
            share * self._loss(logits, y) + (1.0 - share) * self._loss(logits, pasted))
        if pairs:
            consistency = consistency_loss(logits, n, index)
            self.log("train_consistency", consistency, on_step=False, on_epoch=True, sync_dist=True)
            loss = loss + self.regulariser.consistency * consistency
        if self.hparams.pixel_loss > 0 and mask is not None:
            mask = mask.masked_fill((x != clean).any(dim=1), -1)
            pixel = self._pixel_loss(features, mask)
            self.log("train_pixel_loss", pixel, on_step=False, on_epoch=True, sync_dist=True)
            loss = loss + self.hparams.pixel_loss * pixel
        acc = (logits.argmax(dim=1) == y).float().mean()
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train_acc", acc, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Moving average of the weights (:func:`geocamat.models.ema.ema_update`)."""
        if self.ema_model is not None:
            self._ema_norm = ema_update(self.ema_model, self.model, self.hparams.ema_decay, self._ema_norm)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        model = self.ema_model if self.ema_model is not None else self.model
        logits = model(batch["image"])
        loss = self._loss(logits, batch["label"])
        acc = (logits.argmax(dim=1) == batch["label"]).float().mean()
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val_acc", acc, on_epoch=True, prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep what a resumed run needs to continue as if uninterrupted: the EMA normaliser, the RNG states and
        the regulariser's state (cached CAMAT maps, merged across DDP ranks)."""
        from geocamat.tasks.training import rng_states

        # tensors and numbers only: the checkpoint loads with torch.load(weights_only=True)
        checkpoint["geocamat"] = {"ema_norm": float(self._ema_norm), **rng_states(),
                                  "regulariser": self._regulariser_state()}

    def _regulariser_state(self) -> dict:
        """The regulariser's state; under DDP (every rank saves) each rank's, merged (each saw its own shard)."""
        state = self.regulariser.state_dict()
        world = self._trainer.world_size if self._trainer is not None else 1
        if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            states: list = [None] * world
            torch.distributed.all_gather_object(states, state)
            state = type(self.regulariser).merge_states(states)
        return state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the state saved by :meth:`on_save_checkpoint` (``train --resume``)."""
        from geocamat.tasks.training import restore_rng_states

        state = checkpoint.get("geocamat")
        if not state:
            return
        self._ema_norm = float(state["ema_norm"])
        restore_rng_states(state)
        self.regulariser.load_state_dict(state.get("regulariser", {}))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr,
                                                    total_steps=max(1, int(self.trainer.estimated_stepping_batches)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class EpochHistory(L.Callback):
    """Collects the logged metrics of every epoch (after validation) for the learning-curve plot."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch}
        row.update({k: round(float(v), 5) for k, v in trainer.callback_metrics.items()})
        self.rows.append(row)

    def state_dict(self) -> dict:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))

    def best_epoch(self) -> int | None:
        """The epoch with the lowest validation loss."""
        scored = [r for r in self.rows if "val_loss" in r]
        return min(scored, key=lambda r: r["val_loss"])["epoch"] if scored else None
