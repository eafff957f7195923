"""Labelled training and validation tiles, cut with TorchGeo samplers inside spatially disjoint blocks.

Each block of the checkerboard (see :mod:`geocamat.data.splits`) is tiled with TorchGeo's
``GriddedPatchSampler`` restricted to that block, so no training tile overlaps a validation block. A tile's
label is the majority class of its labelled pixels, kept only when that class is pure enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from geocamat.data.labels import UNLABELLED, LabelRaster
from geocamat.data.splits import block_windows, checkerboard
from geocamat.errors import ConfigError, InvalidLabelsError, InvalidRasterError


@dataclass
class TileSet:
    """Tiles in memory: raw band values (NaN where invalid), class indices (0..K-1) and per-pixel labels.

    ``masks`` holds each pixel's class index (int16, -1 where unlabelled, invalid or of an unknown class); for
    point labels it is -1 except at the points.
    """

    images: Tensor
    labels: Tensor
    masks: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class TileOptions:
    """How tiles are cut and labelled.

    Attributes:
        tile_size: tile side, pixels.
        stride: training tile stride, pixels (validation tiles use ``tile_size // 2``).
        purity: minimum share of the majority class among a tile's labelled pixels.
        min_labelled: minimum share of labelled pixels in a tile (dense labels only).
        min_valid: minimum share of pixels with valid imagery.
        blocks: checkerboard blocks per side.
        val_parity: which checkerboard parity is validation (``odd`` or ``even``).
        max_tiles: cap on training tiles (random subset beyond it); memory is also capped at ~1 GB.
        footprint: side of the central square whose labels decide the tile's class, as a fraction of the
            tile (1.0: the whole tile; 0.25: the central quarter, the rest being context).
        seed: random seed of the subset.
    """

    tile_size: int = 32
    stride: int = 8
    purity: float = 0.5
    min_labelled: float = 0.5
    min_valid: float = 0.5
    blocks: int = 4
    val_parity: str = "odd"
    max_tiles: int = 50000
    seed: int = 0
    footprint: float = 1.0


def _block_roi(grid, r0: int, r1: int, c0: int, c1: int):
    from shapely.geometry import box

    t = grid.transform
    x0, y1 = t @ (c0, r0)
    x1, y0 = t @ (c1, r1)
    return box(x0, y0, x1, y1)


def _tile_label(mask: np.ndarray, class_index: dict[int, int], opts: TileOptions, sparse: bool) -> int | None:
    labelled = mask[mask != UNLABELLED]
    if labelled.size == 0 or (not sparse and labelled.size < opts.min_labelled * mask.size):
        return None
    codes, counts = np.unique(labelled, return_counts=True)
    best = int(np.argmax(counts))
    if counts[best] < opts.purity * labelled.size or int(codes[best]) not in class_index:
        return None
    return class_index[int(codes[best])]


def _pixel_classes(mask: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Label codes -> class indices (int16), -1 for unlabelled pixels and codes that are not classes."""
    index = np.searchsorted(codes, mask).clip(0, len(codes) - 1)
    return np.where(codes[index] == mask, index, -1).astype(np.int16)


def check_tile_fits(shape: tuple[int, int], opts: TileOptions) -> None:
    """Raise a clear error when the tile cannot fit the scene or its checkerboard blocks."""
    rows, cols = shape
    t = opts.tile_size
    if t > min(rows, cols):
        raise ConfigError(f"--tile-size {t} is larger than the scene ({cols} x {rows} px): use a tile of at most "
                          f"{min(rows, cols) // max(1, opts.blocks)} px (one checkerboard block)")
    sizes = [(r1 - r0, c1 - c0) for _, _, r0, r1, c0, c1 in block_windows(shape, opts.blocks)]
    if not any(h >= t and w >= t for h, w in sizes):
        h, w = max(sizes)
        raise ConfigError(f"--tile-size {t} is larger than the checkerboard blocks ({w} x {h} px with --blocks "
                          f"{opts.blocks}): lower --tile-size or --blocks")


def extract_tiles(stack, labels: LabelRaster, opts: TileOptions, progress: bool = False) -> tuple[TileSet, TileSet]:
    """Cut labelled tiles from the imagery: (training tiles, validation tiles).

    Args:
        stack: the :class:`geocamat.data.stack.ImageStack`.
        labels: labels on the image grid.
        opts: tiling options.
        progress: print a progress line per block.

    Raises:
        ConfigError: the tile is larger than the scene or than the checkerboard blocks.
        InvalidRasterError: the imagery holds no valid pixel.
        InvalidLabelsError: no tile passes the label and validity thresholds on one side of the split.
    """
    from torchgeo.samplers import GriddedPatchSampler

    check_tile_fits(labels.grid.shape, opts)

    from geocamat.data.torchgeo_datasets import LabelRasterDataset

    image_ds = stack.dataset()
    label_ds = LabelRasterDataset(paths=[str(labels.path)])
    dataset = image_ds & label_ds  # TorchGeo IntersectionDataset: image and mask per query
    class_index = {cid: i for i, cid in enumerate(labels.class_ids)}
    split = checkerboard(labels.grid.shape, opts.blocks, opts.val_parity)
    rng = np.random.default_rng(opts.seed)
    per_tile_bytes = stack.num_bands * opts.tile_size**2 * 4
    cap = min(opts.max_tiles, max(1000, int(1e9 // per_tile_bytes)))
    sides: dict[int, tuple[list[Tensor], list[int], list[np.ndarray]]] = {0: ([], [], []), 1: ([], [], [])}
    lut_codes = np.array(labels.class_ids)
    side_px = max(1, int(round(opts.footprint * opts.tile_size)))
    lo = (opts.tile_size - side_px) // 2
    inner = (slice(lo, lo + side_px), slice(lo, lo + side_px))
    labelled = {0: 0, 1: 0}  # labelled pixels per side of the split
    valid_pixels = 0
    for _, _, r0, r1, c0, c1 in block_windows(labels.grid.shape, opts.blocks):
        if r1 - r0 < opts.tile_size or c1 - c0 < opts.tile_size:
            continue
        side = int(split[r0, c0])
        stride = opts.stride if side == 0 else max(1, opts.tile_size // 2)
        roi = _block_roi(labels.grid, r0, r1, c0, c1)
        try:
            sampler = GriddedPatchSampler(dataset, size=opts.tile_size, stride=stride, roi=roi)
        except (IndexError, ValueError):
            continue
        # One TorchGeo read per block; the sampler's patches are then cut from it in memory.
        block = dataset[roi.bounds[0]:roi.bounds[2]:labels.grid.transform.a,
                        roi.bounds[1]:roi.bounds[3]:-labels.grid.transform.e]
        block_image, block_mask = block["image"], block["mask"].numpy()
        block_valid = stack.valid_mask(block_image)
        valid_pixels += int(block_valid.sum())
        labelled[side] += int((block_mask != UNLABELLED).sum())
        for query in sampler:
            x, y = query[0], query[1]
            col = int(round((x.start - roi.bounds[0]) / labels.grid.transform.a))
            row = int(round((roi.bounds[3] - y.stop) / -labels.grid.transform.e))
            t = opts.tile_size
            if row < 0 or col < 0 or row + t > block_mask.shape[0] or col + t > block_mask.shape[1]:
                continue
            valid = block_valid[row:row + t, col:col + t]
            if float(valid.float().mean()) < opts.min_valid:
                continue
            mask = np.where(valid.numpy(), block_mask[row:row + t, col:col + t], UNLABELLED)
            label = _tile_label(mask[inner], class_index, opts, labels.sparse)
            if label is None:
                continue
            image = block_image[:, row:row + t, col:col + t].clone()
            image[:, ~valid] = math.nan
            sides[side][0].append(image)
            sides[side][1].append(label)
            sides[side][2].append(_pixel_classes(mask, lut_codes))
    if not valid_pixels and not (sides[0][0] or sides[1][0]):
        names = ", ".join(str(p) for p in stack.sources[:3]) + (", ..." if len(stack.sources) > 3 else "")
        raise InvalidRasterError(f"no valid pixels in {names}: every pixel is nodata; check the file's nodata "
                                 "value (gdalinfo) or give imagery with data")
    out = []
    for side, name in ((0, "training"), (1, "validation")):
        images, targets, masks = sides[side]
        if not images and not labelled[side]:
            side_blocks = opts.val_parity if side else {"odd": "even", "even": "odd"}[opts.val_parity]
            raise InvalidLabelsError(
                f"no {name} tile: no label falls in the {name} blocks (the {side_blocks} blocks of a "
                f"{opts.blocks}x{opts.blocks} checkerboard); add labels there, or change --blocks or "
                "--set val_parity=...")
        if not images:
            raise InvalidLabelsError(
                f"no {name} tile passed the label thresholds (purity {opts.purity}, tile {opts.tile_size} px): "
                "lower --purity or --tile-size, or check that labels cover the imagery")
        if side == 0 and len(images) > cap:
            keep = np.sort(rng.choice(len(images), cap, replace=False))
            images, targets = [images[i] for i in keep], [targets[i] for i in keep]
            masks = [masks[i] for i in keep]
        out.append(TileSet(torch.stack(images), torch.tensor(targets, dtype=torch.long),
                           torch.from_numpy(np.stack(masks))))
    return out[0], out[1]


def band_statistics(tiles: TileSet) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over the valid pixels of the tiles."""
    x = tiles.images.transpose(0, 1).reshape(tiles.images.shape[1], -1).double()
    finite = torch.isfinite(x)
    n = finite.sum(dim=1).clamp_min(1)
    mean = torch.where(finite, x, 0).sum(dim=1) / n
    var = torch.where(finite, (x - mean[:, None]) ** 2, 0).sum(dim=1) / n
    return mean.tolist(), var.sqrt().clamp_min(1e-6).tolist()


def normalise(images: Tensor, mean: list[float], std: list[float]) -> Tensor:
    """(raw - mean) / std per band; invalid (NaN) pixels become 0, the band mean."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return torch.nan_to_num((images - m) / s, nan=0.0, posinf=0.0, neginf=0.0)
