"""TTA spread over overlapping tiles: every pixel still gets the 8 views, each tile is computed once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_helpers import Counting, make_bundle, make_raster  # noqa: E402
from inference_helpers import read_bands as read
from inference_helpers import run_map as run

from geocamat.errors import ConfigError  # noqa: E402
from geocamat.inference.heads import PixelHead, head_for  # noqa: E402
from geocamat.inference.tta import resolve, tile_views  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


def dense_bundle(seed: int = 0):
    bundle = make_bundle(tile=16, seed=seed)
    bundle.model["output"] = "dense"
    return bundle


def test_any_four_by_four_tiles_hold_each_view_twice():
    rows, cols = np.mgrid[0:11, 0:13]
    views = tile_views(rows, cols)
    assert views.min() == 0 and views.max() == 7
    for r in range(rows.shape[0] - 3):
        for c in range(cols.shape[1] - 3):
            assert (np.bincount(views[r:r + 4, c:c + 4].ravel(), minlength=8) == 2).all(), (r, c)


def test_spread_needs_tiles_a_quarter_apart_else_every_view_of_every_tile():
    assert resolve(True, "spread", 16, 4) == "spread"  # overlap 0.75
    assert resolve(True, "spread", 256, 32) == "spread"  # 0.875
    assert resolve(True, "spread", 16, 8) == "all"  # 0.5: 2 tiles per axis cannot hold 8 views
    assert resolve(True, "all", 16, 4) == "all"
    assert resolve(False, "spread", 16, 4) == "none"


class Mirror(PixelHead):
    """Class 1 where the first band is above its mean; as an extra, the first band itself (equivariant: a
    tile turned and its outputs turned back give the tile's own outputs)."""

    outputs = {"probabilities": 3, "band": 1}

    def __call__(self, batch):
        above = (batch[:, :1] > 0).float()
        probs = torch.cat([0.1 + 0.8 * above, 0.9 - 0.8 * above, torch.zeros_like(above)], dim=1)
        return {"probabilities": probs, "band": batch[:, :1]}


def test_each_tile_is_turned_back_to_its_place(tmp_path):
    img = make_raster(tmp_path / "img.tif", 90, 70, nodata=None)
    bundle = dense_bundle()
    report = run(bundle, [img], tmp_path / "spread", head=Mirror(), tta=True)
    assert report["settings"]["tta_views"] == "spread"
    band = (read(img)[0].astype(np.float32) - 100.0) / 50.0
    np.testing.assert_allclose(read(tmp_path / "spread" / "band.tif")[0], band, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(read(tmp_path / "spread" / "landuse.tif")[0], np.where(band > 0, 1, 2))


def test_spread_computes_each_tile_once_and_averages_the_views_like_all(tmp_path):
    img = make_raster(tmp_path / "img.tif", 96, 80, nodata=None)
    bundle = dense_bundle()
    maps = {}
    for views in ("spread", "all"):
        head = Counting(head_for(bundle, tta=views == "all"))
        report = run(bundle, [img], tmp_path / views, head=head, tta=True, tta_views=views)
        assert report["settings"]["tta_views"] == views and head.tiles == report["tiles"]["tiles_processed"]
        maps[views] = read(tmp_path / views / "confidence.tif")[0]
    run(bundle, [img], tmp_path / "none", tta=False)
    maps["none"] = read(tmp_path / "none" / "confidence.tif")[0]
    inner = (slice(16, -16), slice(16, -16))  # edge pixels are covered by fewer tiles (fewer views)
    spread_to_all = np.abs(maps["spread"] - maps["all"])[inner].mean()
    none_to_all = np.abs(maps["none"] - maps["all"])[inner].mean()
    # an untrained model: 0.74x here; the NC sample's trained model: 0.55x (docs/inference.md)
    assert spread_to_all < 0.85 * none_to_all, (spread_to_all, none_to_all)


def test_a_window_model_at_overlap_half_falls_back_to_every_view(tmp_path):
    img = make_raster(tmp_path / "img.tif", 60, 50, nodata=None)
    report = run(make_bundle(tile=16), [img], tmp_path / "out", tta=True)
    assert report["settings"]["overlap"] == 0.5 and report["settings"]["tta_views"] == "all"


def test_unknown_tta_views_are_refused_before_anything_is_written(tmp_path):
    img = make_raster(tmp_path / "img.tif", 40, 40, nodata=None)
    with pytest.raises(ConfigError, match="tta-views"):
        run(dense_bundle(), [img], tmp_path / "out", tta=True, tta_views="some")
    assert not (tmp_path / "out").exists()



def test_spread_views_leave_no_lattice_with_a_model_trained_under_the_views(tmp_path):
    """Land-use models are trained under random flips/turns, so where a pixel sits in its tile matters to them
    but the tile's orientation hardly does: spreading the views adds no lattice (of the stride, 8 px here, or
    of the views' period, 4 tile rows = 16 px). A model that depended strongly on orientation would show the
    16 px period (docs/inference.md)."""
    from test_inference_engine import PositionBiased, offset_range

    img = make_raster(tmp_path / "img.tif", 192, 160, nodata=None)
    report = run(dense_bundle(), [img], tmp_path / "spread", head=PositionBiased(), tta=True)
    assert report["settings"]["tta_views"] == "spread"
    for name in ("confidence.tif", "cam.tif"):
        for period in (8, 16):
            assert offset_range(tmp_path / "spread" / name, period=period) < 0.005, (name, period)
