"""The CLI's detection branches: train, info, predict, evaluate on a tiny synthetic dataset (one epoch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_detection_workflow import scene

from cli.main import cli
from geocamat.bundle import Bundle
from geocamat.metrics.detection import best_f1_threshold, precision_recall


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("detcli")
    img, csv = scene(root, n=10, size=176)
    run = root / "run"
    result = CliRunner().invoke(cli, [
        "train", "--task", "detection", "--images", str(img), "--labels", str(csv), "--tile-size", "64",
        "--epochs", "1", "--set", "backbone=tiny", "--set", "batch_size=2", "--set", "max_tiles=4",
        "--set", "fpn_channels=16", "--set", "anchor_sizes=[8,16,32,64]", "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output == "" and (run / "model.geocamat").is_file()  # --quiet: nothing on success
    return {"img": img, "csv": csv, "run": run, "root": root}


def test_train_records_the_threshold_and_its_origin(trained):
    bundle = Bundle.load(trained["run"] / "model.geocamat")
    assert bundle.task == "detection" and bundle.metrics["val_tiles"] > 0
    best = bundle.extra["validation_best_f1"]
    assert best is not None and best["n_gt"] > 0  # the validation strip was scored
    if best["threshold"] is None:
        assert bundle.extra["score_threshold"] == 0.3 and bundle.extra["score_threshold_from"].startswith("default")
    else:
        assert bundle.extra["score_threshold"] == round(best["threshold"], 4)
        assert bundle.extra["score_threshold_from"] == "validation best F1"
    result = CliRunner().invoke(cli, ["info", str(trained["run"] / "model.geocamat")])
    assert result.exit_code == 0, result.output
    assert "task: detection" in result.output and "score_threshold_from" in result.output


def test_predict_writes_detections_and_says_when_nothing_is_found(trained):
    out = trained["root"] / "pred"
    result = CliRunner().invoke(cli, ["predict", "--model", str(trained["run"] / "model.geocamat"), "--out", str(out),
                                      "--score-threshold", "1", "--quiet", str(trained["img"])])
    assert result.exit_code == 0, result.output
    assert "note: 0 objects at score >= 1" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["total"] == 0 and report["settings"]["score_threshold"] == 1
    assert (out / "detections.gpkg").is_file()


def test_evaluate_prints_map_pr_at_two_ious_and_counts(trained):
    out = trained["root"] / "eval"
    args = ["evaluate", "--model", str(trained["run"] / "model.geocamat"), "--reference", str(trained["csv"]),
            "--score-threshold", "1", "--out", str(out), str(trained["img"])]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "1 image: 10 labelled objects, 0 found at score >= 1"
    assert lines[1].startswith("  mAP@0.5 ") and "mAP@[.5:.95]" in lines[1]
    assert lines[2].startswith("  IoU 0.5: precision 0.000  recall 0.000")
    assert lines[3].startswith("  IoU 0.4: precision")
    assert any(line.startswith("note: 0 objects at score >= 1 for 10 labelled") for line in lines)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["scene"]["labelled"] == 10 and saved["scene"]["found"] == 0 and "iou_40" in saved["scene"]
    # mAP does not depend on the threshold: the same as at the model's own threshold
    again = CliRunner().invoke(cli, args[:5] + [str(trained["img"])])
    assert again.exit_code == 0 and again.output.splitlines()[1] == lines[1], again.output


def test_evaluate_reads_coco_and_yolo_references_like_the_csv(trained):
    """The CSV's boxes written as COCO .json and as YOLO .txt (+ classes.txt) score exactly as the CSV."""
    import csv as csvlib

    import rasterio

    rows = list(csvlib.DictReader(trained["csv"].open()))
    img = trained["img"]
    with rasterio.open(img) as src:
        w, h = src.width, src.height
    boxes = [[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in rows]
    coco = {"images": [{"id": 1, "file_name": img.name}], "categories": [{"id": 3, "name": "box"}],
            "annotations": [{"id": i, "image_id": 1, "category_id": 3, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                            for i, b in enumerate(boxes)]}
    root = trained["root"] / "formats"
    root.mkdir()
    (root / "boxes.json").write_text(json.dumps(coco))
    (root / "classes.txt").write_text("box\n")
    (root / f"{img.stem}.txt").write_text("".join(
        f"0 {(b[0] + b[2]) / 2 / w:.7f} {(b[1] + b[3]) / 2 / h:.7f} {(b[2] - b[0]) / w:.7f} {(b[3] - b[1]) / h:.7f}\n"
        for b in boxes))
    # a YOLO labels folder as users have it: the label files, the class names and the images side by side
    yolo = trained["root"] / "yolo"
    yolo.mkdir()
    for name in ("classes.txt", f"{img.stem}.txt"):
        (yolo / name).write_text((root / name).read_text())
    (yolo / img.name).write_bytes(img.read_bytes())
    outputs = []
    for ref in (trained["csv"], root / "boxes.json", root / f"{img.stem}.txt", yolo):
        result = CliRunner().invoke(cli, ["evaluate", "--model", str(trained["run"] / "model.geocamat"),
                                          "--reference", str(ref), "--score-threshold", "0.05", str(img)])
        assert result.exit_code == 0, result.output
        outputs.append(result.output.splitlines()[:4])
    assert outputs[0][0].startswith("1 image: 10 labelled objects")
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0] and outputs[3] == outputs[0]


@pytest.mark.parametrize("args, needle", [
    ([], "--reference BOXES"),
    (["--reference", "{root}/crates.csv"], "--class-agnostic"),
])
def test_evaluate_detection_errors_are_one_line(trained, args, needle):
    (trained["root"] / "crates.csv").write_text(trained["csv"].read_text().replace(",box", ",crate"))
    args = [a.format(root=trained["root"]) for a in args]
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(trained["run"] / "model.geocamat"), *args,
                                      str(trained["img"])])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and needle in result.output and result.output.startswith("Error: ")


def test_best_f1_threshold_agrees_with_precision_recall():
    rng = np.random.default_rng(0)
    preds, targets = [], []
    for _ in range(4):
        gt = rng.uniform(0, 80, (6, 2))
        gt = np.hstack([gt, gt + rng.uniform(8, 20, (6, 2))])
        jitter = gt + rng.normal(0, 3, gt.shape)
        noise = rng.uniform(0, 80, (5, 2))
        boxes = np.vstack([jitter, np.hstack([noise, noise + 10])])
        preds.append({"boxes": boxes, "scores": rng.uniform(0, 1, len(boxes)), "labels": np.zeros(len(boxes), int)})
        targets.append({"boxes": gt, "labels": np.zeros(6, int)})
    best = best_f1_threshold(preds, targets, 1)
    brute = {float(t): precision_recall(preds, targets, float(t))["f1"]
             for t in np.concatenate([p["scores"] for p in preds])}
    assert best["f1"] == pytest.approx(max(brute.values()))
    assert best["f1"] == pytest.approx(brute[best["threshold"]])
    at = precision_recall(preds, targets, best["threshold"])
    assert (at["precision"], at["recall"]) == (pytest.approx(best["precision"]), pytest.approx(best["recall"]))
    assert best_f1_threshold([{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}],
                             [targets[0]], 1)["threshold"] is None


def test_default_threshold_prefers_given_then_validation_then_default():
    from types import SimpleNamespace

    from geocamat.tasks.detection.config import DetectionConfig
    from geocamat.tasks.detection.workflow import _default_threshold

    def cfg(threshold):
        return SimpleNamespace(score_threshold=threshold, MODEL_FALLBACKS=DetectionConfig.MODEL_FALLBACKS)

    best = {"threshold": 0.123456, "f1": 0.5}
    assert _default_threshold(cfg(None), {"best_f1": best}) == (0.1235, "validation best F1", best)
    assert _default_threshold(cfg(0.4), {"best_f1": best})[:2] == (0.4, "configured")
    assert _default_threshold(cfg(None), {"best_f1": {"threshold": None}})[1].startswith(
        "default (no validation detection")
    assert _default_threshold(cfg(None), {}) == (0.3, "default (no validation split)", None)


def write(path, part, col):
    """Part of the test scene as a GeoTIFF (1 m pixels, EPSG:32617), its left edge at column ``col``."""
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=part.shape[2], height=part.shape[1], count=3,
                       dtype="uint8", crs="EPSG:32617", transform=from_origin(500000 + col, 4000000, 1, 1)) as dst:
        dst.write(part)


def test_predict_detects_sheets_of_one_grid_as_a_mosaic(trained):
    """The scene written as one GeoTIFF and cut into two sheets: predict over the sheets finds what it finds
    over the whole (no object cut in two at the sheet edge), lists each under its sheet, and says so."""
    import geopandas as gpd
    from PIL import Image

    arr = np.asarray(Image.open(trained["img"])).transpose(2, 0, 1)
    root = trained["root"] / "sheets"
    (root / "tiles").mkdir(parents=True)
    cut = 77  # through several of the scene's squares
    write(root / "whole.tif", arr, 0)
    write(root / "tiles" / "a.tif", arr[:, :, :cut], 0)
    write(root / "tiles" / "b.tif", arr[:, :, cut:], cut)
    found = {}
    for name, images in (("whole", [str(root / "whole.tif")]), ("sheets", [str(root / "tiles")])):
        result = CliRunner().invoke(cli, ["predict", "--model", str(trained["run"] / "model.geocamat"),
                                          "--out", str(root / name), "--score-threshold", "0.05", *images])
        assert result.exit_code == 0, result.output
        found[name] = gpd.read_file(root / name / "detections.gpkg")
    assert "mosaic of 2 images (a.tif, b.tif)" in result.output
    assert len(found["sheets"]) == len(found["whole"]) > 0
    whole, sheets = (np.sort(f.geometry.bounds.to_numpy(), axis=0) for f in (found["whole"], found["sheets"]))
    np.testing.assert_allclose(sheets, whole, atol=0.05)
    centre_x = found["sheets"].geometry.centroid.x - 500000
    assert ((centre_x < cut) == (found["sheets"]["image"] == "a.tif")).all()
    report = json.loads((root / "sheets" / "report.json").read_text())
    assert len(report["mosaics"]) == 1 and report["mosaics"][0]["width"] == arr.shape[2]
    assert sum(i["detections"] for i in report["inputs"]) == len(found["sheets"])
    assert any("tile one pixel grid" in n for n in report["notes"])
    check = CliRunner().invoke(cli, ["info", "--check", str(trained["run"] / "model.geocamat"), str(root / "tiles")])
    assert "2 images tile one pixel grid and touch: predict detects them as 1 mosaic" in check.output, check.output
    # evaluate: a vector reference scores the mosaic as the whole image; pixel boxes of each sheet, sheet by sheet
    import csv as csvlib

    from shapely.geometry import box

    rows = list(csvlib.DictReader(trained["csv"].open()))
    xy = [[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in rows]
    gpd.GeoDataFrame({"label": ["box"] * len(xy)}, geometry=[box(500000 + a, 4000000 - d, 500000 + c, 4000000 - b)
                     for a, b, c, d in xy], crs="EPSG:32617").to_file(root / "ref.gpkg")
    lines = {}
    for name, images in (("whole", [str(root / "whole.tif")]), ("sheets", [str(root / "tiles")])):
        result = CliRunner().invoke(cli, ["evaluate", "--model", str(trained["run"] / "model.geocamat"), "--reference",
                                          str(root / "ref.gpkg"), "--score-threshold", "0.05", *images])
        assert result.exit_code == 0, result.output
        lines[name] = result.output.splitlines()
    assert lines["sheets"][1:4] == lines["whole"][1:4] and "10 labelled objects" in lines["sheets"][0]
    assert any("scored as 1 mosaic" in line for line in lines["sheets"])
    pieces = "\n".join(["image_path,xmin,ymin,xmax,ymax,label"] + [
        f"{name},{max(a - c0, 0)},{b},{min(c - c0, w)},{d},box" for a, b, c, d in xy
        for name, c0, w in (("a.tif", 0, cut), ("b.tif", cut, arr.shape[2] - cut)) if a < c0 + w and c > c0])
    (root / "pieces.csv").write_text(pieces + "\n")
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(trained["run"] / "model.geocamat"), "--reference",
                                      str(root / "pieces.csv"), "--score-threshold", "0.05", str(root / "tiles")])
    assert result.exit_code == 0, result.output
    assert "scored image by image" in result.output


def test_predict_detection_in_an_area_of_interest(trained, tmp_path):
    """--bbox / --region: windows outside are skipped, objects whose centre is outside dropped; an AOI off the
    images or over plain images: one line, exit 2, nothing written."""
    import geopandas as gpd
    import shapely
    from PIL import Image

    arr = np.asarray(Image.open(trained["img"])).transpose(2, 0, 1)
    write(tmp_path / "scene.tif", arr, 0)
    model = str(trained["run"] / "model.geocamat")

    def run(name, *args, image=tmp_path / "scene.tif"):
        return CliRunner().invoke(cli, ["predict", "--model", model, "--out", str(tmp_path / name),
                                        "--score-threshold", "0.01", "--quiet", *args, str(image)])

    assert run("all").exit_code == 0
    everything = gpd.read_file(tmp_path / "all" / "detections.gpkg", layer="detections")
    box = (500000, 4000000 - 60, 500000 + 60, 4000000)  # the top-left 60 x 60 m of 176 x 176 m
    assert run("bbox", "--bbox", *map(str, box)).exit_code == 0
    inside = gpd.read_file(tmp_path / "bbox" / "detections.gpkg", layer="detections")
    c = everything.geometry.centroid
    near_whole = shapely.box(*box).buffer(-20).contains(c)  # far from the AOI's edge: same windows' context
    assert 0 < len(inside) < len(everything)
    assert shapely.box(*box).buffer(1e-6).contains(inside.geometry.centroid).all()
    assert near_whole.sum() <= len(inside)
    report = json.loads((tmp_path / "bbox" / "report.json").read_text())
    full = json.loads((tmp_path / "all" / "report.json").read_text())
    assert report["inputs"][0]["windows"] < full["inputs"][0]["windows"] and report["settings"]["bbox"]
    gpd.GeoDataFrame(geometry=[shapely.box(*box)], crs="EPSG:32617").to_crs("EPSG:4326").to_file(tmp_path / "aoi.gpkg")
    assert run("region", "--region", str(tmp_path / "aoi.gpkg")).exit_code == 0
    in_region = gpd.read_file(tmp_path / "region" / "detections.gpkg", layer="detections")
    assert abs(len(in_region) - len(inside)) <= 1  # the same square, reprojected there and back
    # --crs: the same objects in another CRS, areas still in square metres; the bbox stays in the images' CRS
    assert run("wgs84", "--crs", "EPSG:4326", "--bbox", *map(str, box)).exit_code == 0
    wgs84 = gpd.read_file(tmp_path / "wgs84" / "detections.gpkg", layer="detections")
    assert wgs84.crs.to_epsg() == 4326 and len(wgs84) == len(inside)
    np.testing.assert_allclose(np.sort(wgs84["area"]), np.sort(inside["area"]), rtol=1e-9)
    np.testing.assert_allclose(np.sort(wgs84.to_crs(32617).area), np.sort(inside.geometry.area), rtol=2e-3)
    for name, args, image, needle in (("off", ["--bbox", "0", "0", "10", "10"], tmp_path / "scene.tif", "overlap"),
                                      ("png", ["--bbox", *map(str, box)], trained["img"], "georeferenced"),
                                      ("png_crs", ["--crs", "EPSG:4326"], trained["img"], "georeferenced")):
        result = run(name, *args, image=image)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert result.output.startswith("Error: ") and needle in result.output
        assert not (tmp_path / name).exists()


def test_ranks_share_the_windows_and_rank_0_writes_the_objects_of_one_process(trained, tmp_path):
    """Three ranks (threads here; processes or GPUs under torchrun/--devices) each detect every third batch of
    windows; rank 0 merges them into the objects one process finds, across a mosaic's sheet edge too."""
    import geopandas as gpd
    from PIL import Image
    from test_inference_ranks import on_thread_ranks

    from geocamat.inference.detect_store import store_folder
    from geocamat.tasks.detection.config import PredictOptions
    from geocamat.tasks.detection.predicting import predict_detection

    arr = np.asarray(Image.open(trained["img"])).transpose(2, 0, 1)
    write(tmp_path / "a.tif", arr[:, :, :90], 0)
    write(tmp_path / "b.tif", arr[:, :, 90:], 90)
    images = [str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]
    bundle = Bundle.load(trained["run"] / "model.geocamat")
    options = PredictOptions(score_threshold=0.01, batch_size=1, overlap=0.5)
    one = predict_detection(bundle, images, tmp_path / "one", options, progress=False)
    results = on_thread_ranks(3, lambda ranks: predict_detection(bundle, images, tmp_path / "three", options,
                                                                 progress=False, final_dir=tmp_path / "three",
                                                                 ranks=ranks))
    assert all(isinstance(r, dict) for r in results), results
    assert [r.get("rank") for r in results[1:]] == [1, 2] and all(r["tiles_processed"] > 0 for r in results[1:])
    assert results[0]["total"] == one["total"] > 0
    assert results[0]["mosaics"][0]["windows"] == one["mosaics"][0]["windows"]
    a, b = (gpd.read_file(tmp_path / name / "detections.gpkg", layer="detections") for name in ("one", "three"))
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry")) and a.geometry.equals(b.geometry)
    assert not store_folder(tmp_path / "three").exists()  # the ranks' exchange folder is removed
    assert sorted(p.name for p in (tmp_path / "three").iterdir()) == ["detections.gpkg", "detections.qml",
                                                                      "report.json"]


@pytest.mark.slow  # two spawned processes: ~20 s on the loaded 2-vCPU machine
def test_predict_devices_2_starts_two_processes_with_the_objects_of_one(trained, tmp_path):
    import geopandas as gpd

    model = str(trained["run"] / "model.geocamat")
    for name, extra in (("one", []), ("two", ["--devices", "2"])):
        result = CliRunner().invoke(cli, ["predict", "--model", model, "--out", str(tmp_path / name), "--quiet",
                                          "--score-threshold", "0.01", *extra, str(trained["img"])],
                                    env={"OMP_NUM_THREADS": "1"})
        assert result.exit_code == 0, result.output
    a, b = (gpd.read_file(tmp_path / name / "detections.gpkg", layer="detections") for name in ("one", "two"))
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(np.sort(a["score"]), np.sort(b["score"]), atol=1e-5)


def test_a_killed_detection_run_resumes_to_the_objects_of_an_uninterrupted_one(trained, tmp_path, monkeypatch):
    """Killed after 5 chunks of windows: a new run is refused until --resume (or --overwrite); the resumed run
    runs only the windows left and writes the same objects as a run never killed."""
    import geopandas as gpd
    from PIL import Image

    import geocamat.inference.detect as detect_module
    import geocamat.inference.detect_store as store_module

    arr = np.asarray(Image.open(trained["img"])).transpose(2, 0, 1)
    write(tmp_path / "scene.tif", arr, 0)
    model = str(trained["run"] / "model.geocamat")
    monkeypatch.setattr(store_module, "CHUNK_BATCHES", 1)
    ran = []
    real = detect_module.detect_windows

    def counting(*args, indices=None, **kwargs):
        ran.extend(indices)
        return real(*args, indices=indices, **kwargs)

    monkeypatch.setattr(detect_module, "detect_windows", counting)

    def run(name, *extra):
        return CliRunner().invoke(cli, ["predict", "--model", model, "--out", str(tmp_path / name), "--quiet",
                                        "--score-threshold", "0.01", "--batch-size", "2", "--overlap", "0.5", *extra,
                                        str(tmp_path / "scene.tif")])

    assert run("whole").exit_code == 0
    planned = len(ran)
    real_save, saved = store_module.WindowStore.save, []

    def killed_after_5(self, unit, indices, raw):
        if len(saved) == 5:
            raise KeyboardInterrupt
        saved.append(indices)
        real_save(self, unit, indices, raw)

    monkeypatch.setattr(store_module.WindowStore, "save", killed_after_5)
    killed = run("out")  # Ctrl-C (or a kill) after 5 chunks
    assert killed.exit_code not in (0, 2), killed.output
    monkeypatch.setattr(store_module.WindowStore, "save", real_save)
    assert not (tmp_path / "out").exists() and store_module.store_folder(tmp_path / "out").is_dir()
    # a chunk the killed run was writing when it died: half a file, not counted as done
    (store_module.store_folder(tmp_path / "out") / "u0-w000000020.npz.part.npz").write_bytes(b"PK\x03")
    again = run("out")
    assert again.exit_code == 2 and "interrupted detection run" in again.output and "--resume" in again.output
    other = run("out", "--resume", "--score-threshold", "0.2")
    assert other.exit_code == 2 and "other settings" in other.output
    ran.clear()
    result = run("out", "--resume")
    assert result.exit_code == 0, result.output
    assert len(ran) == planned - 10  # 5 chunks of one batch of 2 windows were kept
    a, b = (gpd.read_file(tmp_path / name / "detections.gpkg", layer="detections") for name in ("whole", "out"))
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry")) and a.geometry.equals(b.geometry)
    assert not store_module.store_folder(tmp_path / "out").exists()


def test_training_on_sheets_uses_the_mosaic(trained, tmp_path):
    """Sheets of one grid train as one image: the boxes of a vector layer whole, pixel boxes moved into the
    mosaic's grid, the same tiles and validation strip as the whole image."""
    import csv as csvlib

    import geopandas as gpd
    from PIL import Image
    from shapely.geometry import box

    from geocamat.tasks.detection.inputs import labelled_units

    arr = np.asarray(Image.open(trained["img"])).transpose(2, 0, 1)
    cut = 77
    write(tmp_path / "whole.tif", arr, 0)
    (tmp_path / "tiles").mkdir()
    write(tmp_path / "tiles" / "a.tif", arr[:, :, :cut], 0)
    write(tmp_path / "tiles" / "b.tif", arr[:, :, cut:], cut)
    rows = list(csvlib.DictReader(trained["csv"].open()))
    xy = [[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in rows]
    gpd.GeoDataFrame({"label": ["box"] * len(xy)}, geometry=[box(500000 + a, 4000000 - d, 500000 + c, 4000000 - b)
                     for a, b, c, d in xy], crs="EPSG:32617").to_file(tmp_path / "ref.gpkg")
    sheets = [str(tmp_path / "tiles" / n) for n in ("a.tif", "b.tif")]
    units, infos, boxes, classes = labelled_units(sheets, [str(tmp_path / "ref.gpkg")], "label", None)
    _, _, whole, _ = labelled_units([str(tmp_path / "whole.tif")], [str(tmp_path / "ref.gpkg")], "label", None)
    assert len(units) == 1 and classes == ["box"] and (infos[0].width, infos[0].height) == (176, 176)
    np.testing.assert_allclose(np.sort(boxes[0].boxes, 0), np.sort(whole[0].boxes, 0), atol=1e-3)
    assert sum(b[0] < cut < b[2] for b in xy) > 0  # some objects do span the sheet edge
    # pixel boxes of each sheet: moved into the mosaic's grid
    (tmp_path / "b.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\nb.tif,3,4,20,30,box\n")
    _, _, moved, _ = labelled_units(sheets, [str(tmp_path / "b.csv")], "label", None)
    assert moved[0].boxes.tolist() == [[cut + 3, 4, cut + 20, 30]]
    metrics = {}
    for name, images in (("whole", [str(tmp_path / "whole.tif")]), ("sheets", [str(tmp_path / "tiles")])):
        result = CliRunner().invoke(cli, [
            "train", "--task", "detection", "--images", *images, "--labels", str(tmp_path / "ref.gpkg"),
            "--tile-size", "64", "--epochs", "1", "--set", "backbone=tiny", "--set", "batch_size=2",
            "--set", "max_tiles=4", "--set", "fpn_channels=16", "--set", "anchor_sizes=[8,16,32,64]",
            "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert "trained as 1 mosaic" in result.output
    for key in ("train_tiles", "val_tiles", "train_boxes", "validation_split"):
        assert metrics["sheets"][key] == metrics["whole"][key], key


def test_two_dates_of_one_place_are_detected_each_alone(trained, tmp_path):
    from PIL import Image

    arr = np.asarray(Image.open(trained["img"])).transpose(2, 0, 1)
    write(tmp_path / "2019.tif", arr, 0)
    write(tmp_path / "2021.tif", arr[:, :, ::-1].copy(), 0)
    result = CliRunner().invoke(cli, ["predict", "--model", str(trained["run"] / "model.geocamat"), "--out",
                                      str(tmp_path / "out"), "--score-threshold", "0.05", str(tmp_path / "2019.tif"),
                                      str(tmp_path / "2021.tif")])
    assert result.exit_code == 0, result.output
    assert "2 images cover the same ground as another (2019.tif, 2021.tif): each detected alone" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mosaics"] == [] and [i["detections"] > 0 for i in report["inputs"]] == [True, True]


def test_a_run_killed_in_one_process_resumes_on_two_ranks(trained, tmp_path, monkeypatch):
    """The windows kept by a killed one-process run are skipped by a resumed run of two ranks, whose rank 0 writes
    the objects of an uninterrupted run."""
    import geopandas as gpd
    from PIL import Image
    from test_inference_ranks import on_thread_ranks

    import geocamat.inference.detect_store as store_module
    from geocamat.tasks.detection.config import PredictOptions
    from geocamat.tasks.detection.predicting import predict_detection

    arr = np.asarray(Image.open(trained["img"])).transpose(2, 0, 1)
    write(tmp_path / "scene.tif", arr, 0)
    images, bundle = [str(tmp_path / "scene.tif")], Bundle.load(trained["run"] / "model.geocamat")
    monkeypatch.setattr(store_module, "CHUNK_BATCHES", 1)
    options = PredictOptions(score_threshold=0.01, batch_size=2, overlap=0.5)
    predict_detection(bundle, images, tmp_path / "whole", options, progress=False)
    real_save = store_module.WindowStore.save

    def killed_after_3(self, unit, indices, raw):
        if len(list(self.folder.glob("u*.npz"))) == 3:
            raise KeyboardInterrupt
        real_save(self, unit, indices, raw)

    monkeypatch.setattr(store_module.WindowStore, "save", killed_after_3)
    with pytest.raises(KeyboardInterrupt):
        predict_detection(bundle, images, tmp_path / "out", options, progress=False, final_dir=tmp_path / "out")
    monkeypatch.setattr(store_module.WindowStore, "save", real_save)
    import geocamat.inference.detect as detect_module

    ran, real = [], detect_module.detect_windows
    monkeypatch.setattr(detect_module, "detect_windows",
                        lambda *a, indices=None, **k: ran.extend(indices) or real(*a, indices=indices, **k))
    resumed = PredictOptions(score_threshold=0.01, batch_size=2, overlap=0.5, resume=True)
    results = on_thread_ranks(2, lambda ranks: predict_detection(bundle, images, tmp_path / "out", resumed,
                                                                 progress=False, final_dir=tmp_path / "out",
                                                                 ranks=ranks))
    assert all(isinstance(r, dict) for r in results), results
    windows = results[0]["inputs"][0]["windows"]
    assert len(ran) == windows - 6 and len(set(ran)) == len(ran)  # 3 kept chunks of a batch of 2, none run twice
    a, b = (gpd.read_file(tmp_path / name / "detections.gpkg", layer="detections") for name in ("whole", "out"))
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry")) and a.geometry.equals(b.geometry)


def test_objects_counted_per_region(trained, tmp_path):
    """--region stands.gpkg --region-field stand: each object carries the stand holding its centre; counts.csv has
    every stand the image covers and class (zeros too) with the area of its covered part, the share covered and
    objects per ha; stands that miss the image are not read (their counts would be zeros of unseen ground)."""
    import geopandas as gpd
    import pandas as pd
    import shapely
    from PIL import Image

    arr = np.asarray(Image.open(trained["img"])).transpose(2, 0, 1)
    write(tmp_path / "scene.tif", arr, 0)
    x0, y0 = 500000, 4000000
    ring = shapely.box(x0 - 50, y0 - 250, x0 + 250, y0 + 50).difference(shapely.box(x0 - 10, y0 - 190, x0 + 190,
                                                                                       y0 + 10))
    stands = gpd.GeoDataFrame({"stand": ["A", "B", "C", "D"]}, crs="EPSG:32617", geometry=[
        shapely.box(x0, y0 - 176, x0 + 80, y0),
        shapely.box(x0 + 80, y0 - 176, x0 + 300, y0),  # B: 96 of its 220 m across the image
        shapely.box(x0 + 1000, y0, x0 + 1100, y0 + 100),  # C: far from the image (not read)
        ring])  # D: around the image, missing it
    stands.to_crs("EPSG:4326").to_file(tmp_path / "stands.gpkg")
    model = str(trained["run"] / "model.geocamat")
    result = CliRunner().invoke(cli, ["predict", "--model", model, "--out", str(tmp_path / "out"), "--score-threshold",
                                      "0.01", "--region", str(tmp_path / "stands.gpkg"), "--region-field", "stand",
                                      str(tmp_path / "scene.tif")])
    assert result.exit_code == 0, result.output
    objects = gpd.read_file(tmp_path / "out" / "detections.gpkg", layer="detections")
    assert len(objects) > 0 and set(objects["region"]) <= {"A", "B"}
    centre_x = objects.geometry.centroid.x - x0
    clear = (centre_x - 80).abs() > 0.05  # (the stands went through EPSG:4326 and back: their edge moved ~1 cm)
    bad = objects[["region"]].assign(x=centre_x)[clear & ((centre_x < 80) != (objects["region"] == "A"))]
    assert bad.empty, bad
    counts = pd.read_csv(tmp_path / "out" / "counts.csv")
    assert (tmp_path / "out" / "counts.csvt").read_text().strip() == \
        '"String","String","Integer","Real","Real","Real"'  # QGIS reads the counts as numbers
    assert list(counts["region"]) == ["A", "B"] and list(counts["class_name"]) == ["box"] * 2
    assert counts["objects"].sum() == len(objects)
    np.testing.assert_allclose(counts["area_ha"], [80 * 176 / 1e4, 96 * 176 / 1e4], rtol=2e-3)  # the covered part
    np.testing.assert_allclose(counts["imaged_pct"], [100, 100 * 96 / 220], atol=0.2)
    np.testing.assert_allclose(counts["objects_per_ha"], counts["objects"] / counts["area_ha"], rtol=1e-2)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["counts_by_region"]["A"]["objects"] == int((objects["region"] == "A").sum())
    assert report["skipped_regions"] == [] and report["counts_by_region"]["B"]["imaged_pct"] < 44  # C, D not read
    assert report["regions_not_read"] == 2  # ... and counted, and said
    assert any("only partly covered by the images (B)" in n for n in report["notes"]), report["notes"]
    assert any("2 features of the region layer do not meet the images" in n for n in report["notes"])
    assert "only partly covered" in result.output
    # the same counts as a styled layer of the stands: graduated by objects per ha
    layer = gpd.read_file(tmp_path / "out" / "regions.gpkg", layer="regions")
    assert list(layer["region"]) == ["A", "B"] and list(layer["objects"]) == list(counts["objects"])
    assert list(layer["n_box"]) == list(counts["objects"]) and layer.crs.to_epsg() == 32617
    np.testing.assert_allclose(layer.to_crs(32617).area / 1e4, counts["area_ha"], rtol=2e-3)
    import sqlite3

    for name in ("detections.gpkg", "regions.gpkg"):  # GeoPackage 1.2: what QGIS 3.22 reads without a warning
        with sqlite3.connect(tmp_path / "out" / name) as db:
            assert db.execute("pragma user_version").fetchone()[0] == 10200, name
    qml = (tmp_path / "out" / "regions.qml").read_text()
    assert 'type="graduatedSymbol" attr="objects_per_ha"' in qml and qml.count("<range ") == 2  # 2 stands, 2 classes
    assert "concat(&quot;region&quot;, ': ', &quot;objects&quot;)" in qml and 'priority="9"' in qml  # name: count
    refused = CliRunner().invoke(cli, ["predict", "--model", model, "--out", str(tmp_path / "x"), "--region-field",
                                       "stand", str(tmp_path / "scene.tif")])
    assert refused.exit_code == 2 and "--region-field needs --region" in refused.output
    # evaluate: the counts per stand against labelled boxes (the inventory's error), besides mAP
    import csv as csvlib

    rows = list(csvlib.DictReader(trained["csv"].open()))
    xy = [[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in rows]
    gpd.GeoDataFrame({"label": ["box"] * len(xy)}, geometry=[shapely.box(x0 + a, y0 - d, x0 + c, y0 - b)
                     for a, b, c, d in xy], crs="EPSG:32617").to_file(tmp_path / "ref.gpkg")
    result = CliRunner().invoke(cli, ["evaluate", "--model", model, "--reference", str(tmp_path / "ref.gpkg"),
                                      "--score-threshold", "0.3", "--region", str(tmp_path / "stands.gpkg"),
                                      "--region-field", "stand", "--out", str(tmp_path / "ev"),
                                      str(tmp_path / "scene.tif")])
    assert result.exit_code == 0, result.output
    assert "counts in " in result.output and "mean absolute error" in result.output
    counts = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    by_stand = {r["region"]: r for r in counts["counts_by_region"]["regions"]}
    centre = [(a + c) / 2 for a, _, c, _ in xy]
    assert by_stand["A"]["labelled"] == sum(x < 80 for x in centre)
    assert sum(r["labelled"] for r in by_stand.values()) == len(xy) == counts["scene"]["labelled"]
    assert sum(r["found"] for r in by_stand.values()) == counts["scene"]["found"] and "C" not in by_stand
    err = [r["found"] - r["labelled"] for r in by_stand.values()]
    assert counts["counts_by_region"]["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert counts["counts_by_region"]["bias"] == pytest.approx(np.mean(err))


def test_info_check_reads_box_labels_as_training_does(trained, tmp_path):
    """`info --check DET IMAGE --labels BOXES`: the boxes on the images, by class (was read as a land-use label
    raster or layer: "not a raster", or "no coordinate columns" for a box CSV)."""
    from tests.conftest import SHARED_DATA

    trees = SHARED_DATA / "deepforest_neon_trees"
    model, image = str(trained["run"] / "model.geocamat"), str(trees / "OSBS_029.tif")
    boxes = tmp_path / "OSBS_029.csv"  # the 61 crowns, as the class this model knows
    boxes.write_text((trees / "OSBS_029.csv").read_text().replace(",Tree", ",box"))
    result = CliRunner().invoke(cli, ["info", "--check", model, image, "--labels", str(boxes)])
    assert f"ok: {boxes}: 61 boxes on 1 of 1 images; box 61" in result.output, result.output
    result = CliRunner().invoke(cli, ["info", "--check", model, image, "--labels", str(trees / "OSBS_029.csv")])
    assert result.exit_code == 2 and "holds classes the model does not know (Tree)" in result.output


def test_every_image_is_checked_against_the_models_pixel_size_and_refusals_list_real_flags(trained, tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(trained["img"]) as src:
        pixels = src.read()
    profile = dict(driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3, dtype="uint8",
                   crs="EPSG:32617")
    for name, pixel_size in (("geo.tif", 0.1), ("fine.tif", 0.1 / 8)):
        transform = from_origin(400_000, 3_300_000, pixel_size, pixel_size)
        with rasterio.open(tmp_path / name, "w", **profile, transform=transform) as dst:
            dst.write(pixels)
    (tmp_path / "geo.csv").write_text(trained["csv"].read_text().replace("scene.png", "geo.tif"))
    result = CliRunner().invoke(cli, [
        "train", "--task", "detection", "--images", str(tmp_path / "geo.tif"), "--labels", str(tmp_path / "geo.csv"),
        "--tile-size", "64", "--epochs", "1", "--set", "backbone=tiny", "--set", "max_tiles=2", "--set",
        "fpn_channels=16", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    model, images = str(tmp_path / "run" / "model.geocamat"), [str(tmp_path / "geo.tif"), str(tmp_path / "fine.tif")]
    for command in (["predict", "--out", str(tmp_path / "out")],
                    ["evaluate", "--reference", str(tmp_path / "geo.csv")]):
        result = CliRunner().invoke(cli, [*command, "--model", model, *images])
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert "fine.tif has" in result.output and "8.0x finer" in result.output and "--res" not in result.output
    assert not (tmp_path / "out").exists()
    for command in (["predict", "--out", str(tmp_path / "out"), "--res", "2"], ["evaluate", "--mask", "m.tif"]):
        result = CliRunner().invoke(cli, [*command, "--model", model, images[0]])
        assert result.exit_code == 2 and "does not apply" in result.output, result.output
        listed = result.output.split("its options: ")[1].rstrip(")\n").split(", ")
        assert "--match-iou" in listed and ("--bbox" in listed) == (command[0] == "predict")
        help_text = CliRunner().invoke(cli, [command[0], "--help"]).output
        assert all(flag in help_text for flag in listed)  # every flag named is one the command takes
    result = CliRunner().invoke(cli, ["predict", "--out", str(tmp_path / "dup"), "--model", model, "--quiet",
                                      "--duplicate-iou", "0.3", "--duplicate-merge", "wbf", images[0]])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "dup" / "report.json").read_text())["settings"]
    assert settings["duplicate_iou"] == 0.3 and settings["duplicate_merge"] == "wbf"


def test_an_rgba_image_is_its_colour_bands_with_the_alpha_band_as_its_mask(trained, tmp_path):
    from PIL import Image

    from geocamat.data.detection_images import band_names, read_image

    rgb = np.asarray(Image.open(trained["img"]))
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0  # a transparent strip, as an export of an irregular area has
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "scene.png")
    assert band_names(str(tmp_path / "scene.png")) == band_names(str(trained["img"]))  # three bands, not four
    data, valid = read_image(str(tmp_path / "scene.png"))
    np.testing.assert_array_equal(data, rgb.transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_array_equal(valid, alpha > 0)
    result = CliRunner().invoke(cli, ["predict", "--model", str(trained["run"] / "model.geocamat"), "--quiet",
                                      "--out", str(tmp_path / "out"), str(tmp_path / "scene.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "detections.gpkg").is_file()


def test_detection_trains_on_the_bands_picked_and_predicts_with_the_same(trained, tmp_path):
    import rasterio
    from PIL import Image

    from geocamat.data.detection_images import read_image

    rgb = np.asarray(Image.open(trained["img"])).transpose(2, 0, 1)
    bgrn = np.concatenate([rgb[::-1], rgb[:1] // 2])  # blue, green, red, near-infrared
    profile = dict(driver="GTiff", width=rgb.shape[2], height=rgb.shape[1], count=4, dtype="uint8",
                   photometric="MINISBLACK")
    with rasterio.open(tmp_path / "bgrn.tif", "w", **profile) as dst:
        dst.write(bgrn)
    data, _ = read_image(str(tmp_path / "bgrn.tif"), bands=(3, 2, 1))
    np.testing.assert_array_equal(data, rgb.astype(np.float32))
    (tmp_path / "bgrn.csv").write_text(trained["csv"].read_text().replace("scene.png", "bgrn.tif"))
    result = CliRunner().invoke(cli, [
        "train", "--task", "detection", "--images", str(tmp_path / "bgrn.tif"), "--labels", str(tmp_path / "bgrn.csv"),
        "--bands", "3,2,1", "--tile-size", "64", "--epochs", "1", "--set", "backbone=tiny", "--set", "max_tiles=2",
        "--set", "fpn_channels=16", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "bands: band3, band2, band1 (bands 3, 2, 1 of 4), in this order" in result.output
    bundle = Bundle.load(tmp_path / "run" / "model.geocamat")
    assert bundle.extra["band_selection"] == [3, 2, 1] and bundle.bands == ["band3", "band2", "band1"]
    model = str(tmp_path / "run" / "model.geocamat")
    result = CliRunner().invoke(cli, ["predict", "--model", model, "--out", str(tmp_path / "out"), "--quiet",
                                      "--force", str(tmp_path / "bgrn.tif")])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "two.tif", "w", **{**profile, "count": 2}) as dst:
        dst.write(bgrn[:2])
    result = CliRunner().invoke(cli, ["predict", "--model", model, "--out", str(tmp_path / "o2"), "--force",
                                      str(tmp_path / "two.tif")])
    assert result.exit_code == 2 and "its bands 3, 2, 1" in result.output, result.output
