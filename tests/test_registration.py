"""Label-to-imagery registration check, and scoring a map in the labels' frame."""

import numpy as np
import pytest
import rasterio
import torch

from geocamat.data.registration import estimate_label_offset, in_label_frame
from geocamat.tasks.landuse.scoring import score_map
from tests.conftest import write_raster


def _tiles(offset: tuple[int, int], n: int = 60, t: int = 16, seed: int = 0):
    """Tiles of a 3-band image whose class is readable from each pixel's bands, labelled ``offset`` px off.

    Classes come in 5 px patches: like real land cover, regions larger than the offset (a per-pixel
    classifier fitted on the misregistered pairs still learns the classes).
    """
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 3, (n, 6, 6))
    big = np.repeat(np.repeat(big, 5, 1), 5, 2)[:, : t + 8, : t + 8]
    image = np.stack([(big == k).astype("float32") for k in range(3)], 1) + rng.normal(0, 0.3, (n, 3, t + 8, t + 8))
    dy, dx = offset
    labels = big[:, 4 + dy:4 + dy + t, 4 + dx:4 + dx + t]  # label (i, j) = class of pixel (i + dy, j + dx)
    return torch.from_numpy(image[:, :, 4:4 + t, 4:4 + t].astype("float32")), torch.from_numpy(labels)


@pytest.mark.parametrize("offset", [(0, 0), (1, 1), (-1, 2)])
def test_offset_of_the_labels_is_found(offset):
    images, masks = _tiles(offset)
    found = estimate_label_offset(images, masks, 3, max_shift=2)
    assert found.offset == offset
    if offset != (0, 0):
        assert found.gain > 0.1 and found.accuracy[f"{offset[0]},{offset[1]}"] > 0.9


def test_unlabelled_pixels_are_ignored_and_global_random_state_is_kept():
    images, masks = _tiles((1, 0))
    masks[:, ::3] = -1
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    found = estimate_label_offset(images, masks, 3)
    assert found.offset == (1, 0) and bool(torch.rand(1) == expected)


def test_map_is_scored_in_the_labels_frame(tmp_path):
    truth = np.repeat(np.repeat(np.random.default_rng(0).integers(1, 4, (10, 10)), 4, 0), 4, 1).astype("uint8")
    reference = in_label_frame(truth, (1, 1), 0)  # reference[i, j] = truth[i + 1, j + 1]
    ref = write_raster(tmp_path / "ref.tif", reference, nodata=0)
    mp = write_raster(tmp_path / "map.tif", truth, nodata=0)
    plain = score_map(mp, ref, [1, 2, 3], ["a", "b", "c"])
    moved = score_map(mp, ref, [1, 2, 3], ["a", "b", "c"], offset=(1, 1))
    assert moved["overall_accuracy"] == 1.0 and plain["overall_accuracy"] < 0.9
    assert moved["map_offset_px"] == [1, 1]
    with rasterio.open(mp) as src:
        assert src.read(1).tolist() == truth.tolist()  # scoring never rewrites the map
