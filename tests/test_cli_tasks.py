"""Every command x every task through the command line: train, predict, evaluate, info for land use, scenes and
detection, so that a broken branch of the CLI's task dispatch fails here; options of another task are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image

from cli.main import cli
from tests.conftest import scene_folder, write_raster


def run(*args):
    """Run a command; its output (trainings run without -q, which prints nothing on success)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args, needle: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], result.output


@pytest.fixture(scope="module")
def landuse(tmp_path_factory):
    d = tmp_path_factory.mktemp("landuse")
    labels = np.ones((96, 96), "uint8")
    labels[:, 48:] = 2
    rng = np.random.default_rng(0)
    image = (np.where(labels == 1, 50.0, 150.0)[None].repeat(3, 0) + rng.normal(0, 5, (3, 96, 96))).astype("float32")
    img, lab = write_raster(d / "scene.tif", image), write_raster(d / "labels.tif", labels, nodata=0)
    out = run("train", "--images", img, "--labels", lab, "--tile-size", 16, "--blocks", 2, "--epochs", 3,
              "--set", "camat.warmup=0", "--set", "camat.p=1", "--out", d / "run")
    return {"dir": d, "image": img, "labels": lab, "model": d / "run" / "model.geocamat", "train_output": out}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes")
    scene_folder(d / "data", per_class=6, size=16)
    out = run("train", "--scenes", d / "data", "--set", "image_size=16", "--epochs", 2, "--arch", "camnet-xs",
              "--batch-size", 4, "--out", d / "run")
    image = write_raster(d / "scene.tif", np.full((3, 32, 32), 200, "uint8"))
    return {"dir": d, "data": d / "data", "image": image, "model": d / "run" / "model.geocamat", "train_output": out}


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    d = tmp_path_factory.mktemp("detection")
    g = np.random.default_rng(0)
    img = g.integers(0, 60, (160, 160, 3), dtype=np.uint8)
    rows = ["image_path,xmin,ymin,xmax,ymax,label"]
    for x, y in ((10, 10), (80, 20), (30, 100), (110, 110)):
        img[y:y + 24, x:x + 24] = (220, 200, 40)
        rows.append(f"scene.png,{x},{y},{x + 24},{y + 24},box")
    Image.fromarray(img).save(d / "scene.png")
    (d / "boxes.csv").write_text("\n".join(rows) + "\n")
    out = run("train", "--task", "detection", "--images", d / "scene.png", "--labels", d / "boxes.csv",
              "--tile-size", 128, "--epochs", 1, "--batch-size", 2, "--set", "backbone=tiny", "--set", "max_tiles=2",
              "--set", "val_fraction=0", "--out", d / "run")
    return {"dir": d, "image": d / "scene.png", "boxes": d / "boxes.csv", "model": d / "run" / "model.geocamat",
            "train_output": out}


def test_landuse_train_predict_evaluate_info(landuse):
    assert "validation map" in landuse["train_output"] and "model:" in landuse["train_output"]
    metrics = json.loads((landuse["model"].parent / "metrics.json").read_text())
    assert metrics["validation_map"]["overall_accuracy"] > 0.9  # the halves are trivially separable
    out = landuse["dir"] / "map"
    line = run("predict", "--model", landuse["model"], "--out", out, landuse["image"])
    assert f"wrote {out}: " in line and "tiles mapped" in line
    with rasterio.open(out / "landuse.tif") as m:
        assert set(np.unique(m.read(1))) <= {1, 2}
    text = run("evaluate", "--model", landuse["model"], "--reference", landuse["labels"], "-q", landuse["image"])
    oa = float(text.split("OA ")[1].split(",")[0])
    assert oa > 0.9
    info = run("info", landuse["model"])
    assert "task: landuse" in info and "mapping:" in info


def test_scenes_train_predict_evaluate_info(scenes):
    assert "held-out scenes: OA" in scenes["train_output"]
    out = scenes["dir"] / "map"
    line = run("predict", "--model", scenes["model"], "--out", out, scenes["data"])
    assert f"wrote {out}: 12 images (" in line and "the class is the folder's name for" in line
    assert (out / "scenes.csv").is_file() and (out / "report.json").is_file()
    text = run("evaluate", "--model", scenes["model"], "--scenes", scenes["data"])
    assert "6 scenes: the images the model did not train on (6 of 12" in text and "clean" in text
    info = run("info", scenes["model"])
    assert "task: scenes" in info and "split:" in info


def test_detection_train_predict_evaluate_info(detection):
    assert "validation (0 tiles)" in detection["train_output"] and "2 training tiles, 4 boxes" in \
        detection["train_output"]
    # detection trains without occlusion unless asked, and says how to ask (CAMAT costs mAP on other sites)
    assert "occlusion: none (detection's default; --camat trains with object-aware CAMAT" in detection["train_output"]
    assert json.loads((detection["dir"] / "run" / "metrics.json").read_text())["regulariser"] == "none"
    out = detection["dir"] / "pred"
    line = run("predict", "--model", detection["model"], "--out", out, "--score-threshold", 0.0, detection["image"])
    report = json.loads((out / "report.json").read_text())
    assert f"{report['total']} objects" in line
    assert report["model"]["path"] == str(detection["model"].resolve())
    assert report["settings"]["score_threshold"] == 0.0
    text = run("evaluate", "--model", detection["model"], "--reference", detection["boxes"], "--score-threshold",
               0.0, detection["image"])
    assert "mAP@0.5" in text and "recall" in text
    info = run("info", detection["model"])
    assert "task: detection" in info and "detector" in info


def test_options_of_another_task_are_refused(landuse, scenes, detection, tmp_path):
    refused("predict", "--model", landuse["model"], "--out", tmp_path / "a", "--score-threshold", 0.5,
            landuse["image"], needle="--score-threshold does not apply to predict with a land-use model")
    refused("predict", "--model", detection["model"], "--out", tmp_path / "b", "--min-polygon-pixels", 8,
            detection["image"], needle="--min-polygon-pixels does not apply to predict with a detection model")
    refused("evaluate", "--model", detection["model"], "--blocks", 4, "--reference", detection["boxes"],
            detection["image"], needle="--blocks does not apply")
    refused("train", "--scenes", scenes["data"], "--tile-size", 16, "--out", tmp_path / "c",
            needle="tile-size does not apply to scene-classification training")
    refused("train", "--images", landuse["image"], "--labels", landuse["labels"], "--regulariser", "cutout",
            "--camat-fill", "noise", "--out", tmp_path / "d",
            needle="--camat-fill applies only with --regulariser camat")
    refused("train", "--images", landuse["image"], "--labels", landuse["labels"], "--no-camat", "--set",
            "camat.schedule=rising", "--out", tmp_path / "f", needle="--set camat.schedule applies only with")
    refused("train", "--task", "detection", "--images", detection["image"], "--labels", detection["boxes"],
            "--regulariser", "hide-and-seek", "--out", tmp_path / "e", needle="regulariser must be one of")
    assert not any((tmp_path / n).exists() for n in "abcdef")
