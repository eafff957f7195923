from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geocamat.data.scenes import SceneDataset, load_image, split_scenes
from geocamat.errors import InputNotFoundError, InvalidLabelsError

RSSCN7 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rsscn7"


def _make(root: Path, classes=("b_field", "a_grass", "c_city"), per_class=6):
    rng = np.random.default_rng(0)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((20 + i, 24, 3), 40 * ci, dtype=np.uint8)
            arr[..., 0] = rng.integers(0, 255, arr.shape[:2])
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(arr).save(root / c / f"img{i}{suffix}")
        (root / c / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()


def test_split_stratified_and_seeded(tmp_path):
    _make(tmp_path)
    s = split_scenes(tmp_path, train_fraction=0.5, seed=0)
    assert s.classes == ["a_grass", "b_field", "c_city"]
    for label in range(3):
        assert sum(1 for _, lab in s.train if lab == label) == 3
        assert sum(1 for _, lab in s.test if lab == label) == 3
    assert not {p for p, _ in s.train} & {p for p, _ in s.test}
    assert split_scenes(tmp_path, seed=0).train == s.train
    assert any(split_scenes(tmp_path, seed=k).train != s.train for k in range(1, 5))


def test_dataset_items(tmp_path):
    _make(tmp_path)
    s = split_scenes(tmp_path, train_fraction=0.5, seed=0)
    ds = SceneDataset(s.train, size=16)
    assert len(ds) == 9
    item = ds[4]
    assert set(item) == {"image", "label", "index"}
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["label"].dtype == torch.long and int(item["label"]) == s.train[4][1]
    assert int(item["index"]) == 4
    mean, std = ds.band_stats()
    assert mean.shape == (3,) and (std > 0).all()
    assert load_image(s.train[0][0]).shape[0] == 3


def test_errors(tmp_path):
    with pytest.raises(InputNotFoundError):
        split_scenes(tmp_path / "missing")
    (tmp_path / "x").mkdir()
    with pytest.raises(InvalidLabelsError):
        split_scenes(tmp_path)


@pytest.mark.skipif(not RSSCN7.exists(), reason="shared data not available")
def test_rsscn7_split():
    s = split_scenes(RSSCN7, train_fraction=0.5, seed=0)
    assert len(s.classes) == 7 and len(s.train) == 350 and len(s.test) == 350
    assert all(sum(1 for _, lab in s.train if lab == k) == 50 for k in range(7))
    ds = SceneDataset(s.train[:3], size=32)
    assert ds.images.shape == (3, 3, 32, 32)
