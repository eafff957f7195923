"""Reading a scene's image and label raster in fixed chunks through TorchGeo, with a bounded cache.

The grid is cut into chunks of ``chunk`` x ``chunk`` anchors; chunk (i, j) holds the pixels of rows
``i * chunk .. i * chunk + chunk + tile_size - 1`` (and the same for columns), so every window of
``tile_size`` pixels whose top-left corner falls in the chunk lies wholly inside it. A window is then a
slice of one chunk: one TorchGeo read (image and labels, an ``IntersectionDataset``) serves every window
of the chunk. Chunks are kept in a least-recently-used cache of at most ``cache_mb`` megabytes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from geocamat.data.labels import UNLABELLED, Grid

# GDAL's block cache while training streams (GDAL's default is 5% of the machine's memory: it would grow
# with the scene up to that); a user's GDAL_CACHEMAX wins
GDAL_CACHE_MB = 64


def bound_gdal_cache(megabytes: int = GDAL_CACHE_MB) -> None:
    """Bound GDAL's block cache in this process, unless the user set ``GDAL_CACHEMAX``."""
    import os

    if "GDAL_CACHEMAX" in os.environ:
        return
    from rasterio.env import set_gdal_config

    set_gdal_config("GDAL_CACHEMAX", int(megabytes) * 1024 * 1024)


def pixel_classes(mask: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Label codes -> class indices (int16), -1 for unlabelled pixels and codes that are not classes."""
    index = np.searchsorted(codes, mask).clip(0, len(codes) - 1)
    return np.where(codes[index] == mask, index, -1).astype(np.int16)


class ChunkReader:
    """Chunks of the image stack and its labels on the label grid: raw (for indexing) or normalised (cached).

    Args:
        image_paths: the stack's rasters (every band each).
        nodata: nodata per band of the stack (see :class:`geocamat.data.stack.ImageStack`).
        label_path: the label raster on ``grid`` (int32, -1 unlabelled).
        grid: the label grid (the imagery's).
        class_ids: label codes that are classes, sorted.
        tile_size: window side, pixels.
        chunk: chunk side (anchors), pixels.
        cache_mb: bound of the normalised-chunk cache, megabytes (0: no cache).
    """

    def __init__(self, image_paths: Sequence[Path], nodata: Sequence[float | None], label_path: Path, grid: Grid,
                 class_ids: Sequence[int], tile_size: int, chunk: int = 256, cache_mb: float = 256.0) -> None:
        self.image_paths = [str(p) for p in image_paths]
        self.nodata = list(nodata)
        self.label_path = str(label_path)
        self.grid = grid
        self.codes = np.asarray(sorted(class_ids))
        self.tile_size = tile_size
        self.chunk = max(chunk, tile_size)
        self.cache_mb = float(cache_mb)
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        self._dataset = None
        self._cache: OrderedDict[tuple[int, int], tuple[Tensor, Tensor]] = OrderedDict()
        self._cached_bytes = 0
        self.reads = 0

    def __getstate__(self) -> dict:  # DataLoader workers open their own files and keep their own cache
        state = dict(self.__dict__)
        state.update(_dataset=None, _cache=OrderedDict(), _cached_bytes=0)
        return state

    def reset(self) -> None:
        """Forget open files and cached chunks (in a forked DataLoader worker: its own handles, its own cache)."""
        self._dataset = None
        self._cache = OrderedDict()
        self._cached_bytes = 0

    @property
    def shape(self) -> tuple[int, int]:
        """Chunks per side: (rows, cols)."""
        rows, cols = self.grid.shape
        return math.ceil(rows / self.chunk), math.ceil(cols / self.chunk)

    def chunk_of(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Flat chunk id of windows with top-left corners (rows, cols)."""
        return (np.asarray(rows) // self.chunk) * self.shape[1] + np.asarray(cols) // self.chunk

    def extent(self, i: int, j: int) -> tuple[int, int, int, int]:
        """Pixel extent (row0, row1, col0, col1) of chunk (i, j) on the grid, end exclusive."""
        rows, cols = self.grid.shape
        r0, c0 = i * self.chunk, j * self.chunk
        return r0, min(rows, r0 + self.chunk + self.tile_size - 1), c0, min(cols, c0 + self.chunk + self.tile_size - 1)

    def dataset(self):
        """The TorchGeo intersection of the image stack and the label raster (opened lazily)."""
        if self._dataset is None:
            bound_gdal_cache()  # also in DataLoader workers
            from geocamat.data.torchgeo_datasets import LabelRasterDataset, stack_dataset

            self._dataset = stack_dataset(self.image_paths) & LabelRasterDataset(paths=[self.label_path])
        return self._dataset

    def read(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk (i, j) as read: (C, h, w) float32 bands (NaN where no band is valid) and (h, w) class indices.

        Class indices are -1 where unlabelled, where the imagery is invalid, and for codes that are not classes.
        """
        r0, r1, c0, c1 = self.extent(i, j)
        t = self.grid.transform
        x0, y1 = t.c + c0 * t.a, t.f + r0 * t.e
        x1, y0 = t.c + c1 * t.a, t.f + r1 * t.e
        sample = self.dataset()[x0:x1:t.a, y0:y1:-t.e]
        image = sample["image"].numpy().astype(np.float32, copy=False)
        mask = sample["mask"].numpy()
        if mask.ndim == 3:
            mask = mask[0]
        image, mask = image[:, :r1 - r0, :c1 - c0], mask[:r1 - r0, :c1 - c0]
        valid = self.valid(image)
        image = np.where(valid[None], image, np.nan).astype(np.float32)
        classes = pixel_classes(np.where(valid, mask, UNLABELLED), self.codes)
        self.reads += 1
        return image, classes

    def valid(self, image: np.ndarray) -> np.ndarray:
        """Pixels with at least one valid band (not NaN, not the band's nodata)."""
        valid = np.zeros(image.shape[1:], dtype=bool)
        for b, nodata in enumerate(self.nodata):
            ok = ~np.isnan(image[b])
            if nodata is not None and not np.isnan(nodata):
                ok &= image[b] != nodata
            valid |= ok
        return valid

    def set_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Per-band statistics applied to cached chunks ((raw - mean) / std, invalid pixels 0)."""
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self._cache.clear()
        self._cached_bytes = 0

    def normalised(self, i: int, j: int) -> tuple[Tensor, Tensor]:
        """Chunk (i, j) normalised (float32, invalid 0) with its class indices (int16), through the cache."""
        key = (i, j)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        image, classes = self.read(i, j)
        x = torch.from_numpy(image)
        if self.mean is not None:
            x = torch.nan_to_num((x - self.mean) / self.std, nan=0.0, posinf=0.0, neginf=0.0)
        item = (x.contiguous(), torch.from_numpy(classes))
        size = item[0].numel() * 4 + item[1].numel() * 2
        limit = self.cache_mb * 1e6
        if size <= limit:
            self._cache[key] = item
            self._cached_bytes += size
            while self._cached_bytes > limit:
                _, (a, b) = self._cache.popitem(last=False)
                self._cached_bytes -= a.numel() * 4 + b.numel() * 2
        return item

    def capacity(self, bands: int) -> int:
        """How many chunks the cache holds (at least 1)."""
        side = self.chunk + self.tile_size - 1
        return max(1, int(self.cache_mb * 1e6 // (side * side * (4 * bands + 2))))
