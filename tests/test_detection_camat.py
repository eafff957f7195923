"""Object-aware CAMAT and Random Erasing for detection, and the detector's CAM head."""

from __future__ import annotations

import pytest
import torch

from geocamat.camat.detection import (
    ObjectCAMAT,
    ObjectRandomErasing,
    boxes_cover,
    build_object_regulariser,
    negative_masks,
    object_cam_masks,
    object_random_masks,
)
from geocamat.models import build_model


def _inside(mask: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
    allowed = torch.zeros_like(mask)
    for i, bb in enumerate(boxes):
        for x0, y0, x1, y1 in bb.long().tolist():
            allowed[i, :, y0:y1, x0:x1] = True
    return allowed


def test_cam_mask_stays_in_boxes_and_follows_the_class_map():
    cams = torch.zeros(1, 2, 64, 64)
    cams[0, 0, 10:14, 10:14] = 5.0  # class 0 peak inside box 1
    cams[0, 0, 40:60, 40:60] = 9.0  # class 0 evidence outside every box: never masked
    cams[0, 1, 30:32, 30:32] = 1.0  # class 1 peak inside box 2 (small absolute value: normalised per box)
    cams[0, 1, 12:13, 12:13] = 100.0  # class 1 peak inside box 1: irrelevant, box 1 is class 0
    boxes = [torch.tensor([[5.0, 5.0, 20.0, 20.0], [25.0, 25.0, 35.0, 35.0]])]
    labels = [torch.tensor([0, 1])]
    mask = object_cam_masks(cams, boxes, labels, tau=0.7, p=1.0)
    assert not (mask & ~_inside(mask, boxes)).any()
    assert mask[0, 0, 10:14, 10:14].all() and mask[0, 0, 30:32, 30:32].all()
    assert int(mask.sum()) == 16 + 4
    assert not object_cam_masks(cams, boxes, labels, p=0.0).any()


def test_cam_mask_top_area_is_a_fraction_of_each_box():
    g = torch.Generator().manual_seed(0)
    cams = torch.rand(2, 3, 50, 50, generator=g)
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[20.0, 10.0, 40.0, 30.0]])]
    labels = [torch.tensor([2]), torch.tensor([1])]
    mask = object_cam_masks(cams, boxes, labels, area=0.25, p=1.0)
    assert int(mask[0].sum()) == 25 and int(mask[1].sum()) == 100
    top = cams[1, 1, 10:30, 20:40].flatten().topk(100).indices
    assert mask[1, 0, 10:30, 20:40].flatten()[top].all()


def test_random_erasing_inside_boxes_only():
    boxes = [torch.tensor([[3.0, 4.0, 30.0, 20.0], [40.0, 40.0, 60.0, 63.0]]), torch.zeros(0, 4)]
    g = torch.Generator().manual_seed(1)
    mask = object_random_masks((2, 64, 64), boxes, p=1.0, generator=g)
    assert mask[0].any() and not mask[1].any()
    assert not (mask & ~_inside(mask, boxes)).any()


def test_regularisers_apply_fill_and_warmup():
    images = torch.randn(2, 3, 32, 32)
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.tensor([[10.0, 10.0, 30.0, 30.0]])]
    labels = [torch.tensor([0]), torch.tensor([0])]

    def cam_fn(x):
        return x[:, :1].abs()

    camat = ObjectCAMAT(p=1.0, warmup=0.5, fill="mean", negatives=0.0)
    same, mask = camat(images, boxes, labels, cam_fn=cam_fn, epoch=0, max_epochs=4)
    assert mask is None and torch.equal(same, images)
    out, mask = camat(images, boxes, labels, cam_fn=cam_fn, epoch=2, max_epochs=4)
    assert mask.any() and torch.all(out[mask.expand_as(out)] == 0)  # mean fill = 0 after normalisation
    assert torch.equal(out[~mask.expand_as(out)], images[~mask.expand_as(images)])
    out, mask = ObjectRandomErasing(p=1.0, fill="white")(images, boxes, labels)
    assert mask.any()
    assert build_object_regulariser("none")(images, boxes, labels)[1] is None
    assert camat.settings()["name"] == "camat" and camat.settings()["tau"] == 0.7


def test_detector_trains_with_cam_head_and_gives_cams():
    torch.manual_seed(0)
    model = build_model({"name": "detector", "arch": "fasterrcnn", "in_channels": 4, "num_classes": 2,
                         "tile_size": 128, "backbone": "tiny"})
    x = torch.randn(2, 4, 128, 128)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    model.train()
    losses = model(x, targets)
    assert {"loss_cam", "loss_classifier", "loss_objectness"} <= set(losses)
    sum(losses.values()).backward()
    assert model.cam_head.weight.grad is not None and model.cam_head.weight.grad.abs().sum() > 0
    model.eval()
    dets, cams = model.predict(x)
    assert cams.shape == (2, 2, 128, 128) and len(dets) == 2
    assert torch.allclose(cams, model.class_activation_maps(x), atol=1e-4)
    if len(dets[0]["labels"]):
        assert dets[0]["labels"].min() >= 0 and dets[0]["labels"].max() <= 1


def test_vectorised_threshold_matches_per_object_reference():
    from geocamat.camat.masks import normalise_maps, threshold_mask

    g = torch.Generator().manual_seed(2)
    cams = torch.randn(3, 2, 40, 48, generator=g)
    boxes = [torch.tensor([[0.5, 1.2, 20.7, 15.0], [10.0, 10.0, 47.9, 39.9]]), torch.zeros(0, 4),
             torch.tensor([[30.0, 0.0, 48.0, 12.3]])]
    labels = [torch.tensor([1, 0]), torch.zeros(0, dtype=torch.int64), torch.tensor([1])]
    got = object_cam_masks(cams, boxes, labels, tau=0.6, p=1.0)
    want = torch.zeros_like(got)
    for i, (bb, ll) in enumerate(zip(boxes, labels, strict=True)):
        for (x0, y0, x1, y1), lab in zip(bb.tolist(), ll.tolist(), strict=True):
            x0, y0, x1, y1 = int(x0 // 1), int(y0 // 1), -int(-x1 // 1), -int(-y1 // 1)
            crop = cams[i, lab, y0:y1, x0:x1].unsqueeze(0)
            want[i, :, y0:y1, x0:x1] |= threshold_mask(normalise_maps(crop), 0.6)[0]
    assert torch.equal(got, want) and got.any()


def test_dense_cam_loss_teaches_where_objects_are():
    """A few steps of the CAM head alone on fixed features: its CAM rises inside the box, not outside."""
    torch.manual_seed(0)
    model = build_model({"name": "detector", "in_channels": 3, "num_classes": 1, "tile_size": 128,
                         "backbone": "tiny"})
    x = torch.randn(2, 3, 128, 128)
    x[:, :, 32:80, 32:80] += 3.0  # the "object" looks different
    targets = [{"boxes": torch.tensor([[32.0, 32.0, 80.0, 80.0]]), "labels": torch.tensor([0])}] * 2
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        losses = model(x, targets)
        opt.zero_grad()
        losses["loss_cam"].backward()
        opt.step()
    model.eval()
    cam = model.class_activation_maps(x)[0, 0]
    inside, outside = cam[40:72, 40:72].mean(), cam[96:, 96:].mean()
    # presence labels alone (cam_dense=False) leave a CAM about half as high outside as inside here
    assert inside > 0 and outside < 0.1 * inside


def test_negatives_copy_the_shapes_outside_every_box():
    g = torch.Generator().manual_seed(3)
    boxes = [torch.tensor([[4.0, 4.0, 20.5, 20.0], [30.0, 8.0, 50.0, 30.0]]), torch.tensor([[10.0, 40.0, 30.0, 60.0]]),
             torch.zeros(0, 4)]
    cams = torch.rand(3, 1, 64, 64, generator=g)
    labels = [torch.zeros(len(b), dtype=torch.int64) for b in boxes]
    pos = object_cam_masks(cams, boxes, labels, area=0.3, p=1.0)
    neg = negative_masks(pos, boxes, 1.0, generator=g)
    for i, b in enumerate(boxes):
        cover = torch.from_numpy(boxes_cover(b, 64, 64))  # pixels any box touches (fractional edges included)
        assert not (pos[i, 0] & ~cover).any()  # positives inside boxes
        assert not (neg[i, 0] & cover).any()  # negatives outside every box
    # about as many occluded pixels outside as inside (copies may overlap), none for an image without boxes
    for i in (0, 1):
        assert 0.6 * int(pos[i].sum()) <= int(neg[i].sum()) <= int(pos[i].sum())
    assert not neg[2].any()
    assert int(negative_masks(pos, boxes, 2.0, generator=g)[1].sum()) > int(pos[1].sum())
    assert not negative_masks(pos, boxes, 0.0).any()


def test_camat_pastes_negatives_with_the_same_fill():
    images = torch.randn(2, 3, 64, 64)
    boxes = [torch.tensor([[4.0, 4.0, 24.0, 24.0]]), torch.tensor([[30.0, 30.0, 60.0, 60.0]])]
    labels = [torch.tensor([0]), torch.tensor([0])]
    camat = ObjectCAMAT(p=1.0, warmup=0.0, fill="mean")
    assert camat.config.negatives == 1.0 and camat.config.fill == "mean"
    out, mask = camat(images, boxes, labels, cam_fn=lambda x: x[:, :1].abs())
    inside = _inside(mask, boxes)
    assert (mask & inside).any() and (mask & ~inside).any()
    assert torch.all(out[mask.expand_as(out)] == 0)
    assert camat.last_negative_fraction > 0


def test_detection_camat_defaults_do_not_change_land_use():
    from geocamat.camat.config import DEFAULT_MIX, DETECTION_MIXED_FILLS, MIXED_FILLS, CamatConfig, DetectionCamatConfig

    base = CamatConfig()
    assert base.fill == "mixed" and base.negatives == 0.0 and base.mixed_fills() == DEFAULT_MIX
    assert CamatConfig(mix=None).mixed_fills() == MIXED_FILLS
    det = DetectionCamatConfig()
    assert det.fill == "mixed" and det.negatives == 1.0 and det.mixed_fills() == DETECTION_MIXED_FILLS
    assert "texture" in DETECTION_MIXED_FILLS and "texture" not in MIXED_FILLS
    assert ObjectCAMAT().config.fill == "mixed"

    with pytest.raises(ValueError):
        CamatConfig(mix=["mixed"])
    with pytest.raises(ValueError):
        CamatConfig(negatives=-1)


def test_detection_settings_keep_detection_camat_defaults_and_land_use_refuses_negatives():

    from geocamat.errors import ConfigError
    from geocamat.settings import build
    from geocamat.tasks.detection.config import DetectionConfig
    from geocamat.tasks.landuse.config import LandUseConfig

    cfg = build(DetectionConfig, {"images": ["a.tif"], "labels": ["a.xml"], "camat": {"tau": 0.6}}, what="detection")
    assert cfg.camat.tau == 0.6 and cfg.camat.fill == "mixed" and cfg.camat.negatives == 1.0
    with pytest.raises(ConfigError, match="only for detection"):
        build(LandUseConfig, {"camat": {"negatives": 1.0}}, what="land-use training")


def test_object_camat_follows_its_schedule():
    torch.manual_seed(0)
    images = torch.randn(400, 3, 32, 32)
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 20.0]])] * 400
    labels = [torch.tensor([0])] * 400
    camat = ObjectCAMAT(p=0.6, warmup=0.0, fill="mean", negatives=0.0, schedule="falling")
    shares = []
    for epoch in (0, 9):
        _, mask = camat(images, boxes, labels, cam_fn=lambda x: x[:, :1].abs(), epoch=epoch, max_epochs=10)
        shares.append(float(mask.flatten(1).any(dim=1).float().mean()))
    assert shares == pytest.approx([0.9, 0.3], abs=0.07)  # p 0.6 x 1.5, then x 0.5
