"""Occlusion masks from saliency maps."""

from __future__ import annotations

import torch
from torch import Tensor


def normalise_maps(maps: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale each map to [0, 1]: negative evidence clipped, then divided by the map's maximum.

    Args:
        maps: (N, H, W) saliency maps.

    Returns:
        (N, H, W) maps in [0, 1]; an all-zero map stays zero.
    """
    maps = maps.clamp_min(0)
    peak = maps.flatten(1).amax(dim=1).clamp_min(eps)
    return maps / peak.view(-1, 1, 1)


def threshold_mask(maps: Tensor, tau: float) -> Tensor:
    """Occlude where the normalised map is at least ``tau``.

    Args:
        maps: (N, H, W) maps normalised to [0, 1] (see :func:`normalise_maps`).
        tau: threshold in (0, 1].

    Returns:
        (N, 1, H, W) boolean mask. A map that is zero everywhere occludes nothing.
    """
    return ((maps >= tau) & (maps > 0)).unsqueeze(1)


def top_area_mask(maps: Tensor, area: float) -> Tensor:
    """Occlude the ``area`` fraction of pixels with the highest saliency in each map.

    Args:
        maps: (N, H, W) saliency maps (any scale).
        area: fraction of pixels to occlude, in [0, 1].

    Returns:
        (N, 1, H, W) boolean mask with ``round(area * H * W)`` pixels set per sample (ties broken by
        position, so the count is exact).
    """
    if not 0 <= area <= 1:  # (1.5 was torch's "selected index k out of range")
        raise ValueError(f"area is a fraction of the pixels in [0, 1], not {area}")
    n, h, w = maps.shape
    k = int(round(area * h * w))
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=maps.device)
    if k > 0:
        idx = maps.flatten(1).topk(k, dim=1).indices
        mask.scatter_(1, idx, True)
    return mask.view(n, 1, h, w)
