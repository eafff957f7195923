"""Connected components of a graph given as an edge list (union-find with path halving)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def connected_components(n: int, edges: Iterable[tuple[int, int]]) -> np.ndarray:
    """The component of each of ``n`` nodes: the smallest node index in it.

    Args:
        n: number of nodes.
        edges: pairs of node indices that belong together.
    """
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edges:
        ri, rj = root(int(i)), root(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(n)], np.int64)
