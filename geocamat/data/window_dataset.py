"""Streaming training data: indexed windows read from chunks of the user's stack by DataLoader workers.

:func:`streaming_data` indexes the scene once (:mod:`geocamat.data.windows`), takes the normalisation
statistics from a bounded random sample of training windows, and returns map-style datasets whose samples
are cut from normalised chunks (:class:`geocamat.data.chunks.ChunkReader`, a bounded cache per worker).
Memory does not grow with the scene: the index holds ~10 bytes per window, the cache and the statistics
sample are bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from geocamat.data.chunks import ChunkReader
from geocamat.data.labels import LabelRaster
from geocamat.data.tiles import TileOptions
from geocamat.data.windows import WindowIndex, index_windows

# the statistics / registration sample: at most this many windows and this many megabytes of pixels
SAMPLE_WINDOWS = 20000
SAMPLE_MB = 256


class WindowDataset(Dataset):
    """Windows of an index as TorchGeo-style samples: tensors only (image, label, index[, mask]).

    Args:
        reader: the chunk reader (normalisation set).
        index: the windows.
        masks: include each window's per-pixel class indices as ``mask`` (-1 unlabelled).
    """

    def __init__(self, reader: ChunkReader, index: WindowIndex, masks: bool = False) -> None:
        self.reader, self.index, self.masks = reader, index, masks

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, Tensor]:
        r, c = int(self.index.rows[k]), int(self.index.cols[k])
        s, t = self.reader.chunk, self.reader.tile_size
        i, j = r // s, c // s
        image, classes = self.reader.normalised(i, j)
        lr, lc = r - i * s, c - j * s
        sample = {"image": image[:, lr:lr + t, lc:lc + t], "label": torch.tensor(int(self.index.labels[k])),
                  "index": torch.tensor(k)}
        if self.masks:
            sample["mask"] = classes[lr:lr + t, lc:lc + t].long()
        return sample

    def chunks(self) -> np.ndarray:
        """Chunk id of every window (for :class:`geocamat.data.samplers.WindowSampler`)."""
        return self.reader.chunk_of(self.index.rows, self.index.cols)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a forked worker opens its own files and keeps its own chunk cache."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    if info is not None and isinstance(info.dataset, WindowDataset):
        info.dataset.reader.reset()


@dataclass
class StreamingData:
    """What training needs from a streamed scene.

    Attributes:
        reader: chunks, normalised with ``mean``/``std``.
        train: training windows.
        val: validation windows (fixed).
        mean: per-band mean over the statistics sample.
        std: per-band standard deviation over it.
        sample_images: the statistics sample, normalised (N, C, T, T), for the registration check.
        sample_masks: its per-pixel class indices (N, T, T).
    """

    reader: ChunkReader
    train: WindowIndex
    val: WindowIndex
    mean: list[float]
    std: list[float]
    sample_images: Tensor
    sample_masks: Tensor


def read_windows(reader: ChunkReader, index: WindowIndex) -> tuple[Tensor, Tensor]:
    """Raw windows (N, C, T, T) float32 (NaN invalid) and class indices (N, T, T), reading each chunk once."""
    t = reader.tile_size
    chunks = reader.chunk_of(index.rows, index.cols)
    order = np.argsort(chunks, kind="stable")
    images = np.empty((len(index), len(reader.nodata), t, t), dtype=np.float32)
    masks = np.empty((len(index), t, t), dtype=np.int16)
    n_cols = reader.shape[1]
    start = 0
    while start < len(order):
        chunk = chunks[order[start]]
        stop = start
        while stop < len(order) and chunks[order[stop]] == chunk:
            stop += 1
        i, j = divmod(int(chunk), n_cols)
        image, classes = reader.read(i, j)
        r0, _, c0, _ = reader.extent(i, j)
        for k in order[start:stop]:
            r, c = int(index.rows[k]) - r0, int(index.cols[k]) - c0
            images[k] = image[:, r:r + t, c:c + t]
            masks[k] = classes[r:r + t, c:c + t]
        start = stop
    return torch.from_numpy(images), torch.from_numpy(masks)


def blockwise_statistics(images: Tensor, block: int = 1024) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over the finite pixels of (N, C, T, T), ``block`` windows at a time.

    The same two-pass formula as :func:`geocamat.data.tiles.band_statistics`, without its full-size float64
    copies (which cost ~8x the sample's memory).
    """
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    count = torch.zeros(c, dtype=torch.float64)
    for a in range(0, len(images), block):
        x = images[a:a + block].transpose(0, 1).reshape(c, -1).double()
        finite = torch.isfinite(x)
        total += torch.where(finite, x, 0).sum(dim=1)
        count += finite.sum(dim=1)
    mean = total / count.clamp_min(1)
    squares = torch.zeros(c, dtype=torch.float64)
    for a in range(0, len(images), block):
        x = images[a:a + block].transpose(0, 1).reshape(c, -1).double()
        finite = torch.isfinite(x)
        squares += torch.where(finite, (x - mean[:, None]) ** 2, 0).sum(dim=1)
    std = (squares / count.clamp_min(1)).sqrt().clamp_min(1e-6)
    return mean.tolist(), std.tolist()


def statistics_sample(index: WindowIndex, bands: int, tile_size: int, seed: int) -> WindowIndex:
    """A random sample of at most :data:`SAMPLE_WINDOWS` windows and :data:`SAMPLE_MB` megabytes (all if fewer)."""
    cap = min(SAMPLE_WINDOWS, max(1, int(SAMPLE_MB * 1e6 // (bands * tile_size**2 * 4))))
    if len(index) <= cap:
        return index
    ids = np.sort(np.random.default_rng(seed).choice(len(index), cap, replace=False))
    return index.take(ids)


def streaming_data(stack, labels: LabelRaster, opts: TileOptions, *, cache_mb: float = 256.0, chunk: int = 256,
                   log=None) -> StreamingData:
    """Index the scene, take the normalisation statistics from a bounded sample, normalise the reader.

    Args:
        stack: the :class:`geocamat.data.stack.ImageStack`.
        labels: labels on the image grid.
        opts: window options.
        cache_mb: bound of each process's chunk cache, megabytes.
        chunk: chunk side, pixels.
        log: optional progress callback.

    Raises:
        InvalidLabelsError: no window on one side of the split.
    """

    from geocamat.data.tiles import check_tile_fits

    check_tile_fits(labels.grid.shape, opts)
    reader = ChunkReader(stack.paths, stack.nodata, labels.path, labels.grid, labels.class_ids, opts.tile_size,
                         chunk=chunk, cache_mb=cache_mb)
    train, val = index_windows(reader, reader.dataset(), opts, len(labels.class_ids), labels.sparse, log=log,
                               sources=stack.sources)
    sample = statistics_sample(train, stack.num_bands, opts.tile_size, opts.seed)
    raw, masks = read_windows(reader, sample)
    mean, std = blockwise_statistics(raw)
    m = torch.tensor(mean, dtype=raw.dtype).view(1, -1, 1, 1)
    sd = torch.tensor(std, dtype=raw.dtype).view(1, -1, 1, 1)
    images = torch.nan_to_num_(raw.sub_(m).div_(sd), nan=0.0, posinf=0.0, neginf=0.0)  # as tiles.normalise, in place
    reader.set_normalisation(mean, std)
    return StreamingData(reader, train, val, mean, std, images, masks)
