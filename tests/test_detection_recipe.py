"""The detection training recipe: spatially disjoint validation, box-keeping jitter, anchors, schedule, EMA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geocamat.bundle import Bundle
from geocamat.data.boxes import ImageBoxes
from geocamat.data.detection_tiles import (
    DetectionTiles,
    anchor_sizes_from_boxes,
    plan_tiles,
    validation_split,
)
from geocamat.tasks.detection.module import lr_factor


def _boxes(width: int, height: int, n: int = 40, seed: int = 0) -> ImageBoxes:
    g = np.random.default_rng(seed)
    xy = g.uniform(0, [width - 30, height - 30], (n, 2))
    wh = g.uniform(10, 30, (n, 2))
    return ImageBoxes("x.png", width, height, np.hstack([xy, xy + wh]).astype(np.float32), ["tree"] * n)


@pytest.mark.parametrize("width,val_fraction", [(1000, 0.2), (650, 0.2), (650, 0.85), (700, 0.5), (2000, 0.3)])
def test_no_training_window_reaches_the_validation_strip(width, val_fraction):
    ts = 256
    ib = _boxes(width, 600)
    train, val = plan_tiles([ib], ts, val_fraction=val_fraction, empty_ratio=10.0)
    split = validation_split(width, ts, val_fraction)
    assert train and all(t.col + ts <= split for t in train)
    if split < width:
        assert val and all(t.col >= split for t in val)
    # the larger windows read by scale jitter stay left of the strip too
    ds = DetectionTiles([np.zeros((3, 600, width), np.float32)], [ib], {"tree": 0}, train, ts, augment=True,
                        scale_jitter=0.5, col_limits=[split])
    torch.manual_seed(0)
    for t in train:
        for _ in range(5):
            col, row, side = ds._window(t)
            assert col >= 0 and row >= 0 and col + min(side, split) <= split


def test_scale_and_colour_jitter_keep_boxes_on_the_objects():
    """A bright square object: after zoom, flips and colour jitter its box still frames the bright pixels."""
    img = np.zeros((3, 400, 400), np.float32)
    img[:, 180:230, 150:210] = 5.0
    ib = ImageBoxes("x.png", 400, 400, np.array([[150, 180, 210, 230]], np.float32), ["tree"])
    train, _ = plan_tiles([ib], 200, val_fraction=0.0, empty_ratio=0.0)
    ds = DetectionTiles([img], [ib], {"tree": 0}, train, 200, augment=True, scale_jitter=0.5, colour_jitter=0.2)
    torch.manual_seed(1)
    sides, seen = set(), 0
    for i in range(len(ds)):
        for _ in range(6):
            x, target = ds[i]
            assert x.shape == (3, 200, 200)
            for box in target["boxes"]:
                seen += 1
                x0, y0, x1, y1 = box.round().long().tolist()
                inner = x[0, y0 + 2:y1 - 2, x0 + 2:x1 - 2]
                outer_ring = torch.cat([x[0, max(0, y0 - 4):max(0, y0 - 2), x0:x1].flatten(),
                                        x[0, y1 + 2:y1 + 4, x0:x1].flatten()])
                assert inner.numel() and float(inner.min()) > 2.5
                if outer_ring.numel():
                    assert float(outer_ring.max()) < 1.5
                sides.add(round(float(box[2] - box[0]) + float(box[3] - box[1])))
    assert seen > 10 and len(sides) > 3  # boxes of many sizes: the zoom changes object sizes
    # colour jitter: band gains differ from 1 (the object is 5.0 before jitter)
    ds.scale_jitter = 0.0
    x, target = ds[0]
    if len(target["boxes"]):
        x0, y0, x1, y1 = target["boxes"][0].round().long().tolist()
        assert not torch.allclose(x[:, y0 + 2, x0 + 2], torch.full((3,), 5.0))


def test_grey_tiles_have_equal_bands_and_the_same_boxes():
    """grey 1.0: every training tile's bands become their mean (the same for each band), boxes untouched;
    grey 0: colour stays."""
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, (3, 256, 256)).astype(np.float32)
    img[0] += 2.0  # band means differ
    ib = ImageBoxes("x.png", 256, 256, np.array([[40, 50, 90, 100]], np.float32), ["tree"])
    train, _ = plan_tiles([ib], 128, val_fraction=0.0, empty_ratio=1.0)
    grey = DetectionTiles([img], [ib], {"tree": 0}, train, 128, augment=True, grey=1.0)
    colour = DetectionTiles([img], [ib], {"tree": 0}, train, 128, augment=True, grey=0.0)
    for i in range(len(train)):
        torch.manual_seed(i)
        x, target = grey[i]
        torch.manual_seed(i)
        y, same = colour[i]
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
        torch.testing.assert_close(x[0], y.mean(0))
        assert torch.equal(target["boxes"], same["boxes"])
        assert not torch.equal(y[0], y[1])


def test_anchor_sizes_follow_the_boxes():
    small = ImageBoxes("a", 500, 500, np.array([[0, 0, s, s] for s in range(10, 30)], np.float32), ["t"] * 20)
    sizes = anchor_sizes_from_boxes([small])
    assert len(sizes) == 4 and all(b >= 1.25 * a - 1 for a, b in zip(sizes, sizes[1:], strict=False))
    assert 10 <= sizes[0] <= 12 and 26 <= sizes[-1] <= 30
    big = ImageBoxes("b", 900, 900, small.boxes * 4, small.names)
    assert anchor_sizes_from_boxes([big])[0] > 3 * sizes[0]
    same = ImageBoxes("c", 500, 500, np.array([[0, 0, 20, 20]] * 5, np.float32), ["t"] * 5)
    assert anchor_sizes_from_boxes([same]) == [20, 25, 32, 40]  # still increasing over the levels


def test_lr_warms_up_linearly_then_decays_by_cosine():
    steps = 200
    f = [lr_factor(s, steps, 0.05) for s in range(steps)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10], strict=True))
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False)) and f[-1] < 0.02
    assert lr_factor(0, 3, 0.0) == 1.0


def test_ema_is_the_bias_corrected_average_of_the_weights():
    from geocamat.models.ema import ema_update
    from geocamat.tasks.detection.module import DetectionTask

    task = DetectionTask({"in_channels": 3, "num_classes": 1, "tile_size": 64, "backbone": "tiny",
                          "fpn_channels": 8}, ema_decay=0.5)
    key = "cam_head.weight"
    history = []
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            task.model.cam_head.weight.fill_(value)
        history.append(value)
        task._ema_norm = ema_update(task.ema_model, task.model, task.ema_decay, task._ema_norm)
    weights = [0.25, 0.5, 1.0]  # d^(n-i)
    want = sum(w * v for w, v in zip(weights, history, strict=True)) / sum(weights)
    assert torch.allclose(task.ema_model.state_dict()[key], torch.full_like(task.ema_model.cam_head.weight, want))
    assert task.final_model() is task.ema_model
    assert DetectionTask({"in_channels": 3, "num_classes": 1, "tile_size": 64, "backbone": "tiny",
                          "fpn_channels": 8}, ema_decay=0.0).ema_model is None


def test_training_records_the_recipe_and_ships_the_average(tmp_path):
    from test_detection_workflow import scene, train_detection

    img, csv = scene(tmp_path)
    cfg = {"images": [str(img)], "labels": [str(csv)], "tile_size": 128, "epochs": 1, "batch_size": 2,
           "max_tiles": 4, "backbone": "tiny", "fpn_channels": 8, "val_fraction": 0.0, "seed": 0, "num_workers": 1}
    metrics = train_detection(cfg, tmp_path / "run")  # one loader worker: the jittered tiles come from a worker
    bundle = Bundle.load(tmp_path / "run" / "model.geocamat")
    assert metrics["anchor_sizes_from"] == "training boxes" and metrics["numeric_precision"] == "32-true"
    assert bundle.model["anchor_sizes"] == metrics["anchor_sizes"] and 14 <= metrics["anchor_sizes"][0] <= 28
    assert bundle.extra["weights"] == "ema" and metrics["ema_decay"] == 0.9
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["ema_decay"] == 0.9
    assert bundle.regulariser == {"name": "none"}  # detection's default: CAMAT costs mAP on other sites


def test_bf16_autocast_training_runs(tmp_path):
    """The GPU default precision (bf16-mixed) through the whole training step, CAMAT included (here on the CPU)."""
    from test_detection_workflow import scene, train_detection

    img, csv = scene(tmp_path)
    cfg = {"images": [str(img)], "labels": [str(csv)], "tile_size": 128, "epochs": 1, "batch_size": 2,
           "max_tiles": 2, "backbone": "tiny", "fpn_channels": 8, "val_fraction": 0.0, "seed": 0,
           "precision": "bf16-mixed", "regulariser": "camat", "camat": {"warmup": 0.0, "p": 1.0}}
    metrics = train_detection(cfg, tmp_path / "run")
    assert metrics["numeric_precision"] == "bf16-mixed" and metrics["occluded_pixel_fraction"] > 0
    bundle = Bundle.load(tmp_path / "run" / "model.geocamat")
    assert all(v.dtype != torch.bfloat16 for v in bundle.state_dict.values())


def test_cli_sets_the_detection_camat_options_and_land_use_refuses_negatives(tmp_path):
    from test_detection_workflow import scene

    from tests.conftest import write_raster
    from tests.test_cli_tasks import refused, run

    img, csv = scene(tmp_path)
    common = ("train", "--task", "detection", "--images", img, "--labels", csv, "--tile-size", 128, "--epochs", 1,
              "--batch-size", 2, "--set", "backbone=tiny", "--set", "max_tiles=2", "--set", "val_fraction=0")
    refused(*common, "--set", "camat.negatives=0.5", "--out", tmp_path / "no",
            needle="--set camat.negatives applies only with --regulariser camat, not none")  # no CAMAT unless asked
    refused(*common, "--camat", "--regulariser", "none", "--out", tmp_path / "no",
            needle="--camat and --regulariser none contradict each other")
    run(*common, "--camat", "--set", "camat.negatives=0.5", "--set", "camat.mix=[mean, texture]",
        "--set", "anchor_sizes=[8,16,32,64]", "--set", "ema_decay=0", "--out", tmp_path / "run", "-q")
    bundle = Bundle.load(tmp_path / "run" / "model.geocamat")
    assert bundle.regulariser["negatives"] == 0.5 and bundle.regulariser["mix"] == ["mean", "texture"]
    assert bundle.model["anchor_sizes"] == [8, 16, 32, 64] and bundle.extra["weights"] == "last"
    assert bundle.extra["anchor_sizes_from"] == "configured"
    labels = np.ones((32, 32), "uint8")
    labels[:, 16:] = 2
    image = write_raster(tmp_path / "lu.tif", np.random.default_rng(0).normal(100, 5, (3, 32, 32)).astype("float32"))
    lab = write_raster(tmp_path / "lab.tif", labels, nodata=0)
    refused("train", "--images", image, "--labels", lab, "--tile-size", 16, "--set", "camat.negatives=1",
            "--out", tmp_path / "lu", needle="camat.negatives is only for detection")
    refused("train", "--task", "detection", "--images", img, "--labels", csv, "--camat", "--set", "camat.mix=[mixed]",
            "--out", tmp_path / "bad", needle="mix")
    assert not any((tmp_path / name).exists() for name in ("lu", "bad", "no"))


@pytest.mark.parametrize("arch", ["fasterrcnn", "retinanet", "fcos"])
def test_bf16_autocast_keeps_box_coordinates_in_float32(arch):
    """Under bf16 autocast torchvision would decode boxes in bf16 (corners on a 2 px grid past 256 px)."""
    from geocamat.models.detectors import Detector

    torch.manual_seed(0)
    model = Detector(arch=arch, tile_size=384, backbone="tiny", fpn_channels=32, score_threshold=0.0).eval()
    x = torch.randn(2, 3, 384, 384)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        boxes = torch.cat([d["boxes"] for d in model(x)])
    far = boxes[boxes > 260]
    assert boxes.dtype == torch.float32 and len(far) > 100
    assert (far % 2 != 0).float().mean() > 0.4  # in bf16 every one of them would be even


def test_camat_maps_leave_batchnorm_statistics_alone():
    """CAMAT's extra pass of the body (in training mode) must not move BatchNorm's running statistics."""
    from geocamat.tasks.detection.module import DetectionTask

    torch.manual_seed(0)
    task = DetectionTask({"in_channels": 3, "num_classes": 1, "tile_size": 64, "backbone": "tiny",
                          "fpn_channels": 8}, ema_decay=0.0)
    task.model.train()
    bn = [m for m in task.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in bn]
    cams = task._cams(torch.randn(2, 3, 64, 64) * 3 + 5)
    assert cams.shape == (2, 1, 64, 64) and bn
    for m, (mean, var, n) in zip(bn, before, strict=True):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var) and int(m.num_batches_tracked) == n
    task.model.class_activation_maps(torch.randn(2, 3, 64, 64) * 3 + 5)  # the bare pass would move them
    assert not all(torch.equal(m.running_mean, b[0]) for m, b in zip(bn, before, strict=True))


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_camat_pairs_keep_the_clean_tiles_and_weight_the_occluded_copies(weight):
    """camat.consistency > 0 (detection): the clean batch is trained whole and the occluded copies are a second
    forward, their loss times the weight; 0: the occluded tiles replace the clean ones (one forward)."""
    import types

    from geocamat.camat.detection import ObjectCAMAT
    from geocamat.tasks.detection.module import DetectionTask

    torch.manual_seed(0)
    reg = ObjectCAMAT(p=1.0, warmup=0.0, fill="mean", negatives=0.0, consistency=weight)
    task = DetectionTask({"in_channels": 3, "num_classes": 1, "tile_size": 64, "backbone": "tiny",
                          "fpn_channels": 8}, regulariser=reg, ema_decay=0.0)
    task._trainer = types.SimpleNamespace(max_epochs=1, current_epoch=0)
    task.log = lambda *args, **kwargs: None
    seen = []
    task._loss = lambda images, targets: seen.append((images.clone(), len(targets))) or torch.tensor(float(len(seen)))
    images = torch.randn(3, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([0])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
               {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([0])}]
    loss = task.training_step((images, targets), 0)
    if weight == 0:  # one forward, on the occluded batch
        assert len(seen) == 1 and seen[0][1] == 3 and not torch.equal(seen[0][0], images) and float(loss) == 1.0
    else:  # the clean batch, then the two tiles with an occluded object: 1 + 0.5 * 2
        assert [n for _, n in seen] == [3, 2] and torch.equal(seen[0][0], images)
        assert not torch.equal(seen[1][0], images[[0, 2]]) and float(loss) == 1.0 + weight * 2.0


def test_small_images_hold_out_whole_images_for_validation():
    """No image is 2.5 tiles wide (a dataset of chips): val_fraction of the labelled images are held out
    whole, and training draws no tile from them."""
    from geocamat.data.detection_tiles import validation_plan

    ts = 256
    images = [_boxes(300, 300, n=5, seed=i) for i in range(10)]
    plan = validation_plan(images, ts, 0.2)
    assert plan.kind == "images" and len(plan.held) == 2 and "2 whole images of 10" in plan.note
    train, val = plan_tiles(images, ts, val_fraction=0.2, empty_ratio=1.0)
    assert {t.image for t in val} == plan.held
    assert train and not {t.image for t in train} & plan.held
    # wide images keep their strips; the narrow ones then all train
    mixed = images[:3] + [_boxes(1000, 300)]
    plan = validation_plan(mixed, ts, 0.2)
    assert plan.kind == "strips" and not plan.held and plan.splits[3] < 1000
    assert plan.splits[:3] == [300, 300, 300]


def test_one_small_image_says_there_is_no_validation_and_how_to_get_one():
    from geocamat.data.detection_tiles import validation_plan

    one = [_boxes(900, 900), ImageBoxes("empty.png", 300, 300, np.zeros((0, 4), np.float32), [])]
    plan = validation_plan(one, 400, 0.2)  # the unlabelled image is not held out: nothing to score on it
    assert plan.kind == "none" and not plan.held and plan.note.startswith("warning: no validation split")
    suggested = int(plan.note.rsplit("--tile-size ", 1)[1])
    assert validation_split(900, suggested, 0.2) < 900 <= validation_split(900, 400, 0.2)
    _, val = plan_tiles(one, 400, val_fraction=0.2)
    assert val == []
