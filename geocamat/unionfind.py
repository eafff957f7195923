"""Connected components of a graph given as an edge list (vectorised hooking and pointer jumping)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def connected_components(n: int, edges: Iterable[tuple[int, int]] | np.ndarray) -> np.ndarray:
    """The component of each of ``n`` nodes: the smallest node index in it.

    Every node points to a parent with a smaller index (at first itself); each round hooks the root of every
    edge's larger side under the smaller side's root, then jumps every pointer to its root, until every edge
    joins nodes of one root. A node's root is never larger than the node, so the root of a component is its
    smallest node.

    Args:
        n: number of nodes.
        edges: pairs of node indices that belong together ((E, 2) array or any iterable of pairs).
    """
    e = np.asarray(edges if isinstance(edges, np.ndarray) else list(edges), np.int64).reshape(-1, 2)
    i, j = e[:, 0], e[:, 1]
    parent = np.arange(n, dtype=np.int64)
    while True:
        ri, rj = parent[i], parent[j]
        split = ri != rj
        if not split.any():
            return parent
        lo, hi = np.minimum(ri[split], rj[split]), np.maximum(ri[split], rj[split])
        np.minimum.at(parent, hi, lo)
        while True:  # pointer jumping: every node to its root
            up = parent[parent]
            if (up == parent).all():
                break
            parent = up
