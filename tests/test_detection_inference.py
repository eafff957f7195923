"""Sliding-window detection: window plan, cross-tile merging, GeoPackage output on OSBS_029, metrics."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from geocamat.bundle import Bundle, ClassInfo
from geocamat.inference.detect import detect_image, merge_tiles, plan_windows
from geocamat.metrics.detection import mean_average_precision, precision_recall

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deepforest_neon_trees"


def test_windows_cover_the_image():
    wins = plan_windows(300, 200, 128, 0.25)
    cover = np.zeros((200, 300), bool)
    for c, r in wins:
        cover[r:r + 128, c:c + 128] = True
    assert cover.all() and all(c + 128 <= 300 and r + 128 <= 200 for c, r in wins)
    assert plan_windows(50, 60, 128, 0.25) == [(0, 0)]


def fake_detector(tiles: torch.Tensor):
    """Finds the bright pixels of each band: band k holds object k (class k % 2); returns their visible box."""
    dets = []
    for t in tiles:
        boxes, labels = [], []
        for k in range(t.shape[0]):
            ys, xs = torch.nonzero(t[k] > 0.5, as_tuple=True)
            if len(xs):
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                labels.append(k % 2)
        dets.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                     "scores": torch.full((len(boxes),), 0.9), "labels": torch.tensor(labels, dtype=torch.int64)})
    return dets, None


def synthetic(tmp_path: Path, objects: list[tuple[int, int, int, int]], width=300, height=200) -> Path:
    arr = np.zeros((len(objects), height, width), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(objects):
        arr[k, y0:y1, x0:x1] = 255
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=len(objects), dtype="uint8",
                       crs="EPSG:32617", transform=from_origin(500000, 4000000, 1, 1)) as dst:
        dst.write(arr)
    return path


@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_object_across_tile_border_is_found_once(tmp_path, overlap):
    # windows (tile 128): columns 0, 96 (or 64), ...; object 0 straddles the border at x = 128 and fits the
    # overlap; object 1 (band 1) is wider than the overlap, so no window sees it whole; object 2 is far away.
    objects = [(110, 40, 140, 70), (60, 120, 230, 150), (250, 20, 270, 40)]
    path = synthetic(tmp_path, objects)
    det = detect_image(str(path), fake_detector, tile_size=128, mean=[0.0] * 3, std=[255.0] * 3, overlap=overlap,
                       batch_size=3)
    assert det.raw_detections > len(objects)  # seen in several windows ...
    assert len(det.boxes) == len(objects)  # ... reported once each
    order = np.argsort(det.boxes[:, 0])
    expect = np.array(objects, np.float32)[np.argsort([o[0] for o in objects])]
    np.testing.assert_allclose(det.boxes[order], expect)


def test_merge_keeps_neighbouring_distinct_objects():
    boxes = np.array([[0, 0, 10, 10], [12, 0, 22, 10], [0, 0, 10, 10.0]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    labels = np.array([0, 0, 1])
    wins = np.array([[0, 0, 16, 16], [8, 0, 24, 16], [8, 0, 24, 16]], np.float32)
    kept, idx = merge_tiles(boxes, scores, labels, np.zeros(3, bool), wins)
    assert sorted(idx.tolist()) == [0, 1, 2]  # touching boxes and another class at the same place stay


def tiny_bundle(tile_size: int = 256) -> Bundle:
    from geocamat.models import build_model

    torch.manual_seed(0)
    spec = {"name": "detector", "arch": "fasterrcnn", "in_channels": 3, "num_classes": 1, "tile_size": tile_size,
            "backbone": "tiny"}
    model = build_model(spec)
    return Bundle(task="detection", model=spec, state_dict=model.state_dict(), bands=["r", "g", "b"],
                  mean=[100.0] * 3, std=[50.0] * 3, classes=[ClassInfo(0, "Tree", "#4daf4a")], tile_size=tile_size,
                  extra={"score_threshold": 0.0, "nms_iou": 0.5, "overlap": 0.25})


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data not available")
def test_predict_osbs_writes_gpkg_in_image_crs_inside_bounds(tmp_path):
    import geopandas as gpd

    from geocamat.tasks.detection.config import PredictOptions
    from geocamat.tasks.detection.predicting import predict_detection

    bundle = tiny_bundle()
    bundle.save(tmp_path / "model.geocamat")
    out = tmp_path / "out"
    report = predict_detection(bundle, [str(DATA / "OSBS_029.tif")], out, PredictOptions(score_threshold=0.0),
                               progress=False, model_path=str(tmp_path / "model.geocamat"))
    gdf = gpd.read_file(out / "detections.gpkg", layer="detections")
    with rasterio.open(DATA / "OSBS_029.tif") as src:
        crs, b = src.crs, src.bounds
    assert gdf.crs == crs and len(gdf) > 0 and report["total"] == len(gdf)
    x0, y0, x1, y1 = gdf.total_bounds
    assert b.left - 1e-6 <= x0 and x1 <= b.right + 1e-6 and b.bottom - 1e-6 <= y0 and y1 <= b.top + 1e-6
    assert {"class_name", "class_id", "score", "area", "cam_evidence"} <= set(gdf.columns)
    assert gdf["cam_evidence"].between(0, 1).all() and (gdf["area"] > 0).all()
    np.testing.assert_allclose(gdf["area"], (gdf.xmax - gdf.xmin) * (gdf.ymax - gdf.ymin) * 0.01, rtol=1e-4)
    assert (out / "detections.qml").read_text().count("<category ") == 1
    with sqlite3.connect(out / "detections.gpkg") as con:
        rows = con.execute("SELECT f_table_name, useAsDefault, styleQML FROM layer_styles").fetchall()
    assert rows[0][0] == "detections" and rows[0][1] == 1 and "categorizedSymbol" in rows[0][2]
    saved = json.loads((out / "report.json").read_text())
    assert saved["model"]["sha256"] and saved["counts"]["Tree"] == len(gdf)
    assert not list(out.glob("*.part*"))


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data not available")
def test_predict_plain_png_gives_pixel_coordinates(tmp_path):
    import geopandas as gpd

    from geocamat.tasks.detection.config import PredictOptions
    from geocamat.tasks.detection.predicting import predict_detection

    out = tmp_path / "out"
    predict_detection(tiny_bundle(), [str(DATA / "OSBS_029.png")], out, PredictOptions(score_threshold=0.0),
                      progress=False)
    gdf = gpd.read_file(out / "detections.gpkg")
    assert gdf.crs is None and len(gdf) > 0
    x0, y0, x1, y1 = gdf.total_bounds
    assert 0 <= x0 and x1 <= 400 and -400 <= y0 and y1 <= 0  # y = -row


def _random_case(seed: int, n_img: int = 4, k: int = 2):
    g = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_img):
        gt = g.uniform(0, 80, (g.integers(1, 8), 2))
        gt = np.hstack([gt, gt + g.uniform(5, 30, gt.shape)])
        gl = g.integers(0, k, len(gt))
        jitter = gt + g.normal(0, 2, gt.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        extra = g.uniform(0, 80, (g.integers(0, 5), 2))
        extra = np.hstack([extra, extra + 10])
        pb = np.vstack([jitter, extra])
        pl = np.concatenate([gl, g.integers(0, k, len(extra))])
        preds.append({"boxes": pb, "scores": g.uniform(0.05, 1, len(pb)), "labels": pl})
        targets.append({"boxes": gt, "labels": gl})
    return preds, targets


def _coco(preds, targets, k):
    """mAP@[.5:.95] and mAP@.5 from pycocotools' COCOeval itself."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [{"id": i} for i in range(len(targets))], "categories": [{"id": c} for c in range(k)],
          "annotations": []}
    dt = []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        for b, lab in zip(t["boxes"].astype(float), t["labels"], strict=True):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(lab),
                                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                                      "area": float((b[2] - b[0]) * (b[3] - b[1])), "iscrowd": 0})
        for b, lab, s in zip(p["boxes"].astype(float), p["labels"], p["scores"], strict=True):
            dt.append({"image_id": i, "category_id": int(lab), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                       "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dt), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0], ev.stats[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_agrees_with_pycocotools_and_torchmetrics(seed):
    pytest.importorskip("pycocotools")
    from torchmetrics.detection import MeanAveragePrecision

    from geocamat.metrics.detection import IOU_THRESHOLDS, to_tensors

    preds, targets = _random_case(seed)
    for d in preds + targets:  # same float32 boxes for all (IoUs at a threshold must not differ by rounding)
        d["boxes"] = d["boxes"].astype(np.float32)
    ours = mean_average_precision(preds, targets, 2)
    ref_map, ref_50 = _coco(preds, targets, 2)
    assert ours["map"] == pytest.approx(ref_map, abs=1e-6) and ours["map_50"] == pytest.approx(ref_50, abs=1e-6)
    # torchmetrics (pycocotools backend) converts boxes itself, which can move an IoU across a threshold;
    # its default thresholds are float32-rounded, so pass pycocotools' own
    tm = MeanAveragePrecision(iou_type="bbox", backend="pycocotools", iou_thresholds=list(IOU_THRESHOLDS))
    tm.update([to_tensors(p) for p in preds], [to_tensors(t) for t in targets])
    ref = tm.compute()
    assert ours["map_50"] == pytest.approx(float(ref["map_50"]), abs=1e-6)
    assert ours["map"] == pytest.approx(float(ref["map"]), abs=0.01)


def test_precision_recall_counts():
    preds = [{"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60.0]]), "scores": np.array([0.9, 0.2]),
              "labels": np.array([0, 0])}]
    targets = [{"boxes": np.array([[0, 0, 10, 11], [20, 20, 30, 30.0]]), "labels": np.array([0, 0])}]
    pr = precision_recall(preds, targets, 0.5)
    assert (pr["tp"], pr["fp"], pr["n_gt"]) == (1, 0, 2) and pr["recall"] == 0.5 and pr["precision"] == 1.0
    assert mean_average_precision(targets and preds, targets, 1)["map_50"] == pytest.approx(0.5, abs=0.01)


def _same_object_pairs_by_scan(boxes, labels, windows, match_iou=0.5) -> set:
    """Every pair merge_tiles must join, found by comparing each detection with every other (the definition)."""
    pairs = set()
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if labels[i] != labels[j] or (windows[i] == windows[j]).all():
                continue
            a = np.r_[np.maximum(boxes[i, :2], windows[j, :2]), np.minimum(boxes[i, 2:], windows[j, 2:])]
            b = np.r_[np.maximum(boxes[j, :2], windows[i, :2]), np.minimum(boxes[j, 2:], windows[i, 2:])]
            inter = np.r_[np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])]
            area = [max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1]) for r in (a, b, inter)]
            overlap = boxes[j, 0] < boxes[i, 2] and boxes[j, 2] > boxes[i, 0] and \
                boxes[j, 1] < boxes[i, 3] and boxes[j, 3] > boxes[i, 1]
            if overlap and area[2] / max(area[0] + area[1] - area[2], 1e-9) >= match_iou:
                pairs.add((i, j))
    return pairs


def test_merge_tiles_joins_exactly_the_pairs_a_scan_of_every_detection_joins():
    """The merge looks only at the detections near each one (bisection over xmin): the groups it forms are those
    of the full pairwise definition, on a scene of objects cut by overlapping windows."""
    from geocamat.unionfind import connected_components

    g = np.random.default_rng(5)
    xy = g.uniform(0, 900, (120, 2))
    objects = np.hstack([xy, xy + g.uniform(15, 90, (120, 2))])
    boxes, windows, labels = [], [], []
    for col, row in plan_windows(1000, 1000, 256, 0.25):
        w = np.array([col, row, col + 256, row + 256], float)
        cut = np.hstack([np.maximum(objects[:, :2], w[:2]), np.minimum(objects[:, 2:], w[2:])])
        seen = (cut[:, 2] - cut[:, 0] > 3) & (cut[:, 3] - cut[:, 1] > 3)
        boxes.append(cut[seen] + g.normal(0, 2, (seen.sum(), 4)))
        windows.append(np.tile(w, (seen.sum(), 1)))
        labels.append(np.arange(120)[seen] % 2)
    boxes, windows, labels = np.concatenate(boxes), np.concatenate(windows), np.concatenate(labels)
    scores = g.uniform(0.1, 1, len(boxes))
    truncated = np.zeros(len(boxes), bool)
    roots = connected_components(len(boxes), _same_object_pairs_by_scan(boxes, labels, windows))
    groups = {r: np.flatnonzero(roots == r) for r in np.unique(roots)}
    kept, idx = merge_tiles(boxes, scores, labels, truncated, windows, nms_iou=1.0)  # no NMS: every group stays
    assert len(kept) == len(groups) < len(boxes)
    best = {int(m[np.argmax(scores[m])]) for m in groups.values()}
    assert set(idx.tolist()) == best
    np.testing.assert_allclose(kept, boxes[idx].astype(np.float32))


def _match_by_scan(pb, ps, tb, thr):
    """True-positive flags of predictions (by descending score) matched COCO's way on the full IoU matrix."""
    from geocamat.metrics.detection import box_iou

    order = np.argsort(-ps, kind="stable")
    iou, used, tps = box_iou(pb[order], tb), np.zeros(len(tb), bool), []
    for k in range(len(pb)):
        best, j = min(thr, 1 - 1e-10), -1
        for g in range(len(tb)):
            if not used[g] and iou[k, g] >= best:
                best, j = iou[k, g], g
        if j >= 0:
            used[j] = True
        tps.append(j >= 0)
    return np.asarray(tps, bool)


@pytest.mark.parametrize("seed", range(8))
def test_matching_on_overlapping_pairs_equals_the_full_iou_matrix(seed):
    """Evaluation matches predictions to ground truths on the pairs above the threshold only (a scene's
    boxes, not their square): the same matches as the full matrix, equal IoUs and rounded corners included."""
    from geocamat.metrics.detection import _match

    g = np.random.default_rng(seed)
    gt = g.uniform(0, 300, (60, 2))
    gt = np.hstack([gt, gt + g.uniform(5, 40, (60, 2))])
    stray = np.tile(g.uniform(0, 300, (40, 2)), 2) + [0, 0, 20, 20]
    pb = np.vstack([gt + g.normal(0, 3, gt.shape), gt[:20] + 1, gt[:10], stray])  # jittered, shifted, exact
    if seed % 2:
        gt, pb = np.round(gt), np.round(pb)
    ps = np.round(g.uniform(size=len(pb)), 1)  # many equal scores
    for thr in (0.4, 0.5, 0.75, 0.95):
        scores, tps, n_gt = _match([{"boxes": pb, "scores": ps, "labels": np.zeros(len(pb))}],
                                   [{"boxes": gt, "labels": np.zeros(len(gt))}], 0, thr)
        want = _match_by_scan(pb, ps, gt, thr)
        assert n_gt == 60 and 0 < want.sum() < len(pb)
        np.testing.assert_array_equal(tps, want)
        np.testing.assert_array_equal(scores, np.sort(ps)[::-1])


def test_matching_of_equal_ious_takes_the_last_ground_truth_as_coco():
    """A prediction halfway between two ground truths (IoU 1/3 with each) takes the later one, as pycocotools'
    loop does; a weaker prediction on that later one then finds it taken."""
    from geocamat.metrics.detection import _match

    gt = np.array([[5, 0, 15, 10], [15, 0, 25, 10]], float)
    pb = np.array([[10, 0, 20, 10], [15, 0, 25, 10]], float)
    for find in (_match_by_scan(pb, np.array([0.9, 0.5]), gt, 0.3),
                 _match([{"boxes": pb, "scores": np.array([0.9, 0.5]), "labels": np.zeros(2)}],
                        [{"boxes": gt, "labels": np.zeros(2)}], 0, 0.3)[1]):
        np.testing.assert_array_equal(find, [True, False])


def test_detection_areas_are_square_metres_in_any_crs():
    """A 10 x 20 m box: 200 m² in UTM, in US survey feet (NC State Plane) and in longitude/latitude."""
    import geopandas as gpd
    import shapely

    from geocamat.outputs.detections import polygon_areas_m2

    utm = gpd.GeoSeries([shapely.box(500000, 4000000, 500010, 4000020)], crs="EPSG:32617")
    assert polygon_areas_m2(utm.values, utm.crs)[0] == pytest.approx(200.0)
    for crs in ("EPSG:2264", "EPSG:4326"):
        other = utm.to_crs(crs)
        assert polygon_areas_m2(other.values, other.crs)[0] == pytest.approx(200.0, rel=2e-3)
    assert polygon_areas_m2(utm.values, None)[0] == pytest.approx(200.0)  # plain images: pixels
