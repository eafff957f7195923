"""Class activation maps for a batch.

A model usable by CAMAT exposes ``forward_features(x) -> (N, C, h, w)`` and a linear ``head`` applied
after global average pooling (see :class:`geocamat.camat.model_adapter.CamModel`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_activation_maps(features: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """CAM (Zhou et al. 2016) of the target class of each sample.

    Args:
        features: (N, C, h, w) last feature map.
        weight: (K, C) weights of the linear head that follows global average pooling.
        targets: (N,) class index per sample.

    Returns:
        (N, h, w) maps: sum over channels of ``weight[target, c] * features[c]``.
    """
    w = weight[targets].to(features.dtype)  # (N, C)
    return torch.einsum("nc,nchw->nhw", w, features)


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize (N, h, w) maps to ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1).float(), size=size, mode="bilinear", align_corners=False)[:, 0]
