"""Prediction across ranks: who am I, which units are mine, waiting for the others.

A run over W ranks splits the unit plan (bands of column blocks, :mod:`geocamat.inference.plan`) into W
contiguous stretches of the units in plan order (block by block, top to bottom), balanced by the tiles they
plan. Each rank streams its stretch; a stretch that starts below the top of a block first computes the band
above it *only for its carry* (the overlap rows the next band adds to): that carry depends only on the tiles
of that band (``band_rows >= halo``), so the rank's first unit is bit-identical to a one-process run's. The
work folder is shared; each rank records its units in its own manifest; rank 0 waits for every rank's
manifest to say it finished, and assembles. Where the ranks come from: :mod:`geocamat.inference.launch`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from geocamat.errors import ConfigError, GeocamatError

#: How long rank 0 waits for the other ranks when none of them records a unit (a rank killed without a word).
STALL_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Ranks:
    """This process's place in a run: global rank, world size, rank on this machine, ranks on this machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        """Whether this rank assembles the outputs (rank 0)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (a no-op for one rank; a ``torch.distributed`` barrier otherwise)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        dist.barrier()


@dataclass(frozen=True)
class Segment:
    """Bands ``[start, stop)`` of column block ``block`` computed by one rank."""

    block: int
    start: int
    stop: int

    @property
    def warmup(self) -> int | None:
        """The band computed only for its carry before ``start`` (None at the top of a block)."""
        return self.start - 1 if self.start > 0 else None


def split_units(weights: Sequence[Sequence[float]], world: int) -> list[list[Segment]]:
    """Split the units of a plan into ``world`` contiguous stretches of about equal weight.

    Args:
        weights: ``weights[j][i]``: the work of band ``i`` of column block ``j`` (e.g. its planned tiles).
        world: number of ranks.

    Returns:
        per rank, its segments (one per column block it touches, in plan order); every unit belongs to
        exactly one rank; a rank may get nothing when there are fewer units than ranks.
    """
    if world < 1:
        raise ValueError(f"world size must be >= 1, got {world}")
    units = [(j, i, max(0.0, float(w))) for j, col in enumerate(weights) for i, w in enumerate(col)]
    total = sum(w for _, _, w in units)
    out: list[list[Segment]] = [[] for _ in range(world)]
    cum, r = 0.0, 0
    for n, (j, i, w) in enumerate(units):
        if total > 0:
            # the unit goes to the rank whose share contains the unit's middle (on a boundary: the lower rank,
            # so that a lone unit stays on rank 0, which assembles)
            r = min(world - 1, max(0, math.ceil((cum + w / 2) * world / total) - 1))
        else:
            r = min(world - 1, n * world // len(units))
        cum += w
        segs = out[r]
        if segs and segs[-1].block == j and segs[-1].stop == i:
            segs[-1] = Segment(j, segs[-1].start, i + 1)
        else:
            segs.append(Segment(j, i, i + 1))
    return out


# -- waiting for the other ranks (rank 0) ---------------------------------------------------------------

class RankFailed(GeocamatError):
    """Another rank of the run stopped with an error (the finished units are kept: rerun with --resume)."""


def wait_for_ranks(paths: Mapping[int, Path], *, stall_timeout: float = STALL_TIMEOUT_S,
                   poll: float = 0.2) -> dict[int, dict]:
    """Wait until the manifest of every rank (rank -> path) says ``finished``; returns them.

    A rank that fails writes ``failed`` into its manifest: the wait stops at once with :class:`RankFailed`.
    A rank killed without a word stops the wait when no manifest changed for ``stall_timeout`` seconds.
    """
    last_change, seen = time.monotonic(), None
    while True:
        datas, stamp = {}, []
        for rank, path in paths.items():
            try:
                stamp.append(path.stat().st_mtime_ns)
                datas[rank] = json.loads(path.read_text())
            except (OSError, ValueError):
                stamp.append(None)
                datas[rank] = None
        for rank, data in datas.items():
            if data and data.get("failed"):
                raise RankFailed(f"rank {rank} failed: {data['failed']} (finished units are kept: rerun the same "
                                 "command with --resume)")
        if all(data and data.get("finished") for data in datas.values()):
            return datas
        if stamp != seen:
            seen, last_change = stamp, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout:
            waiting = [rank for rank, d in datas.items() if not (d and d.get("finished"))]
            raise RankFailed(f"ranks {waiting} recorded nothing for {stall_timeout:.0f} s (killed?): the finished "
                             "units are kept: rerun the same command with --resume")
        time.sleep(poll)


def rank_device(dev, asked: str, ranks: Ranks):
    """The device of this rank: with several ranks on a machine, GPU ``cuda:{local rank}``."""
    import torch

    if dev.type != "cuda" or ranks.local_world == 1:
        return dev
    if dev.index is not None:
        raise ConfigError(f"--device {asked} names one GPU, but {ranks.local_world} processes share this machine "
                          "and each takes the GPU of its local rank: use --device cuda")
    dev = torch.device("cuda", ranks.local_rank)
    torch.cuda.set_device(dev)  # current_stream() and friends refer to this rank's GPU
    return dev
