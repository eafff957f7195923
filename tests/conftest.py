"""Shared fixtures: small synthetic GeoTIFFs made in tmp_path, and the path of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SHARED_DATA = ROOT.parent / "shared" / "data"


def write_raster(path: Path, array: np.ndarray, crs: str = "EPSG:32617", origin=(500000.0, 4000000.0),
                 res: float = 10.0, nodata=None) -> Path:
    """Write a (bands, rows, cols) or (rows, cols) array as a GeoTIFF."""
    import rasterio
    from rasterio.transform import from_origin

    if array.ndim == 2:
        array = array[None]
    profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0],
                   dtype=array.dtype.name, crs=crs, transform=from_origin(origin[0], origin[1], res, res),
                   nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


@pytest.fixture
def synthetic_scene(tmp_path: Path) -> dict:
    """A 96x96 3-band scene whose left half is class 1 (dark) and right half class 2 (bright), with labels."""
    rng = np.random.default_rng(0)
    rows, cols = 96, 96
    labels = np.ones((rows, cols), dtype=np.uint8)
    labels[:, cols // 2:] = 2
    image = np.where(labels == 1, 50.0, 150.0)[None].repeat(3, axis=0) + rng.normal(0, 5, (3, rows, cols))
    image = image.astype("float32")
    image[:, :4, :] = -9999.0  # nodata collar on top
    return {
        "image": write_raster(tmp_path / "scene.tif", image, nodata=-9999.0),
        "labels": write_raster(tmp_path / "labels.tif", labels, nodata=0),
        "array": image,
        "label_array": labels,
        "dir": tmp_path,
    }


@pytest.fixture(scope="session")
def table_env(tmp_path_factory):
    """Bad-input files (tests/bad_inputs_data.py), a tiny trained land-use model and a tiny detection model,
    made once per session: (files by name, land-use bundle, detection bundle, their folder). Read-only."""
    from click.testing import CliRunner

    from cli.main import cli
    from tests.bad_inputs_data import make_inputs

    d = tmp_path_factory.mktemp("bad_inputs")
    files = make_inputs(d)
    run = d / "run"
    result = CliRunner().invoke(cli, ["train", "--images", str(files["scene"]), "--labels", str(files["labels"]),
                                      "--tile-size", "16", "--blocks", "2", "--epochs", "1", "--arch", "camnet-xs",
                                      "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    from tests.test_detection_inference import tiny_bundle

    det = tiny_bundle(64)
    det.save(d / "detector.geocamat")
    return files, run / "model.geocamat", d / "detector.geocamat", d


@pytest.fixture
def one_thread():
    """torch on one thread during the test (the inference tests: small ops spin on busy cores otherwise)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def scene_folder(root: Path, per_class: int = 8, size: int = 24) -> Path:
    """A class-folder dataset (RSSCN7 layout): ``dark`` and ``bright`` noisy RGB PNGs, ``per_class`` each."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, level in (("dark", 40), ("bright", 200)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 20, (size, size, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


#: CAMAT as it was before the session-7 default (the paper-like threshold setting: fresh maps, occlude where the
#: map >= tau, mean fill, p 0.5): the unit tests of CAMAT's mechanics pin it so they keep testing those
CLASSIC_CAMAT = {"source": "fresh", "area": None, "fill": "mean", "p": 0.5, "random_share": 0.0, "random_area": None,
                 "mix": None}
