"""Connected components equal those of a breadth-first search."""

from __future__ import annotations

import numpy as np
import pytest

from geocamat.unionfind import connected_components


def components_by_search(n: int, edges) -> np.ndarray:
    near = [[] for _ in range(n)]
    for i, j in edges:
        near[i].append(j)
        near[j].append(i)
    out = np.full(n, -1)
    for start in range(n):
        if out[start] < 0:
            out[start], todo = start, [start]
            while todo:
                for k in near[todo.pop()]:
                    if out[k] < 0:
                        out[k] = start
                        todo.append(k)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_components_are_those_of_a_search(seed):
    g = np.random.default_rng(seed)
    n = 400
    edges = g.integers(0, n, (int(g.integers(50, 500)), 2))
    chain = g.permutation(n)[:60]  # a long path in shuffled order takes several rounds of hooking
    edges = np.vstack([edges, np.stack([chain[:-1], chain[1:]], axis=1)])
    want = components_by_search(n, edges.tolist())
    np.testing.assert_array_equal(connected_components(n, edges), want)
    np.testing.assert_array_equal(connected_components(n, map(tuple, edges.tolist())), want)


def test_no_edges_leaves_every_node_alone():
    np.testing.assert_array_equal(connected_components(3, []), [0, 1, 2])
