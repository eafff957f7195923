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


def test_a_grey_image_among_colour_ones_gets_three_bands_and_other_mixes_are_refused(tmp_path):
    from geocamat.errors import InvalidRasterError
    from tests.conftest import write_raster

    _make(tmp_path)
    grey = tmp_path / "a_grass" / "grey.jpg"
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(grey)  # mode L: one band
    items = [(p, 0) for p in sorted((tmp_path / "a_grass").iterdir()) if p.suffix != ".txt"]
    ds = SceneDataset(items, 16)
    assert ds.images.shape[1] == 3 and ds.greys == 1
    g = ds.images[[p for p, _ in items].index(grey)]
    assert torch.allclose(g[0], g[1]) and torch.allclose(g[0], g[2])
    four = write_raster(tmp_path / "a_grass" / "four.tif", np.ones((4, 20, 20), np.uint16))  # RGB + NIR
    assert load_image(four).shape[0] == 4
    with pytest.raises(InvalidRasterError, match="four.tif has 4 bands but the others have 3"):
        SceneDataset(items + [(four, 0)], 16)
    with pytest.raises(InvalidRasterError, match="grey.jpg has 1 band but the model expects 4"):
        SceneDataset(items, 16, bands=4)


def test_scenes_decoded_when_drawn_serve_what_the_in_memory_ones_serve(tmp_path):
    """Above cache_mb the scenes are decoded as they are drawn: the same normalised samples as decoded once into
    memory (given the normalisation), a grey image repeated into 3 bands in both, counted from the headers."""
    from geocamat.data.scenes import SceneFiles, sampled_band_stats, scene_header
    from geocamat.tasks.scenes.workflow import _data

    _make(tmp_path)
    grey = tmp_path.parent / f"{tmp_path.name}_grey.png"
    Image.fromarray(np.full((22, 24), 90, np.uint8)).save(grey)
    s = split_scenes(tmp_path, train_fraction=0.5, seed=0)
    items = s.train + [(grey, 0)]
    assert scene_header(grey)[0] == 1 and scene_header(s.train[0][0])[0] == 3
    notes = []
    memory, mean, std, streamed, sizes = _data(items, 16, cache_mb=1e6, log=notes.append, part="training")
    assert not streamed and notes == ["note: 1 grey training scene image repeated into the 3 bands of the others"]
    assert 20 <= sizes["source_side"] <= 25  # median sqrt(w * h) of the images (20-25 x 24 px)
    assert sizes["source_metres"] is None  # PNGs: no ground size
    drawn, _, _, streamed, _ = _data(items, 16, cache_mb=0, mean=mean, std=std)
    assert streamed and isinstance(drawn, SceneFiles) and len(drawn) == len(memory)
    for i in (0, 4, len(items) - 1):
        a, b = memory[i], drawn[i]
        torch.testing.assert_close(a["image"], b["image"], atol=1e-5, rtol=0)
        assert int(a["label"]) == int(b["label"]) and int(b["index"]) == i
    m2, s2 = sampled_band_stats(items, 16, 3, limit=4)  # statistics from 4 images spread over the list
    assert len(m2) == 3 and all(v > 0 for v in s2)
    np.testing.assert_allclose(sampled_band_stats(items, 16, 3)[0], mean, rtol=1e-4)


def test_scene_training_decodes_as_drawn_above_cache_mb(tmp_path):
    """cache_mb 0: training and scoring stream the images (said in one line) and still learn dark vs bright."""
    import json

    from click.testing import CliRunner

    from cli.main import cli
    from tests.conftest import scene_folder

    scene_folder(tmp_path / "data", per_class=6, size=16)
    result = CliRunner().invoke(cli, ["train", "--scenes", str(tmp_path / "data"), "--set", "image_size=16",
                                      "--set", "cache_mb=0", "--epochs", "4", "--arch", "camnet-xs", "--batch-size",
                                      "4", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "decoded as they are drawn (more than cache_mb 0 MB decoded)" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["held_out"]["overall_accuracy"] >= 0.8 and metrics["robustness"]["n"] == 6


def test_scene_folders_as_copies_and_zips_leave_them(tmp_path):
    """Hidden files (macOS's ._x.jpg) are not images, NFD folder names are the NFC classes, a class folder without
    images is named in a warning, a class of one image is refused, a colour-mapped TIFF is read in colour."""
    import unicodedata

    from geocamat.data.scenes import list_scenes
    from geocamat.errors import GeocamatWarning

    name = unicodedata.normalize("NFD", "forêt")
    _make(tmp_path, classes=(name, "city"), per_class=4)
    (tmp_path / name / "._img0.jpg").write_bytes(b"\x00\x05\x16\x07 not an image")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    with pytest.warns(GeocamatWarning, match="class folder\\(s\\) empty of .* hold no image directly"):
        classes, items = list_scenes(tmp_path)
    assert classes == ["city", "forêt"] and len(items) == 8 and not any(p.name.startswith(".") for p, _ in items)
    (tmp_path / "lone").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "lone" / "x.png")
    with pytest.raises(InvalidLabelsError, match="class lone of .* has one image"):
        split_scenes(tmp_path)
    colour = Image.fromarray(np.dstack([np.full((8, 8), v, np.uint8) for v in (200, 30, 60)]))
    colour.convert("P").save(tmp_path / "palette.tif")
    image = load_image(tmp_path / "palette.tif")
    assert image.shape[0] == 3 and abs(float(image[0].mean()) - 200 / 255) < 0.05
    from geocamat.tasks.scenes.classify import scene_files

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / ".ipynb_checkpoints" / "x-checkpoint.png")
    found = scene_files([str(tmp_path)])
    assert found and not any(part.startswith(".") for p in found for part in p.relative_to(tmp_path).parts)
