"""The labelled windows of a scene, found once by streaming it chunk by chunk: an index, not the pixels.

Each checkerboard block (see :mod:`geocamat.data.splits`) is laid out with TorchGeo's
``GriddedPatchSampler`` (training blocks at ``stride``, validation blocks at ``tile_size // 2``); windows
reaching outside their block are dropped, so no training window overlaps a validation block. A window is
kept with the same rules as the in-memory tiles of :mod:`geocamat.data.tiles`: at least ``min_valid`` of
its pixels valid, and within its central ``footprint`` at least one labelled pixel (``min_labelled`` of
them for labels per pixel) whose majority class holds at least ``purity`` of them; that class is the
window's label. The index keeps three small integers per window (row, column, class), so it costs
~10 bytes per window where an in-memory tile costs ``4 * bands * tile_size**2``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from geocamat.data.chunks import ChunkReader
from geocamat.data.splits import block_windows
from geocamat.data.tiles import TileOptions
from geocamat.errors import InvalidLabelsError


@dataclass
class WindowIndex:
    """Windows of one side of the split: top-left pixel (row, col) on the grid and class index, chunk-ordered."""

    rows: np.ndarray
    cols: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, ids: np.ndarray) -> WindowIndex:
        """The windows ``ids`` (in that order)."""
        return WindowIndex(self.rows[ids], self.cols[ids], self.labels[ids])


def block_lattice(dataset, grid, r0: int, r1: int, c0: int, c1: int, size: int, stride: int) -> np.ndarray:
    """Top-left pixels (n, 2) of the windows TorchGeo's ``GriddedPatchSampler`` lays in a block, inside it.

    The sampler's layout is a regular lattice (centred on the block, snapped to pixels); its first patch and
    its row/column counts are taken from TorchGeo, the rest is computed, so that millions of positions do not
    cost a shapely test each. Windows reaching outside the block are dropped.
    """
    from shapely.geometry import box
    from torchgeo.samplers import GriddedPatchSampler
    from torchgeo.samplers.utils import convolution_arithmetic

    t = grid.transform
    roi = box(t.c + c0 * t.a, t.f + r1 * t.e, t.c + c1 * t.a, t.f + r0 * t.e)
    sampler = GriddedPatchSampler(dataset, size=size, stride=stride, roi=roi)
    xmin, ymin, xmax, ymax = sampler.geometry.bounds
    n_rows = convolution_arithmetic(ymax - ymin, sampler.size[0], sampler.stride[0])
    n_cols = convolution_arithmetic(xmax - xmin, sampler.size[1], sampler.stride[1])
    x, y = next(iter(sampler))  # the first patch: the lowest row (southmost), the leftmost column
    first_col = int(round((x.start - roi.bounds[0]) / t.a))
    bottom_row = int(round((roi.bounds[3] - y.stop) / -t.e))
    cols = first_col + stride * np.arange(n_cols)
    rows = bottom_row - stride * np.arange(n_rows)
    cols = cols[(cols >= 0) & (cols + size <= c1 - c0)] + c0
    rows = rows[(rows >= 0) & (rows + size <= r1 - r0)] + r0
    rr, cc = np.meshgrid(np.sort(rows), cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.int64)


def _box_sums(integral: np.ndarray, r: np.ndarray, c: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of boxes (r..r+h, c..c+w) from a zero-padded integral image (..., H+1, W+1)."""
    return (integral[..., r + h, c + w] - integral[..., r, c + w] - integral[..., r + h, c]
            + integral[..., r, c]).astype(np.int64)


def _integral(a: np.ndarray) -> np.ndarray:
    out = np.zeros(a.shape[:-2] + (a.shape[-2] + 1, a.shape[-1] + 1), dtype=np.int32)
    out[..., 1:, 1:] = a.cumsum(axis=-2, dtype=np.int32).cumsum(axis=-1, dtype=np.int32)
    return out


def window_labels(classes: np.ndarray, valid: np.ndarray, r: np.ndarray, c: np.ndarray, num_classes: int,
                  opts: TileOptions, sparse: bool) -> np.ndarray:
    """Class index of each window (-1: rejected) from a chunk's class indices and validity, vectorised.

    Args:
        classes: (h, w) class indices of the chunk (-1 unlabelled or invalid).
        valid: (h, w) valid imagery.
        r: window top rows within the chunk.
        c: window left columns within the chunk.
        num_classes: K.
        opts: the thresholds (tile size, footprint, min_valid, min_labelled, purity).
        sparse: point labels (no ``min_labelled``).
    """
    t = opts.tile_size
    side = max(1, int(round(opts.footprint * t)))
    lo = (t - side) // 2
    share_valid = _box_sums(_integral(valid.astype(np.int32)), r, c, t, t) / float(t * t)
    onehot = (classes[None] == np.arange(num_classes, dtype=classes.dtype)[:, None, None]).astype(np.int32)
    counts = _box_sums(_integral(onehot), r + lo, c + lo, side, side)  # (K, n)
    labelled = counts.sum(axis=0)
    best = counts.argmax(axis=0)  # ties: the smallest code, as np.unique + argmax in tiles.py
    top = counts.max(axis=0)
    keep = (share_valid >= opts.min_valid) & (labelled > 0) & (top >= opts.purity * labelled)
    if not sparse:
        keep &= labelled >= opts.min_labelled * side * side
    return np.where(keep, best, -1)


def index_windows(reader: ChunkReader, dataset, opts: TileOptions, num_classes: int, sparse: bool,
                  log=None, sources=()) -> tuple[WindowIndex, WindowIndex]:
    """Scan the scene once, chunk by chunk: (training windows, validation windows).

    Memory holds one chunk and the candidate positions (16 bytes each), never the scene.

    Args:
        reader: chunks of the image and labels.
        dataset: the TorchGeo dataset the samplers lay windows on.
        opts: window options (:class:`geocamat.data.tiles.TileOptions`; ``max_tiles`` is not used: every
            window is indexed).
        num_classes: number of classes.
        sparse: point labels.
        log: optional progress callback.
        sources: the image files (named when none of their pixels is valid).

    Raises:
        InvalidRasterError: no pixel of the image is valid.
        InvalidLabelsError: no window passes the thresholds on one side of the split.
    """
    grid = reader.grid
    split = _Split(grid.shape, opts.blocks, opts.val_parity)
    candidates: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for _, _, r0, r1, c0, c1 in block_windows(grid.shape, opts.blocks):
        if r1 - r0 < opts.tile_size or c1 - c0 < opts.tile_size:
            continue
        side = split.side(r0, c0)
        stride = opts.stride if side == 0 else max(1, opts.tile_size // 2)
        try:
            candidates[side].append(block_lattice(dataset, grid, r0, r1, c0, c1, opts.tile_size, stride))
        except (IndexError, ValueError, StopIteration):
            continue
    by_chunk: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    for side in (0, 1):
        pos = np.concatenate(candidates[side]) if candidates[side] else np.zeros((0, 2), np.int64)
        chunk = reader.chunk_of(pos[:, 0], pos[:, 1])
        order = np.argsort(chunk, kind="stable")
        pos, chunk = pos[order], chunk[order]
        starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]]) if len(chunk) else np.zeros(0, int)
        for a, b in zip(starts, np.r_[starts[1:], len(chunk)], strict=True):
            by_chunk[int(chunk[a])][side] = pos[a:b]
    found: dict[int, list[np.ndarray]] = {0: [], 1: []}
    labelled = {0: 0, 1: 0}
    valid_pixels = 0
    n_cols = reader.shape[1]
    for k, chunk_id in enumerate(sorted(by_chunk)):
        i, j = divmod(chunk_id, n_cols)
        image, classes = reader.read(i, j)
        valid = reader.valid(image)
        r0, r1, c0, c1 = reader.extent(i, j)
        own = classes[:min(reader.chunk, r1 - r0), :min(reader.chunk, c1 - c0)]  # pixels of this chunk only
        own_side = split.sides(r0, c0, own.shape)
        valid_pixels += int(valid[:own.shape[0], :own.shape[1]].sum())
        for side in (0, 1):
            labelled[side] += int(((own >= 0) & (own_side == side)).sum())
        for side, pos in by_chunk[chunk_id].items():
            label = window_labels(classes, valid, pos[:, 0] - r0, pos[:, 1] - c0, num_classes, opts, sparse)
            keep = label >= 0
            found[side].append(np.column_stack([pos[keep], label[keep]]))
        if log and (k + 1) % 500 == 0:
            log(f"indexed {k + 1} of {len(by_chunk)} chunks")
    if not valid_pixels and not (found[0] and any(len(f) for f in found[0])):
        from geocamat.errors import InvalidRasterError

        names = ", ".join(str(p) for p in list(sources)[:3]) + (", ..." if len(sources) > 3 else "")
        raise InvalidRasterError(f"no valid pixels in {names or 'the images'}: every pixel is nodata; check the "
                                 "file's nodata value (gdalinfo) or give other images")
    out = []
    for side, name in ((0, "training"), (1, "validation")):
        rows = np.concatenate(found[side]) if found[side] else np.zeros((0, 3), np.int64)
        if not len(rows) and not labelled[side]:
            side_blocks = opts.val_parity if side else {"odd": "even", "even": "odd"}[opts.val_parity]
            raise InvalidLabelsError(
                f"no {name} tile: no label falls in the {name} blocks (the {side_blocks} blocks of a "
                f"{opts.blocks}x{opts.blocks} checkerboard); add labels there, or change --blocks or "
                "--set val_parity=...")
        if not len(rows):
            raise InvalidLabelsError(
                f"no {name} tile passed the label thresholds (purity {opts.purity}, tile {opts.tile_size} px): "
                "lower --purity or --tile-size, or check that labels cover the imagery")
        out.append(WindowIndex(rows[:, 0].astype(np.int32), rows[:, 1].astype(np.int32),
                               rows[:, 2].astype(np.int16)))
    return out[0], out[1]


class _Split:
    """The checkerboard split evaluated per pixel range, without a full-grid array."""

    def __init__(self, shape: tuple[int, int], blocks: int, val_parity: str) -> None:
        self.shape, self.blocks = shape, blocks
        self.parity = 1 if val_parity == "odd" else 0

    def sides(self, r0: int, c0: int, shape: tuple[int, int]) -> np.ndarray:
        rows, cols = self.shape
        rb = ((r0 + np.arange(shape[0])) * self.blocks) // rows
        cb = ((c0 + np.arange(shape[1])) * self.blocks) // cols
        return (((rb[:, None] + cb[None, :]) % 2) == self.parity).astype(np.int8)

    def side(self, r: int, c: int) -> int:
        return int(self.sides(r, c, (1, 1))[0, 0])
