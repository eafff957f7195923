"""Overview levels computed per unit: mode for classes, mean of valid values for floats."""

from __future__ import annotations

import numpy as np
import pytest

from geocamat.outputs.overviews import mode_2x2, nanmean_2x2, overview_factors, pyramid


def test_mode_ignores_nodata_and_breaks_ties_in_row_order():
    a = np.array([[1, 2, 0, 0, 3, 3],
                  [2, 2, 0, 5, 4, 4]], np.uint8)
    np.testing.assert_array_equal(mode_2x2(a, nodata=0), [[2, 5, 3]])


def test_mode_of_odd_sizes_pads_with_nodata():
    a = np.array([[1, 1, 7], [1, 2, 7], [3, 0, 0]], np.uint8)
    np.testing.assert_array_equal(mode_2x2(a, nodata=0), [[1, 7], [3, 0]])


def test_nanmean_ignores_nan_and_keeps_empty_blocks_nan():
    a = np.array([[[1.0, 3.0, np.nan, np.nan], [np.nan, 5.0, np.nan, np.nan]]], np.float32)
    out = nanmean_2x2(a)
    assert out.dtype == np.float32 and out.shape == (1, 1, 2)
    assert out[0, 0, 0] == pytest.approx(3.0) and np.isnan(out[0, 0, 1])


def test_factors_follow_the_cog_rule():
    assert overview_factors(500, 400) == []
    assert overview_factors(513, 10) == [2]
    assert overview_factors(8192, 8192) == [2, 4, 8, 16]
    assert overview_factors(100, 8193) == [2, 4, 8, 16, 32]


@pytest.mark.parametrize("target,tile,stride,factor,expected", [
    (1024, 256, 128, 16, 1024),   # powers of two: unchanged
    (1024, 24, 12, 16, 1056),     # lcm(12, 16) = 48
    (1024, 16, 3, 32, 1056),      # lcm(3, 32) = 96
    (1024, 500, 250, 32, 1250),   # lcm(250, 32) = 4000 > 2x: stride multiple only (GDAL makes the overviews)
    (4096, 16, 8, 1, 4096),
])
def test_unit_sizes_align_to_the_stride_and_the_overview_factor(target, tile, stride, factor, expected):
    from geocamat.inference.plan import unit_size

    assert unit_size(target, tile, stride, factor) == expected


def test_pyramid_levels_halve_each_time():
    a = np.random.default_rng(0).integers(1, 4, (1, 37, 20)).astype(np.uint8)
    levels = pyramid(a, [2, 4, 8], classes=True, nodata=0)
    assert [lv.shape for lv in levels] == [(1, 19, 10), (1, 10, 5), (1, 5, 3)]
    with pytest.raises(ValueError):
        pyramid(a, [4], classes=True, nodata=0)
