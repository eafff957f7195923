"""Samplers of indexed windows: a new draw every epoch, chunk-local order, one disjoint shard per rank.

Under DDP (``torch.distributed`` initialised), every rank draws the same epoch order from ``(seed, epoch)``
and takes its own contiguous shard of it (padded by wrapping so that every rank runs as many batches), so
the ranks' windows are disjoint within an epoch (but for the padding) and change every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class WindowSampler(Sampler[int]):
    """Indices of windows for one epoch, ordered so that a bounded chunk cache is read once per chunk.

    Training (``shuffle=True``): a full pass over every window in random order, or ``num_samples`` windows
    drawn at random (``class_balance`` > 0: rare classes drawn more often, with replacement); the epoch's windows
    are then grouped by chunk: chunks in random order, ``group`` chunks at a time, the windows of a group
    shuffled together. Validation (``shuffle=False``): every window (or ``num_samples`` drawn once) in index order,
    every epoch.

    Args:
        chunks: chunk id of every window.
        labels: class index of every window (for ``class_balance``).
        shuffle: draw a new random order every epoch.
        num_samples: windows per epoch (None: every window once).
        class_balance: a window of a class with n windows is drawn with probability proportional to
            n^-class_balance: 0 as the labels hold them, 1 every class equally often, 0.5 in between (square-root
            balance); draws ``num_samples`` (or ``len(labels)``) windows with replacement.
        group: chunks whose windows are mixed together (the cache should hold them).
        seed: base seed; epoch ``e`` uses ``(seed, e)``.
        rank: this process's rank (default: from ``torch.distributed`` when it is iterated).
        world: number of ranks (default: likewise).
    """

    def __init__(self, chunks: np.ndarray, labels: np.ndarray, *, shuffle: bool = True,
                 num_samples: int | None = None, class_balance: float = 0.0, group: int = 64, seed: int = 0,
                 rank: int | None = None, world: int | None = None) -> None:
        self.chunks = np.asarray(chunks)
        self.labels = np.asarray(labels)
        self.shuffle = shuffle
        self.num_samples = num_samples
        self.class_balance = float(class_balance)
        self.group = max(1, int(group))
        self.seed = int(seed)
        self.epoch = 0
        self._rank, self._world = rank, world

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = int(epoch)

    def _placement(self) -> tuple[int, int]:
        if self._rank is not None and self._world is not None:
            return self._rank, self._world
        return rank_and_world()

    def epoch_order(self) -> np.ndarray:
        """Every rank's windows of this epoch, in order (before sharding)."""
        n = len(self.chunks)
        if not self.shuffle:
            return self.fixed_subset()
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.class_balance > 0:
            counts = np.bincount(self.labels).astype(np.float64)
            p = counts[self.labels] ** -self.class_balance
            ids = rng.choice(n, size=self.num_samples or n, replace=True, p=p / p.sum())
        elif self.num_samples is not None:
            ids = rng.choice(n, size=self.num_samples, replace=self.num_samples > n)
        else:
            ids = rng.permutation(n)
        unique = np.unique(self.chunks[ids])
        rank_of_chunk = np.empty(int(unique.max()) + 1 if len(unique) else 0, dtype=np.int64)
        rank_of_chunk[unique] = rng.permutation(len(unique))
        group = rank_of_chunk[self.chunks[ids]] // self.group
        return ids[np.lexsort((rng.random(len(ids)), group))]

    def fixed_subset(self) -> np.ndarray:
        """Validation's windows: every window, or ``num_samples`` of them drawn once with the seed (the same every
        epoch, in index order: each chunk read once)."""
        n = len(self.chunks)
        if self.num_samples is None or self.num_samples >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng([self.seed, 1]).choice(n, size=self.num_samples, replace=False))

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order()
        rank, world = self._placement()
        per_rank = math.ceil(len(order) / world)
        if per_rank * world > len(order):
            order = np.resize(order, per_rank * world)  # wrap around: every rank gets as many windows
        return iter(order[rank * per_rank:(rank + 1) * per_rank].tolist())

    def __len__(self) -> int:
        if not self.shuffle:
            return math.ceil(len(self.fixed_subset()) / self._placement()[1])
        n = len(self.chunks) if self.num_samples is None else self.num_samples
        if self.shuffle and self.class_balance > 0 and self.num_samples is None:
            n = len(self.chunks)
        return math.ceil(n / self._placement()[1])
