"""Streaming training data: labels written window by window, the window index, chunk reads, samplers."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from geocamat.data import labels as labels_module
from geocamat.data.labels import grid_of_dataset, labels_on_grid
from geocamat.data.stack import open_stack
from geocamat.data.tiles import TileOptions, band_statistics, extract_tiles, normalise
from tests.conftest import SAMPLES, write_raster

NC = SAMPLES / "nc_landsat"


def _scene(tmp_path, synthetic_scene):
    stack = open_stack([str(synthetic_scene["image"])], tmp_path / "work")
    grid = grid_of_dataset(stack.dataset())
    return stack, grid


def test_labels_are_written_window_by_window_as_a_whole_grid_burn(tmp_path, monkeypatch):
    stack = open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path / "work")
    grid = grid_of_dataset(stack.dataset())
    whole = {}
    for name, field in (("strata.tif", None), ("landsat96_polygons.shp", "label"), ("landsat96_points.shp", "id")):
        whole[name] = rasterio.open(labels_on_grid(NC / name, grid, tmp_path / "whole" / name, field).path).read(1)
    monkeypatch.setattr(labels_module, "LABEL_WINDOW", 96)  # the 443 x 489 grid in 30 windows
    for name, field in (("strata.tif", None), ("landsat96_polygons.shp", "label"), ("landsat96_points.shp", "id")):
        out = labels_on_grid(NC / name, grid, tmp_path / "windows" / name, field)
        windowed = rasterio.open(out.path).read(1)
        assert np.array_equal(windowed, whole[name]), name
        assert out.class_ids == sorted(int(v) for v in np.unique(whole[name][whole[name] >= 0]))


def test_block_lattice_is_the_gridded_patch_sampler_inside_the_block(tmp_path, synthetic_scene):
    from torchgeo.samplers import GriddedPatchSampler

    from geocamat.data.tiles import _block_roi
    from geocamat.data.windows import block_lattice

    stack, grid = _scene(tmp_path, synthetic_scene)
    ds = stack.dataset()
    t = grid.transform
    for r0, r1, c0, c1, size, stride in ((0, 48, 0, 48, 16, 4), (48, 96, 0, 48, 16, 8), (24, 96, 5, 91, 12, 5)):
        roi = _block_roi(grid, r0, r1, c0, c1)
        expected = set()
        for x, y in GriddedPatchSampler(ds, size=size, stride=stride, roi=roi):
            col = int(round((x.start - roi.bounds[0]) / t.a))
            row = int(round((roi.bounds[3] - y.stop) / -t.e))
            if row >= 0 and col >= 0 and row + size <= r1 - r0 and col + size <= c1 - c0:
                expected.add((row + r0, col + c0))
        got = {tuple(p) for p in block_lattice(ds, grid, r0, r1, c0, c1, size, stride).tolist()}
        assert got == expected and got


@pytest.mark.parametrize("footprint, chunk", [(1.0, 20), (0.25, 256)])
def test_indexed_windows_are_the_in_memory_tiles(tmp_path, synthetic_scene, footprint, chunk):
    from geocamat.data.window_dataset import WindowDataset, streaming_data

    stack, grid = _scene(tmp_path, synthetic_scene)
    labels = labels_on_grid(synthetic_scene["labels"], grid, tmp_path / "work")
    opts = TileOptions(tile_size=16, stride=4, blocks=2, footprint=footprint, purity=0.6)
    train, val = extract_tiles(stack, labels, opts)
    data = streaming_data(stack, labels, opts, chunk=chunk)
    assert (len(data.train), len(data.val)) == (len(train), len(val))
    assert np.bincount(data.train.labels).tolist() == torch.bincount(train.labels).tolist()
    mean, std = band_statistics(train)
    assert np.allclose(mean, data.mean) and np.allclose(std, data.std)
    ds = WindowDataset(data.reader, data.train, masks=True)
    streamed = torch.stack([ds[k]["image"] for k in range(len(ds))])
    masks = torch.stack([ds[k]["mask"] for k in range(len(ds))])
    key = lambda x: torch.sort(x.double().sum(dim=tuple(range(1, x.dim())))).values  # noqa: E731
    assert torch.allclose(key(streamed), key(normalise(train.images, mean, std)), atol=1e-3)
    assert torch.equal(key(masks), key(train.masks.long()))
    # the nodata collar (top 4 rows) is invalid: it is 0 after normalisation, -1 in the masks
    top = [k for k in range(len(ds)) if data.train.rows[k] == 0]
    assert top and all(bool((ds[k]["mask"][:4] == -1).all()) for k in top)


def test_no_window_on_one_side_is_a_one_line_error(tmp_path, synthetic_scene):
    from geocamat.data.window_dataset import streaming_data
    from geocamat.errors import InvalidLabelsError

    stack, grid = _scene(tmp_path, synthetic_scene)
    lab = synthetic_scene["label_array"].copy()
    lab[:48, 48:] = 0
    lab[48:, :48] = 0  # nothing left in the odd blocks of a 2x2 checkerboard
    path = write_raster(tmp_path / "half.tif", lab, nodata=0)
    labels = labels_on_grid(path, grid, tmp_path / "work")
    with pytest.raises(InvalidLabelsError, match="no label falls in the validation blocks"):
        streaming_data(stack, labels, TileOptions(tile_size=16, stride=4, blocks=2))


def test_chunk_cache_stays_within_its_bound(tmp_path, synthetic_scene):
    from geocamat.data.chunks import ChunkReader

    stack, grid = _scene(tmp_path, synthetic_scene)
    labels = labels_on_grid(synthetic_scene["labels"], grid, tmp_path / "work")
    one_chunk_mb = (16 + 16 - 1) ** 2 * (3 * 4 + 2) / 1e6
    reader = ChunkReader(stack.paths, stack.nodata, labels.path, grid, labels.class_ids, 16, chunk=16,
                         cache_mb=2.5 * one_chunk_mb)
    assert reader.capacity(3) == 2
    for i in range(6):
        for j in range(6):
            reader.normalised(i, j)
            assert reader._cached_bytes <= reader.cache_mb * 1e6  # edge chunks are smaller: 2 or 3 fit
    reads = reader.reads
    reader.normalised(5, 5)  # the last one is cached
    assert reader.reads == reads
    reader.normalised(0, 0)
    assert reader.reads == reads + 1


def test_sampler_shards_are_disjoint_cover_the_epoch_and_change_every_epoch():
    from geocamat.data.samplers import WindowSampler

    chunks = np.repeat(np.arange(20), 10)
    labels = np.arange(200) % 4
    shards = [list(WindowSampler(chunks, labels, seed=3, rank=r, world=3)) for r in range(3)]
    assert all(len(s) == 67 for s in shards)  # 200 windows over 3 ranks: padded to 3 x 67
    flat = sum(shards, [])
    assert set(flat) == set(range(200)) and len(set(flat)) == 200 and len(flat) - 200 == 1
    one = WindowSampler(chunks, labels, seed=3, rank=0, world=1)
    first = list(one)
    assert sorted(first) == list(range(200)) and list(one) == first
    one.set_epoch(1)
    assert list(one) != first and sorted(one) == list(range(200))
    # the windows of a group of chunks come together: with groups of 2 chunks, 20 windows in a row
    grouped = WindowSampler(chunks, labels, seed=0, group=2, rank=0, world=1)
    order = np.array(list(grouped))
    for a in range(0, 200, 20):
        assert len(set(chunks[order[a:a + 20]])) == 2


def test_sampler_draws_a_fixed_number_and_balances_classes():
    from geocamat.data.samplers import WindowSampler

    chunks = np.zeros(1000, dtype=int)
    labels = np.r_[np.zeros(950, int), np.ones(50, int)]
    drawn = list(WindowSampler(chunks, labels, num_samples=4000, class_balance=1.0, seed=0, rank=0, world=1))
    assert len(drawn) == 4000
    share = labels[drawn].mean()
    assert 0.45 < share < 0.55  # 5% of the windows, half of the draws
    root = list(WindowSampler(chunks, labels, num_samples=4000, class_balance=0.5, seed=0, rank=0, world=1))
    assert 0.16 < labels[root].mean() < 0.22  # square-root balance: sqrt(50) / (sqrt(950) + sqrt(50)) = 0.187
    plain = list(WindowSampler(chunks, labels, num_samples=300, seed=0, rank=0, world=1))
    assert len(plain) == 300 and len(set(plain)) == 300  # fewer than the windows: without replacement


def test_validation_scores_a_fixed_sample_of_its_windows_every_epoch():
    """val_samples: a 10x scene's 139,772 validation windows were all read every epoch (70x a 2,000-window
    epoch); now a sample drawn once, the same every epoch, in index order, shared out across ranks."""
    from geocamat.data.samplers import WindowSampler

    chunks, labels = np.repeat(np.arange(50), 20), np.zeros(1000, int)
    val = WindowSampler(chunks, labels, shuffle=False, num_samples=300, seed=4, rank=0, world=1)
    first = list(val)
    val.set_epoch(1)
    assert first == list(val) and len(first) == 300 == len(set(first)) and first == sorted(first)
    shards = [list(WindowSampler(chunks, labels, shuffle=False, num_samples=300, seed=4, rank=r, world=2))
              for r in range(2)]
    assert sorted(shards[0] + shards[1]) == first
    assert list(WindowSampler(chunks, labels, shuffle=False, num_samples=5000, rank=0, world=1)) == list(range(1000))


@pytest.mark.parametrize("key, value", [("data_pipeline", "disk"), ("samples_per_epoch", 0), ("val_samples", 0),
                                        ("class_balance", 1.5), ("window_cache_mb", -1)])
def test_streaming_settings_are_checked(key, value):
    from geocamat.errors import ConfigError
    from geocamat.settings import build
    from geocamat.tasks.landuse.config import LandUseConfig

    with pytest.raises(ConfigError, match=key):
        build(LandUseConfig, {"images": ["a.tif"], "labels": "b.tif", key: value}, what="land-use training")


def test_dataloader_workers_read_the_same_windows_as_the_main_process(tmp_path, synthetic_scene):
    from torch.utils.data import DataLoader

    from geocamat.data.samplers import WindowSampler
    from geocamat.data.window_dataset import WindowDataset, streaming_data, worker_init

    stack, grid = _scene(tmp_path, synthetic_scene)
    labels = labels_on_grid(synthetic_scene["labels"], grid, tmp_path / "work")
    data = streaming_data(stack, labels, TileOptions(tile_size=16, stride=8, blocks=2), chunk=32)
    ds = WindowDataset(data.reader, data.train, masks=True)
    batches = {}
    for workers in (0, 2):
        sampler = WindowSampler(ds.chunks(), data.train.labels, seed=1, group=2, rank=0, world=1)
        loader = DataLoader(ds, batch_size=8, sampler=sampler, num_workers=workers, worker_init_fn=worker_init)
        batches[workers] = list(loader)
    assert len(batches[0]) == len(batches[2]) > 1
    for a, b in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["image"], b["image"])
        assert torch.equal(a["mask"], b["mask"])
