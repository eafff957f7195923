"""Training tiles for detection: a grid of windows over each image, boxes clipped to each window.

Scenes for detection are small enough (a few thousand pixels a side) to be held in memory, normalised once.
Windows overlap by half a tile; a box cut by a window edge is kept (clipped) when at least
``min_visible`` of it is inside, and dropped otherwise. Validation windows come from a vertical strip at
the right of each image that no training window touches (spatially disjoint).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from geocamat.camat.geometry import dihedral, dihedral_boxes, random_dihedral
from geocamat.data.boxes import ImageBoxes
from geocamat.data.detection_images import read_image


@dataclass
class Tile:
    """One training window: image index and (col_off, row_off) of its top-left corner."""

    image: int
    col: int
    row: int


def grid_offsets(length: int, tile: int, stride: int, start: int = 0, stop: int | None = None) -> list[int]:
    """Offsets of windows of ``tile`` px every ``stride`` px covering [start, stop), the last one flush."""
    stop = length if stop is None else stop
    if stop - start <= tile:
        return [start]
    offs = list(range(start, stop - tile + 1, stride))
    if offs[-1] + tile < stop:
        offs.append(stop - tile)
    return offs


def clip_boxes(boxes: np.ndarray, col: int, row: int, size: int, min_visible: float = 0.5) -> tuple[np.ndarray,
                                                                                                       np.ndarray]:
    """Boxes in window coordinates, clipped; returns (boxes, index of the kept input boxes)."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, int)
    b = boxes - np.array([col, row, col, row], np.float32)
    c = np.clip(b, 0, size)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    vis = (c[:, 2] - c[:, 0]).clip(0) * (c[:, 3] - c[:, 1]).clip(0)
    keep = (vis >= min_visible * area) & ((c[:, 2] - c[:, 0]) >= 2) & ((c[:, 3] - c[:, 1]) >= 2)
    return c[keep].astype(np.float32), np.nonzero(keep)[0]


class DetectionTiles(Dataset):
    """Tiles of in-memory normalised images with their boxes.

    Args:
        images: normalised float32 (C, H, W) arrays.
        boxes: per image, its :class:`ImageBoxes`.
        class_index: class name -> output index.
        tiles: the windows.
        tile_size: window side in pixels.
        augment: random flips and 90-degree rotations.
        min_visible: fraction of a box that must be inside a window for it to be kept.
    """

    def __init__(self, images: list[np.ndarray], boxes: list[ImageBoxes], class_index: dict[str, int],
                 tiles: list[Tile], tile_size: int, augment: bool = False, min_visible: float = 0.5) -> None:
        self.images, self.boxes, self.class_index = images, boxes, class_index
        self.tiles, self.tile_size, self.augment, self.min_visible = tiles, tile_size, augment, min_visible

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, i: int) -> tuple[Tensor, dict]:
        t = self.tiles[i]
        img = self.images[t.image]
        s = self.tile_size
        c, h, w = img.shape
        x = np.zeros((c, s, s), np.float32)
        hh, ww = min(s, h - t.row), min(s, w - t.col)
        x[:, :hh, :ww] = img[:, t.row:t.row + hh, t.col:t.col + ww]
        ib = self.boxes[t.image]
        b, idx = clip_boxes(ib.boxes, t.col, t.row, s, self.min_visible)
        labels = np.array([self.class_index[ib.names[j]] for j in idx], np.int64)
        image, boxes = torch.from_numpy(x), torch.from_numpy(b)
        if self.augment:  # one of the 8 flips/quarter turns, boxes moved with the pixels
            k = int(random_dihedral(1)[0])
            image, boxes = dihedral(image, k).contiguous(), dihedral_boxes(boxes, k, self.tile_size)
        return image, {"boxes": boxes, "labels": torch.from_numpy(labels)}


def collate(batch: list[tuple[Tensor, dict]]) -> tuple[Tensor, list[dict]]:
    """Stack tiles; keep targets as a list of dicts (torchvision detection convention)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def plan_tiles(
    boxes: list[ImageBoxes], tile_size: int, *, val_fraction: float = 0.2, empty_ratio: float = 0.1,
    max_tiles: int | None = None, seed: int = 0, min_visible: float = 0.5,
) -> tuple[list[Tile], list[Tile]]:
    """Training and validation windows.

    Each image wider than two tiles gives a validation strip at its right (``val_fraction`` of the width,
    at least one tile); training windows (stride half a tile) stay left of it. Tiles without any box are
    kept at ``empty_ratio`` times the number of tiles with boxes.

    Returns:
        (training tiles, validation tiles).
    """
    rng = random.Random(seed)
    train, val = [], []
    for i, ib in enumerate(boxes):
        w, h = ib.width, ib.height
        split = w
        if val_fraction > 0 and w >= 2 * tile_size + tile_size // 2:
            split = w - max(tile_size, int(round(val_fraction * w)))
        rows = grid_offsets(h, tile_size, tile_size // 2)
        for col in grid_offsets(w, tile_size, tile_size // 2, 0, split):
            for row in rows:
                train.append(Tile(i, col, row))
        if split < w:
            for col in grid_offsets(w, tile_size, tile_size, split, w):
                for row in grid_offsets(h, tile_size, tile_size):
                    val.append(Tile(i, col, row))

    def has_boxes(t: Tile) -> bool:
        return len(clip_boxes(boxes[t.image].boxes, t.col, t.row, tile_size, min_visible)[0]) > 0

    full = [t for t in train if has_boxes(t)]
    empty = [t for t in train if not has_boxes(t)]
    rng.shuffle(empty)
    train = full + empty[: int(round(empty_ratio * len(full)))]
    rng.shuffle(train)
    if max_tiles is not None and len(train) > max_tiles:
        train = train[:max_tiles]
    return train, val


def load_normalised(paths: list[str], mean: list[float], std: list[float]) -> list[np.ndarray]:
    """Read whole images, normalise per band, set invalid pixels to the band mean (0)."""
    m = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, np.float32).reshape(-1, 1, 1)
    out = []
    for p in paths:
        data, valid = read_image(p)
        x = (data - m) / s
        x[:, ~valid] = 0
        out.append(x)
    return out
