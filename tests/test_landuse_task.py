"""The land-use model and training task: per-pixel supervision of the CAM logits, test-time augmentation."""

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from geocamat.camat.regularisers import Regulariser
from geocamat.tasks.landuse.module import LandUseTask, TileDataset

SPEC = {"name": "camnet", "in_channels": 3, "num_classes": 3, "tile_size": 16, "arch": "camnet-xs"}


class LeftHalfOcclusion(Regulariser):
    """Fills the left half of every tile with 5.0 (a value the test images never hold)."""

    def __call__(self, images, targets, **kwargs):
        out = images.clone()
        out[..., : images.shape[-1] // 2] = 5.0
        return out


def _task(regulariser: Regulariser, pixel_loss: float) -> LandUseTask:
    torch.manual_seed(0)
    task = LandUseTask(SPEC, regulariser, label_smoothing=0.0, pixel_loss=pixel_loss)
    task._trainer = SimpleNamespace(max_epochs=1, current_epoch=0)
    task.log = lambda *args, **kwargs: None
    return task


def test_pixel_loss_ignores_unlabelled_pixels():
    task = _task(Regulariser(), 1.0)
    features = task.model.forward_features(torch.randn(2, 3, 16, 16))
    mask = torch.randint(0, 3, (2, 16, 16))
    partial = mask.clone()
    partial[:, :8] = -1
    dense = F.conv2d(features, task.model.head.weight[:, :, None, None], task.model.head.bias)
    up = F.interpolate(dense, size=(16, 16), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(up.permute(0, 2, 3, 1)[:, 8:].reshape(-1, 3), mask[:, 8:].reshape(-1))
    assert torch.allclose(task._pixel_loss(features, partial), expected, atol=1e-5)
    nothing = torch.full_like(mask, -1)
    loss = task._pixel_loss(features, nothing)
    assert float(loss) == 0.0 and loss.requires_grad  # no labelled pixel: a zero that still backpropagates


def test_training_step_adds_the_pixel_term_without_the_occluded_pixels():
    x = torch.randn(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0])
    mask = y.view(-1, 1, 1).expand(-1, 16, 16).clone()
    batch = {"image": x, "label": y, "index": torch.arange(4), "mask": mask}
    task = _task(LeftHalfOcclusion(), 2.0)
    seen = {}
    original = task._pixel_loss

    def spy(features, m):
        seen["mask"] = m.clone()
        return original(features, m)

    task._pixel_loss = spy
    torch.manual_seed(1)
    with_pixels = task.training_step(batch, 0)
    occluded_columns = seen["mask"][..., :8]
    assert (occluded_columns == -1).all()  # occluded after the augmentation: left out of the pixel term
    assert (seen["mask"][..., 8:] == y.view(-1, 1, 1)).all()
    plain = _task(LeftHalfOcclusion(), 0.0)
    plain.load_state_dict(task.state_dict())
    torch.manual_seed(1)
    without = plain.training_step(batch, 0)
    assert float(with_pixels) > float(without)  # the weighted pixel term is added to the tile loss


def test_tile_dataset_serves_masks_only_when_given():
    images, labels = torch.zeros(2, 3, 16, 16), torch.tensor([0, 1])
    assert "mask" not in TileDataset(images, labels)[0]
    masks = torch.zeros(2, 16, 16, dtype=torch.int16)
    sample = TileDataset(images, labels, masks)[1]
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (16, 16)


def test_test_time_augmentation_makes_tile_outputs_follow_flips_and_turns():
    from geocamat.camat.geometry import dihedral
    from geocamat.models.camnet import CamNet, tile_probabilities

    torch.manual_seed(0)
    model = CamNet(3, 4, 16, "camnet-xs", output="dense").eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        probs, cam = tile_probabilities(model, x, tta=True)
        plain, _ = tile_probabilities(model, x)
        for k in (1, 5):
            p, c = tile_probabilities(model, dihedral(x, k), tta=True)
            torch.testing.assert_close(p, dihedral(probs, k), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(c, dihedral(cam, k), atol=1e-5, rtol=1e-4)
        turned, _ = tile_probabilities(model, dihedral(x, 1))
    assert not torch.allclose(turned, dihedral(plain, 1), atol=1e-4)  # an untrained model alone is not invariant
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2, 16, 16))


def test_ema_weights_are_the_bias_corrected_average_of_the_steps():
    torch.manual_seed(0)
    task = LandUseTask(SPEC, Regulariser(), ema_decay=0.5)
    assert task.ema_model is not None and not any(p.requires_grad for p in task.ema_model.parameters())
    weight = task.model.head.weight
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            weight.fill_(value)
        task.on_train_batch_end(None, None, 0)
    # decay 0.5: the three states weigh 0.25, 0.5 and 1 (the initial weights not at all)
    expected = (0.25 * 1.0 + 0.5 * 2.0 + 1.0 * 4.0) / 1.75
    assert torch.allclose(task.ema_model.head.weight, torch.full_like(weight, expected))
    assert {n for n, _ in task.named_parameters() if _.requires_grad} == {"model." + n for n, _ in
                                                                          task.model.named_parameters()}


def test_no_ema_model_by_default():
    assert LandUseTask(SPEC, Regulariser()).ema_model is None


def test_cutmix_mixes_the_tile_loss_by_the_footprint_share(monkeypatch):
    import geocamat.tasks.landuse.module as landuse_module

    x = torch.randn(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0])
    batch = {"image": x, "label": y, "index": torch.arange(4), "mask": y.view(-1, 1, 1).expand(-1, 16, 16).clone()}
    other = torch.tensor([2, 2, 1, 1])
    calls = {}

    def fake_cutmix(images, masks, labels, footprint):
        calls["footprint"] = footprint
        return images, masks, other, 0.25

    monkeypatch.setattr(landuse_module, "cutmix", fake_cutmix)
    task = LandUseTask(SPEC, Regulariser(), label_smoothing=0.0, cutmix=1.0, footprint=0.25)
    task._trainer = SimpleNamespace(max_epochs=1, current_epoch=0)
    task.log = lambda *args, **kwargs: None
    torch.manual_seed(0)
    loss = task.training_step(batch, 0)
    assert calls["footprint"] == 0.25
    # the same step by hand: the flips are drawn first, from the same seed
    from geocamat.camat.geometry import dihedral

    torch.manual_seed(0)
    turns = torch.randint(0, 8, (4,))
    out = task.model(dihedral(x, turns))
    expected = 0.25 * F.cross_entropy(out, y) + 0.75 * F.cross_entropy(out, other)
    assert torch.allclose(loss, expected, atol=1e-5)


def test_consistency_pairs_add_the_occluded_copies_and_their_term():
    from geocamat.camat.regularisers import CAMAT
    from tests.conftest import CLASSIC_CAMAT

    x = torch.randn(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0])
    batch = {"image": x, "label": y, "index": torch.arange(4), "mask": y.view(-1, 1, 1).expand(-1, 16, 16).clone()}
    logged = {}
    task = _task(CAMAT(**{**CLASSIC_CAMAT, "p": 1.0, "warmup": 0.0, "consistency": 2.0}), pixel_loss=1.0)
    task.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    seen = []
    forward = task.model.forward_features
    task.model.forward_features = lambda images: (seen.append(images.shape[0]), forward(images))[1]
    loss = task.training_step(batch, 0)
    assert seen[-1] == 8 and logged["train_consistency"] >= 0  # 4 clean + 4 occluded copies in one forward
    assert torch.isfinite(loss)
    plain = _task(CAMAT(**{**CLASSIC_CAMAT, "p": 1.0, "warmup": 0.0}), pixel_loss=1.0)
    seen.clear()
    plain.model.forward_features = lambda images: (seen.append(images.shape[0]), forward(images))[1]
    plain.training_step(batch, 0)
    assert seen[-1] == 4  # without pairs the occluded samples replace their clean copies
