"""Detection training reads its tiles from the image files: the same tiles as from memory, bounded memory."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from geocamat.data.boxes import ImageBoxes
from geocamat.data.detection_images import ArrayImage, NormalisedImage, band_stats, read_image
from geocamat.data.detection_tiles import DetectionTiles, open_normalised, plan_tiles, validation_split


def _write(path, pixels: np.ndarray, nodata=None) -> str:
    c, h, w = pixels.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c, dtype=pixels.dtype, nodata=nodata,
                       crs="EPSG:32617", transform=from_origin(400000, 3280000, 0.1, 0.1), tiled=True,
                       blockxsize=128, blockysize=128) as dst:
        dst.write(pixels)
    return str(path)


@pytest.fixture
def scene(tmp_path):
    g = np.random.default_rng(0)
    pixels = g.integers(1, 255, (3, 700, 900)).astype(np.uint8)
    pixels[:, 600:, 100:300] = 0  # a nodata corner
    path = _write(tmp_path / "scene.tif", pixels, nodata=0)
    xy = g.uniform(0, [860, 660], (30, 2))
    boxes = np.hstack([xy, xy + g.uniform(10, 40, (30, 2))]).astype(np.float32)
    return path, ImageBoxes(path, 900, 700, boxes, ["tree"] * 30)


def _in_memory(path: str, mean, std) -> np.ndarray:
    """The former pipeline: the whole image read and normalised once, invalid pixels 0."""
    data, valid = read_image(path)
    x = (data - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    x[:, ~valid] = 0
    return x


def test_windows_read_from_the_file_equal_the_normalised_image_with_padding(scene):
    path, _ = scene
    mean, std = [100.0, 120.0, 90.0], [50.0, 40.0, 60.0]
    whole = _in_memory(path, mean, std)
    image = NormalisedImage(path, mean, std)
    assert image.shape == (3, 700, 900)
    for col, row, w, h in [(0, 0, 256, 256), (650, 500, 256, 256), (120, 580, 64, 100), (-20, -10, 50, 40)]:
        got = image.read(col, row, w, h)
        want = np.zeros((3, h, w), np.float32)
        c0, r0 = max(col, 0), max(row, 0)
        want[:, r0 - row:min(row + h, 700) - row, c0 - col:min(col + w, 900) - col] = \
            whole[:, r0:row + h, c0:col + w]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert (image.read(120, 620, 50, 50) == 0).all()  # nodata becomes the band mean (0 once normalised)


def test_an_open_image_travels_to_workers_without_its_file_handle(scene):
    path, _ = scene
    image = NormalisedImage(path, [0.0] * 3, [1.0] * 3)
    first = image.read(0, 0, 16, 16)
    copy = pickle.loads(pickle.dumps(image))  # what a DataLoader worker gets
    assert copy._src is None
    np.testing.assert_array_equal(copy.read(0, 0, 16, 16), first)


def test_streamed_tiles_equal_in_memory_tiles_for_training_and_validation(scene):
    path, ib = scene
    mean, std = band_stats([path])
    ts = 256
    train, val = plan_tiles([ib], ts, val_fraction=0.3, empty_ratio=1.0)
    split = validation_split(ib.width, ts, 0.3)
    streamed = open_normalised([path], mean, std, "dataset")
    memory = [_in_memory(path, mean, std)]
    for tiles, kwargs in ((train, {"augment": True, "scale_jitter": 0.5, "colour_jitter": 0.1,
                                   "col_limits": [split]}), (val, {})):
        a = DetectionTiles(streamed, [ib], {"tree": 0}, tiles, ts, **kwargs)
        b = DetectionTiles(memory, [ib], {"tree": 0}, tiles, ts, **kwargs)
        for i in range(len(tiles)):
            torch.manual_seed(i)
            xa, ta = a[i]
            torch.manual_seed(i)
            xb, tb = b[i]
            torch.testing.assert_close(xa, xb)
            torch.testing.assert_close(ta["boxes"], tb["boxes"])
    # the training windows never read right of the validation strip's first column
    ds = DetectionTiles(streamed, [ib], {"tree": 0}, train, ts, col_limits=[split])
    reads = []
    inner = streamed[0].read
    streamed[0].read = lambda col, row, w, h: reads.append((col, w)) or inner(col, row, w, h)
    for i in range(len(ds)):
        ds[i]
    assert reads and all(col + w <= split for col, w in reads)


def test_scenes_that_fit_the_cache_are_read_once_into_memory_others_by_window(scene):
    path, _ = scene  # 3 x 700 x 900 float32: 7.2 MB normalised
    mean, std = band_stats([path])
    cached = open_normalised([path], mean, std, "dataset", cache_mb=8)
    streamed = open_normalised([path], mean, std, "dataset", cache_mb=7)
    assert isinstance(cached[0], ArrayImage) and isinstance(streamed[0], NormalisedImage)
    np.testing.assert_allclose(cached[0].array, _in_memory(path, mean, std), rtol=1e-6, atol=1e-6)
    for window in [(0, 0, 256, 256), (-5, 600, 300, 200), (800, -30, 256, 256)]:
        np.testing.assert_array_equal(cached[0].read(*window), streamed[0].read(*window))


def test_band_stats_read_decimated_and_weigh_images_by_their_area(tmp_path):
    g = np.random.default_rng(1)
    big = g.normal(100, 10, (1, 2400, 1800)).astype(np.float32)
    small = g.normal(20, 5, (1, 300, 200)).astype(np.float32)
    paths = [_write(tmp_path / "big.tif", big), _write(tmp_path / "small.tif", small)]
    mean, std = band_stats(paths, max_side=512)
    both = np.concatenate([big.ravel(), small.ravel()])
    np.testing.assert_allclose(mean, [both.mean()], rtol=0.01)
    np.testing.assert_allclose(std, [both.std()], rtol=0.03)


def test_window_boxes_find_what_a_scan_of_every_box_finds():
    from geocamat.data.detection_tiles import clip_boxes, window_boxes

    g = np.random.default_rng(3)
    xy = g.uniform(-20, 3000, (5000, 2))
    wh = g.uniform(2, 120, (5000, 2))
    ib = ImageBoxes("x.tif", 3000, 3000, np.hstack([xy, xy + wh]).astype(np.float32), ["tree"] * 5000)
    for _ in range(200):
        col, row = (int(v) for v in g.integers(-100, 3000, 2))
        size, width, height = 256, int(g.integers(1, 257)), int(g.integers(1, 257))
        for kwargs in ({}, {"width": width, "height": height}, {"min_visible": 0.0}):
            fast = window_boxes(ib, col, row, size, **kwargs)
            slow = clip_boxes(ib.boxes, col, row, size, **kwargs)
            np.testing.assert_array_equal(fast[1], slow[1])
            np.testing.assert_array_equal(fast[0], slow[0])
    assert len(window_boxes(ImageBoxes("e.tif", 10, 10), 0, 0, 8)[1]) == 0


def test_the_heap_threshold_is_fixed_on_glibc_unless_the_user_set_it(monkeypatch):
    import platform

    from geocamat.allocator import fix_mmap_threshold

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert fix_mmap_threshold() is True
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert fix_mmap_threshold() is False  # the user's own setting stays
