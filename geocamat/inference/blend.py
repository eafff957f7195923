"""Blending: tiles cut from a band's canvas, their per-pixel outputs weighted and added into one accumulator.

The accumulator of a band holds, per pixel, the weighted sum of every channel a head produces and, in its
last channel, the sum of the weights; dividing by it gives the blended value.
"""

from __future__ import annotations

import functools

import numpy as np

# CPU: tiles up to this side are gathered with one indexed copy and blended with one scatter-add per batch
# (scatter 7 us/tile at 16 px against 11 us for a per-tile add); larger tiles are copied and added one by one
# (per-tile slices are 3-5x faster than a scatter from 32 px up). Measured on the 2-vCPU dev machine.
SCATTER_MAX_TILE = 16

BLEND_MODES = ("blocks", "scatter", "tiles")


def blend_mode(device_type: str, tile: int, stride: int) -> str:
    """How a batch's tiles are added into the accumulator: ``blocks`` (:func:`accumulate_blocks`, on CUDA when
    the stride divides the tile), ``scatter`` (one ``index_add_``, small CPU tiles) or ``tiles`` (one by one)."""
    if device_type == "cuda":
        return "blocks" if tile % stride == 0 else "tiles"
    return "scatter" if tile <= SCATTER_MAX_TILE else "tiles"


def hann_weights(tile: int, overlap: float, footprint: float = 1.0) -> np.ndarray:
    """1-D blending weights: a Hann window (never exactly 0) with overlap, flat without.

    A model whose tile label came from the central ``footprint`` of the tile (see
    :class:`geocamat.data.tiles.TileOptions`) is weighted by a Gaussian of that footprint's half width
    instead, so each window mostly paints the pixels its label describes.
    """
    if overlap <= 0:
        return np.ones(tile, np.float32)
    i = np.arange(tile, dtype=np.float64)
    if footprint < 1.0:
        sigma = max(footprint * tile / 2.0, 0.5)
        return np.maximum(np.exp(-0.5 * ((i - (tile - 1) / 2.0) / sigma) ** 2), 1e-6).astype(np.float32)
    return (np.sin(np.pi * (i + 0.5) / tile) ** 2).astype(np.float32)


def gather_tiles(x, rows: np.ndarray, cols: np.ndarray, tile: int, stride: int):
    """Tiles (row, col) of the tile grid over a (C, H, W) canvas, as an (N, C, T, T) view-indexed tensor."""
    import torch

    views = x.unfold(1, tile, stride).unfold(2, tile, stride)  # (C, rows, cols, T, T), a view
    index = torch.from_numpy(rows).to(x.device), torch.from_numpy(cols).to(x.device)
    return views[:, index[0], index[1]].permute(1, 0, 2, 3)


@functools.lru_cache(maxsize=8)
def tile_offsets(tile: int, width: int):
    """Flat offsets of a tile's pixels in a row-major canvas ``width`` pixels wide."""
    import torch

    r = torch.arange(tile, dtype=torch.int64)
    return (r[:, None] * width + r[None, :]).flatten()


def accumulate_blocks(acc, values, rows: np.ndarray, cols: np.ndarray, tile: int, stride: int) -> None:
    """``acc[:, r*s:r*s+t, c*s:c*s+t] += values[n]`` for every tile n = (rows[n], cols[n]), batched.

    Needs ``tile % stride == 0`` and ``acc``'s height and width multiples of ``stride``. Each tile is cut into
    (tile/stride)^2 blocks of stride x stride px; for one block offset the tiles of a batch land on distinct
    blocks of ``acc``, so each offset is one indexed add for the whole batch ((t/s)^2 kernels instead of three
    per tile on the GPU) and the result does not depend on scheduling (deterministic).
    """
    import torch

    m, s = tile // stride, stride
    c, h, w = acc.shape
    blocks = acc.view(c, h // s, s, w // s, s)
    v = values.view(values.shape[0], c, m, s, m, s)
    r = torch.as_tensor(rows, device=acc.device)
    q = torch.as_tensor(cols, device=acc.device)
    for dr in range(m):
        for dc in range(m):
            blocks[:, r + dr, :, q + dc, :] += v[:, :, dr, :, dc, :]


def accumulate(acc, values, weights, rows: np.ndarray, cols: np.ndarray, tile: int, stride: int, mode: str) -> None:
    """Add a batch of per-pixel outputs, weighted, into a band's accumulator.

    Args:
        acc: (C + 1, H, W) float32 accumulator; channel C sums the weights.
        values: (N, C, T, T) per-pixel outputs of the batch's tiles (float32).
        weights: (T, T) blending weights of a tile.
        rows: tile rows of the batch (in strides from the canvas origin).
        cols: tile columns of the batch.
        tile: tile side (px).
        stride: tile stride (px).
        mode: one of :data:`BLEND_MODES` (see :func:`blend_mode`); all give the same sums.
    """
    import torch

    c = values.shape[1]
    if mode == "tiles":  # tile by tile, in order
        values = values.mul_(weights)
        for n, (r, q) in enumerate(zip(rows, cols, strict=True)):
            rows_, cols_ = slice(r * stride, r * stride + tile), slice(q * stride, q * stride + tile)
            acc[:c, rows_, cols_] += values[n]
            acc[c, rows_, cols_] += weights
        return
    ones = torch.ones_like(values[:, :1])
    weighted = torch.cat([values, ones], dim=1).mul_(weights)
    if mode == "scatter":  # the batch in one scatter-add (sequential on the CPU, so deterministic)
        origin = torch.from_numpy((rows * stride * acc.shape[2] + cols * stride).astype(np.int64))
        index = (origin[:, None] + tile_offsets(tile, acc.shape[2])[None]).flatten()
        acc.view(c + 1, -1).index_add_(1, index, weighted.permute(1, 0, 2, 3).reshape(c + 1, -1))
    elif mode == "blocks":
        accumulate_blocks(acc, weighted, rows, cols, tile, stride)
    else:
        raise ValueError(f"unknown blend mode {mode!r}: choose one of {', '.join(BLEND_MODES)}")
