"""CutMix for land-use tiles: a rectangle of another tile of the batch pasted into each tile.

Per-pixel labels follow the pasted pixels exactly. A tile's class comes from its central label footprint,
so the two tile labels are weighted by how much of that footprint each tile keeps (not by area).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def cutmix(images: Tensor, masks: Tensor | None, labels: Tensor, footprint: float = 1.0,
           generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None, Tensor, float]:
    """Paste one random rectangle (same box for the whole batch) from a shuffled copy of the batch.

    The box's area share is ``1 - lam`` with ``lam ~ U(0, 1)`` (CutMix with Beta(1, 1)), its position uniform.

    Args:
        images: (N, C, H, W) tiles.
        masks: (N, H, W) per-pixel class indices (-1: no label), or None.
        labels: (N,) tile class indices.
        footprint: side of the central square that decides a tile's class, as a share of the tile.
        generator: CPU random generator (the box and the pairing).

    Returns:
        (mixed images, mixed masks or None, labels of the pasted tiles, weight of the original labels: the
        share of the central footprint the box leaves uncovered).
    """
    n, _, h, w = images.shape
    lam = float(torch.rand((), generator=generator))
    bh, bw = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
    y0 = int(torch.randint(0, h - bh + 1, (), generator=generator))
    x0 = int(torch.randint(0, w - bw + 1, (), generator=generator))
    perm = torch.randperm(n, generator=generator).to(images.device)
    images = images.clone()
    images[:, :, y0:y0 + bh, x0:x0 + bw] = images[perm, :, y0:y0 + bh, x0:x0 + bw]
    if masks is not None:
        masks = masks.clone()
        masks[:, y0:y0 + bh, x0:x0 + bw] = masks[perm, y0:y0 + bh, x0:x0 + bw]
    side_h, side_w = max(1, round(footprint * h)), max(1, round(footprint * w))
    fy, fx = (h - side_h) // 2, (w - side_w) // 2
    cover_h = max(0, min(y0 + bh, fy + side_h) - max(y0, fy))
    cover_w = max(0, min(x0 + bw, fx + side_w) - max(x0, fx))
    return images, masks, labels[perm], 1.0 - cover_h * cover_w / (side_h * side_w)
