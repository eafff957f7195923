"""The grid search for overlapping boxes and the NMS on it equal their pair-by-pair definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from geocamat.inference import overlaps
from geocamat.inference.overlaps import class_nms, overlapping_pairs


def random_boxes(seed: int, n: int) -> np.ndarray:
    """Boxes of mixed sizes (some 20x the typical one), some with no area, some on a 10 px lattice (touching)."""
    g = np.random.default_rng(seed)
    xy = g.uniform(-50, g.uniform(100, 2000), (n, 2))
    wh = g.uniform(1, 80, (n, 2)) * np.where(g.uniform(size=(n, 1)) < 0.05, 20, 1)
    wh[g.uniform(size=n) < 0.05, g.integers(0, 2)] = 0
    b = np.hstack([xy, xy + wh])
    if seed % 2:
        b = np.round(b / 10) * 10
    return b


def pairs_by_scan(b: np.ndarray) -> set[tuple[int, int]]:
    return {(i, j) for i in range(len(b)) for j in range(i + 1, len(b))
            if min(b[i, 2], b[j, 2]) > max(b[i, 0], b[j, 0]) and min(b[i, 3], b[j, 3]) > max(b[i, 1], b[j, 1])}


@pytest.mark.parametrize("seed", range(6))
def test_overlapping_pairs_are_exactly_the_overlapping_pairs(seed, monkeypatch):
    b = random_boxes(seed, 300)
    want = pairs_by_scan(b)
    assert want  # the case has overlaps to find
    i, j = overlapping_pairs(b)
    assert (i < j).all() and len(set(zip(i.tolist(), j.tolist(), strict=True))) == len(i)  # each pair once
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want
    monkeypatch.setattr(overlaps, "PAIRS_PER_BATCH", 7)  # many small batches: the same pairs
    i, j = overlapping_pairs(b)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(want)


def test_overlapping_pairs_ignore_boxes_without_area_or_with_nan():
    b = np.array([[0, 0, 10, 10], [5, 5, 5, 20], [2, 2, 8, 8], [np.nan, 0, 10, 10], [9, 9, 30, 30]], float)
    i, j = overlapping_pairs(b)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 2), (0, 4)]
    assert len(overlapping_pairs(b[:1])[0]) == 0 and len(overlapping_pairs(np.zeros((0, 4)))[0]) == 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou", [0.1, 0.4, 0.5, 0.7])
def test_class_nms_keeps_what_torchvision_keeps(seed, iou):
    g = np.random.default_rng(100 + seed)
    base = random_boxes(seed, 120)
    b = np.vstack([base] + [base + g.normal(0, 3, base.shape) * (base[:, 2:] - base[:, :2]).mean() / 20
                            for _ in range(2)])  # each box detected three times, jittered
    scores, labels = g.permutation(len(b)) / len(b), g.integers(0, 3, len(b))  # distinct scores
    want = batched_nms(torch.as_tensor(b), torch.as_tensor(scores), torch.as_tensor(labels), iou).numpy()
    assert 0 < len(want) < len(b)
    np.testing.assert_array_equal(class_nms(b, scores, labels, iou), want)
