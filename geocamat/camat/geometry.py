"""The eight dihedral transforms (rot90 x flip) used for augmentation, and their inverses.

Index convention, shared with the training task's augmentation: ``k`` in 0..7, ``k % 4`` is the number
of 90-degree rotations (:func:`torch.rot90` over dims ``(-2, -1)``), and ``k >= 4`` means a horizontal
flip (:func:`torch.flip` over dim ``-1``) applied *before* the rotation::

    dihedral(x, k) = rot90(flip(x) if k >= 4 else x, k % 4)

CAMAT's cached maps are stored in the canonical (un-augmented) frame: a map seen under transform ``t``
is stored as ``dihedral_inverse(map, t)`` and replayed under transform ``u`` as ``dihedral(stored, u)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

NUM_DIHEDRAL = 8


def _apply_one(x: Tensor, k: int, inverse: bool) -> Tensor:
    if not 0 <= k < NUM_DIHEDRAL:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    rot, flip = k % 4, k >= 4
    if not inverse:
        if flip:
            x = torch.flip(x, dims=(-1,))
        return torch.rot90(x, rot, dims=(-2, -1)) if rot else x
    if rot:
        x = torch.rot90(x, -rot, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


_INDEX_TABLES: dict[tuple[int, bool, str], Tensor] = {}


def _index_table(side: int, inverse: bool, device: torch.device) -> Tensor:
    """(8, side*side) int64: for each transform, the flat source pixel of every output pixel (cached per device)."""
    key = (side, inverse, str(device))
    table = _INDEX_TABLES.get(key)
    if table is None:
        base = torch.arange(side * side).view(side, side)
        table = torch.stack([_apply_one(base, v, inverse).reshape(-1) for v in range(NUM_DIHEDRAL)]).to(device)
        _INDEX_TABLES[key] = table
    return table


def _apply(x: Tensor, k: int | Tensor, inverse: bool) -> Tensor:
    if isinstance(k, int):
        return _apply_one(x, k, inverse)
    k = torch.as_tensor(k)
    if k.ndim == 0:
        return _apply_one(x, int(k), inverse)
    if k.shape[0] != x.shape[0]:
        raise ValueError(f"one dihedral index per sample expected: {k.shape[0]} for {x.shape[0]} samples")
    h, w = x.shape[-2:]
    if h == w:  # one gather through a per-transform index table: no host sync, no per-transform launches
        if k.device.type == "cpu" and k.numel() and not (0 <= int(k.min()) and int(k.max()) < NUM_DIHEDRAL):
            raise ValueError(f"dihedral indices must be in 0..7, got {k.tolist()}")
        idx = _index_table(h, inverse, x.device)[k.to(x.device, non_blocking=True).long()]
        flat = x.reshape(x.shape[0], -1, h * w)
        return flat.gather(-1, idx.unsqueeze(1).expand(-1, flat.shape[1], -1)).view(x.shape)
    ks = k.tolist()
    values = set(ks)
    if len(values) == 1:
        return _apply_one(x, ks[0], inverse)
    if any(v % 2 for v in values):
        raise ValueError("mixed 90-degree rotations need square images")
    out = torch.empty_like(x)
    for v in values:
        idx = torch.tensor([i for i, kk in enumerate(ks) if kk == v], device=x.device)
        out[idx] = _apply_one(x[idx], v, inverse)
    return out


def dihedral(x: Tensor, k: int | Tensor) -> Tensor:
    """Apply dihedral transform ``k`` to the last two dims of ``x``.

    Args:
        x: (..., H, W) tensor; with a per-sample ``k``, (N, ..., H, W).
        k: one index 0..7 for the whole tensor, or an (N,) tensor of indices, one per sample.

    Returns:
        The transformed tensor (same shape when square).
    """
    return _apply(x, k, inverse=False)


def dihedral_inverse(x: Tensor, k: int | Tensor) -> Tensor:
    """Undo :func:`dihedral`: ``dihedral_inverse(dihedral(x, k), k) == x``.

    Args:
        x: (..., H, W) tensor; with a per-sample ``k``, (N, ..., H, W).
        k: one index 0..7, or an (N,) tensor of indices.

    Returns:
        The tensor in the canonical (un-augmented) frame.
    """
    return _apply(x, k, inverse=True)


def inverse_index(k: int) -> int:
    """The dihedral index that undoes ``k``: quarter turns go back, the four reflections are their own inverse."""
    return k if k >= 4 else (4 - k) % 4


def random_dihedral(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` dihedral indices uniformly from 0..7 (on the CPU)."""
    return torch.randint(0, NUM_DIHEDRAL, (n,), generator=generator)


def dihedral_boxes(boxes: Tensor, k: int, size: int) -> Tensor:
    """Move (N, 4) ``x0, y0, x1, y1`` pixel boxes of a ``size`` x ``size`` image as :func:`dihedral` moves it."""
    out = boxes.clone()
    if k >= 4:  # horizontal flip first
        out[:, [0, 2]] = size - boxes[:, [2, 0]]
    for _ in range(k % 4):  # each quarter turn of torch.rot90: (x, y) -> (y, size - x)
        out = torch.stack([out[:, 1], size - out[:, 2], out[:, 3], size - out[:, 0]], dim=1)
    return out
