"""Per-tile heads: what the model computes for a batch of tiles, as per-pixel arrays the engine blends.

A head declares its outputs (name -> channels per pixel). ``probabilities`` (one channel per class, in the
order of the bundle's classes) is required: the engine derives ``landuse.tif`` (argmax) and
``confidence.tif`` (max) from it, and writes it as ``probabilities.tif`` on request. Every other output
``NAME`` is blended the same way and written as ``NAME.tif`` (e.g. the CamNet heads' ``cam``). A new
per-pixel head (e.g. semantic segmentation) subclasses :class:`PixelHead`; the engine does not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from geocamat.inference.blend import hann_weights


class PixelHead(ABC):
    """Per-pixel outputs of a batch of normalised tiles.

    Attributes:
        outputs: output name -> channels per pixel; must hold ``probabilities`` (one channel per class).
        descriptions: output name -> band descriptions written into its GeoTIFF (default: the name).
    """

    outputs: dict[str, int]
    descriptions: dict[str, list[str]] = {}

    def to(self, device) -> PixelHead:
        """Move what the head computes with to ``device`` (called once before the run)."""
        return self

    def weights(self, tile: int, overlap: float) -> np.ndarray:
        """1-D blending weights of a tile's pixels (the 2-D weights are their outer product)."""
        return hann_weights(tile, overlap)

    @abstractmethod
    def __call__(self, batch) -> dict:
        """Outputs of a batch.

        Args:
            batch: (N, C, T, T) normalised tiles (invalid pixels are 0), on the run's device.

        Returns:
            output name -> (N, channels, T, T) tensor, for every name in :attr:`outputs`.
        """

    def extras(self) -> list[str]:
        """Outputs besides ``probabilities``, in the order they are stored."""
        return [name for name in self.outputs if name != "probabilities"]


class CamNetHead(PixelHead):
    """A CamNet's class probabilities and the CAM of its predicted class, per pixel (see
    :func:`geocamat.models.camnet.tile_probabilities`).

    Args:
        model: a :class:`geocamat.models.camnet.CamNet` in eval mode.
        tta: average each tile over its eight flips/quarter turns.
        footprint: the central fraction of a training tile its label described (blending weights).
    """

    #: ``model.output`` this head serves
    mode = ""
    descriptions = {"cam": ["CAM of the class"]}

    def __init__(self, model, tta: bool = False, footprint: float = 1.0) -> None:
        if getattr(model, "output", "window") != self.mode:
            raise ValueError(f"{type(self).__name__} needs a CamNet with output {self.mode!r}")
        self.model, self.tta, self.footprint = model, tta, footprint
        self.outputs = {"probabilities": int(model.head.out_features), "cam": 1}

    def to(self, device) -> CamNetHead:
        import torch

        self.model = self.model.to(device)
        if torch.device(device).type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        return self

    def weights(self, tile: int, overlap: float) -> np.ndarray:
        return hann_weights(tile, overlap, self.footprint)

    def __call__(self, batch) -> dict:
        from geocamat.models.camnet import tile_probabilities

        probs, cam = tile_probabilities(self.model, batch, self.tta)
        return {"probabilities": probs, "cam": cam[:, None]}


class WindowHead(CamNetHead):
    """Window model: every pixel of a tile gets the tile's class probabilities; the map comes from blending
    overlapping windows."""

    mode = "window"


class DenseHead(CamNetHead):
    """Dense model: the per-location CAM logits, upsampled to the tile, through a softmax (a CAM-based
    segmentation)."""

    mode = "dense"


def head_for(bundle, *, tta: bool = False, window: int | None = None) -> CamNetHead:
    """The head of a land-use bundle's model.

    Args:
        bundle: a land-use :class:`geocamat.bundle.Bundle`.
        tta: test-time augmentation.
        window: fully convolutional windows of this size instead of training-size tiles (dense models; the
            footprint weighting of training tiles then does not apply).
    """
    model = bundle.build_model()
    footprint = 1.0 if window else float(bundle.extra.get("footprint", 1.0))
    cls = DenseHead if getattr(model, "output", "window") == "dense" else WindowHead
    return cls(model, tta=tta, footprint=footprint)
