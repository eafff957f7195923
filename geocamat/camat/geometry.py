"""The dihedral group of the square (flips and 90-degree rotations), applied per sample.

Index ``k`` in 0..7: ``k % 4`` quarter turns (``torch.rot90`` over the last two dims) applied after a
horizontal flip when ``k >= 4``. Used for training augmentation and to carry cached CAMs through it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _apply_one(x: Tensor, k: int) -> Tensor:
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def _inverse_one(x: Tensor, k: int) -> Tensor:
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return x


def dihedral(x: Tensor, k: Tensor) -> Tensor:
    """Apply transform ``k[i]`` to ``x[i]`` for (N, ..., H, W) square tensors."""
    out = x.clone()
    for t in range(8):
        sel = k == t
        if bool(sel.any()):
            out[sel] = _apply_one(x[sel], t)
    return out


def dihedral_inverse(x: Tensor, k: Tensor) -> Tensor:
    """Undo :func:`dihedral` with the same indices."""
    out = x.clone()
    for t in range(8):
        sel = k == t
        if bool(sel.any()):
            out[sel] = _inverse_one(x[sel], t)
    return out
