import math

import pytest
import torch
from torch import Tensor, nn

from geocamat.camat import CAMAT as _CAMAT
from geocamat.camat import CamatConfig, Cutout, HideAndSeek, RandomErasing, Regulariser, build_regulariser
from geocamat.camat.geometry import dihedral
from geocamat.models.camnet import CamNet
from tests.conftest import CLASSIC_CAMAT


def CAMAT(**options):  # noqa: N802 - the class under test, with the classic defaults its mechanics tests assume
    return _CAMAT(**{**CLASSIC_CAMAT, **options})


class Toy(nn.Module):
    """forward_features(x) = x; head = linear over bands, class i looks at band i (weight 1, others 0)."""

    def __init__(self, bands: int = 2, classes: int = 2) -> None:
        super().__init__()
        self.head = nn.Linear(bands, classes)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(classes, bands))
            self.head.bias.zero_()

    def forward_features(self, x: Tensor) -> Tensor:
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x).mean(dim=(2, 3)))


def _occluded(before, after):
    """(N, H, W) pixels changed by a regulariser."""
    return (before != after).any(dim=1)


def _blob_images(n=4, size=16):
    """Band 0 bright in a 4x4 block near the top-left, band 1 bright in a block near the bottom-right."""
    x = torch.full((n, 2, size, size), 0.1)
    x[:, 0, 2:6, 3:7] = 5.0
    x[:, 1, 10:14, 9:13] = 3.0
    return x


def test_build_and_settings():
    for name in ("none", "camat", "cutout", "random-erasing", "hide-and-seek"):
        reg = build_regulariser(name)
        assert reg.settings()["name"] == name
    with pytest.raises(ValueError):
        build_regulariser("mixup")
    with pytest.raises(ValueError):
        CamatConfig(saliency="lime")
    with pytest.raises(ValueError):
        CamatConfig(source="stale")
    x = torch.rand(2, 3, 8, 8)
    assert Regulariser()(x, torch.zeros(2, dtype=torch.long)) is x


@pytest.mark.parametrize("saliency", ["cam", "gradcam", "gradcampp"])
def test_camat_occludes_target_region(saliency):
    x = _blob_images()
    reg = CAMAT(p=1.0, warmup=0.0, tau=0.5, saliency=saliency, fill="mean")
    gt = torch.tensor([0, 0, 1, 1])
    out = reg(x, gt, model=Toy())
    occ = _occluded(x, out)
    for i, t in enumerate(gt.tolist()):
        block = (slice(2, 6), slice(3, 7)) if t == 0 else (slice(10, 14), slice(9, 13))
        assert occ[i][block].all()
        assert occ[i].sum() < 0.25 * occ[i].numel()
    # the other class's block is untouched
    assert not occ[0, 10:14, 9:13].any() and not occ[2, 2:6, 3:7].any()


def test_target_pred_uses_predicted_class():
    x = _blob_images()  # band 0 is brighter over the image: the toy model predicts class 0
    reg = CAMAT(p=1.0, warmup=0.0, tau=0.5, target="pred")
    occ = _occluded(x, reg(x, torch.ones(4, dtype=torch.long), model=Toy()))
    assert occ[:, 2:6, 3:7].all() and not occ[:, 10:14, 9:13].any()


def test_area_mode_exact():
    torch.manual_seed(0)
    x = torch.randn(6, 2, 16, 16) + 3  # no pixel equals the mean fill 0
    reg = CAMAT(p=1.0, warmup=0.0, area=0.25)
    occ = _occluded(x, reg(x, torch.zeros(6, dtype=torch.long), model=Toy()))
    assert occ.flatten(1).sum(1).tolist() == [64] * 6


def test_warmup():
    x = _blob_images()
    y = torch.zeros(4, dtype=torch.long)
    reg = CAMAT(p=1.0, warmup=0.2, tau=0.5)
    for epoch in range(10):
        out = reg(x, y, model=Toy(), epoch=epoch, max_epochs=10)
        assert torch.equal(out, x) == (epoch < 2)
    assert reg.active(2, 10) and not reg.active(1, 10)


@pytest.mark.parametrize("reg_factory,p", [
    (lambda: CAMAT(p=0.3, warmup=0.0, tau=0.5), 0.3),
    (lambda: Cutout(p=0.6), 0.6),
    (lambda: RandomErasing(), 0.5),
])
def test_probability(reg_factory, p):
    torch.manual_seed(123)
    n = 4000
    x = _blob_images(n, 16)
    out = reg_factory()(x, torch.zeros(n, dtype=torch.long), model=Toy())
    frac = _occluded(x, out).flatten(1).any(1).float().mean().item()
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_hide_and_seek_cells():
    torch.manual_seed(0)
    x = torch.randn(2000, 1, 16, 16) + 5
    occ = _occluded(x, HideAndSeek(grid=4, p=0.5)(x, torch.zeros(2000, dtype=torch.long)))
    cells = occ.view(2000, 4, 4, 4, 4).permute(0, 1, 3, 2, 4).reshape(2000, 16, 16)
    per_cell = cells.float().mean(2)
    assert ((per_cell == 0) | (per_cell == 1)).all()  # whole cells hidden
    assert abs(per_cell.mean().item() - 0.5) < 0.02


def test_random_erasing_area_and_aspect():
    torch.manual_seed(0)
    x = torch.randn(3000, 1, 40, 40) + 5
    occ = _occluded(x, RandomErasing(p=1.0)(x, torch.zeros(3000, dtype=torch.long)))
    area = occ.flatten(1).float().mean(1)
    assert area.min() >= 0.015 and area.max() <= 0.45
    cut = Cutout(area=0.25, p=1.0)
    occ = _occluded(x[:10], cut(x[:10], torch.zeros(10, dtype=torch.long)))
    assert occ.flatten(1).sum(1).tolist() == [400] * 10


@pytest.mark.parametrize("name", ["camat", "cutout", "random-erasing", "hide-and-seek"])
def test_determinism_and_no_grad_leak(name):
    x = _blob_images(8) + torch.linspace(0, 1, 16)  # distinct from every fill value
    y = torch.zeros(8, dtype=torch.long)
    opts = {**CLASSIC_CAMAT, "p": 1.0, "warmup": 0.0, "tau": 0.5} if name == "camat" else {}
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(build_regulariser(name, **opts)(x, y, model=Toy()))
    assert torch.equal(outs[0], outs[1])
    xg = x.clone().requires_grad_(True)
    torch.manual_seed(7)
    out = build_regulariser(name, **opts)(xg, y, model=Toy())
    out.sum().backward()
    occ = _occluded(x, out.detach()).unsqueeze(1).expand_as(x)
    assert occ.any()
    assert (xg.grad[occ] == 0).all() and (xg.grad[~occ] == 1).all()


def test_fresh_forward_keeps_batchnorm_stats_and_grads():
    torch.manual_seed(0)
    net = CamNet(3, 4, 32, arch="camnet-s").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    reg = CAMAT(p=1.0, warmup=0.0, saliency="gradcam")
    reg(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]), model=net)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in net.parameters())
    assert net.training


def test_cached_geometry_all_transform_pairs():
    """A map observed under transform t and replayed under transform u lands on the right pixels."""
    size = 12
    canon = torch.full((1, 1, size, size), 0.1)
    canon[0, 0, 1:4, 2:4] = 5.0  # asymmetric bright block in the canonical frame
    pairs = [(t, u) for t in range(8) for u in range(8)]
    n = len(pairs)
    t = torch.tensor([p[0] for p in pairs])
    u = torch.tensor([p[1] for p in pairs])
    ids = torch.arange(n)
    model = Toy(bands=1, classes=1)
    y = torch.zeros(n, dtype=torch.long)
    reg = CAMAT(p=1.0, warmup=0.0, tau=0.5, source="cached")
    seen_t = dihedral(canon.expand(n, -1, -1, -1), t)
    reg.observe(model.forward_features(seen_t), model.head, y, sample_ids=ids, transforms=t)
    # replay: the image under u is uniform, so only the cached map can place the occlusion
    replay = torch.full((n, 1, size, size), 0.1)
    out = reg(replay, y, model=None, sample_ids=ids, transforms=u)
    occ = out[:, 0] != replay[:, 0]
    expected = dihedral(canon.expand(n, -1, -1, -1), u)[:, 0] > 1.0
    assert torch.equal(occ, expected)


def test_cached_miss_skip_fresh_and_update_policy():
    x = _blob_images(4)
    y = torch.zeros(4, dtype=torch.long)
    ids = torch.tensor([10, 11, 12, 13])
    reg = CAMAT(p=1.0, warmup=0.0, tau=0.5, source="cached")
    assert torch.equal(reg(x, y, model=Toy(), sample_ids=ids), x)  # nothing cached yet: skipped
    fresh = CAMAT(p=1.0, warmup=0.0, tau=0.5, source="cached", cache_miss="fresh")
    assert _occluded(x, fresh(x, y, model=Toy(), sample_ids=ids))[:, 2:6, 3:7].all()
    with pytest.raises(ValueError):
        reg(x, y, model=Toy())  # no sample ids
    # cache_update="clean": samples occluded in the step are not re-recorded
    reg = CAMAT(p=1.0, warmup=0.0, tau=0.5, source="cached")
    reg.observe(Toy().forward_features(x), Toy().head, y, sample_ids=ids)
    out = reg(x, y, sample_ids=ids)
    assert _occluded(x, out).any(dim=(1, 2)).all()
    stored = reg._cache[ids].clone()
    moved = torch.roll(x, shifts=(4, 4), dims=(2, 3))
    reg.observe(Toy().forward_features(moved), Toy().head, y, sample_ids=ids)
    assert torch.equal(reg._cache[ids], stored)
    reg_all = CAMAT(p=1.0, warmup=0.0, tau=0.5, source="cached", cache_update="all")
    reg_all.observe(Toy().forward_features(x), Toy().head, y, sample_ids=ids)
    stored = reg_all._cache[ids].clone()
    reg_all(x, y, sample_ids=ids)
    reg_all.observe(Toy().forward_features(moved), Toy().head, y, sample_ids=ids)
    assert not torch.equal(reg_all._cache[ids], stored)
    assert reg_all._cache.dtype == torch.float16


@pytest.mark.parametrize("saliency,target", [("cam", "pred"), ("gradcampp", "gt")])
def test_bf16_autocast_training_step(saliency, target):
    """The path used on GPU (bf16 autocast), exercised with CPU autocast."""
    torch.manual_seed(0)
    net = CamNet(3, 4, 16, arch="camnet-s").train()
    x, y, ids = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1]), torch.arange(6)
    k = torch.tensor([0, 1, 2, 3, 4, 5])
    for source in ("fresh", "cached"):
        reg = CAMAT(p=1.0, warmup=0.0, saliency=saliency, target=target, source=source, cache_miss="fresh",
                    cache_update="all")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = reg(x, y, model=net, sample_ids=ids, transforms=k)
            features = net.forward_features(out)
        assert out.dtype == torch.float32 and (out != x).any()
        reg.observe(features.detach(), net.head, y, sample_ids=ids, transforms=k)
        if source == "cached":
            assert reg._seen[ids].all() and torch.isfinite(reg._cache[ids].float()).all()
            assert float(reg._cache[ids].float().amax()) == pytest.approx(1.0, abs=1e-3)


def test_cache_grows_with_new_ids():
    reg = CAMAT(p=1.0, warmup=0.0, tau=0.5, source="cached", cache_update="all")
    x = _blob_images(2)
    y = torch.zeros(2, dtype=torch.long)
    reg.observe(x, Toy().head, y, sample_ids=torch.tensor([0, 1]))
    reg.observe(x, Toy().head, y, sample_ids=torch.tensor([5, 40]))
    assert reg._cache.shape[0] >= 41 and reg._seen[[0, 1, 5, 40]].all() and not reg._seen[2:5].any()
    out = reg(x, y, sample_ids=torch.tensor([40, 3]))  # 3 was never observed: not occluded
    occ = _occluded(x, out)
    assert occ[0].any() and not occ[1].any()
    reg.reset_cache()
    assert torch.equal(reg(x, y, sample_ids=torch.tensor([0, 1])), x)


def test_reserved_cache_is_sized_once_and_keeps_the_same_maps():
    """reserve(n) sizes the cache up front (no read-back of the largest id per step on a GPU); same maps."""
    x = _blob_images(4)
    y = torch.tensor([0, 1, 0, 1])
    plain, reserved = (CAMAT(p=1.0, warmup=0.0, tau=0.5, source="cached", cache_update="all") for _ in range(2))
    reserved.reserve(30)
    for ids in (torch.tensor([0, 1, 2, 3]), torch.tensor([29, 4, 17, 8])):
        for reg in (plain, reserved):
            reg.observe(x, Toy().head, y, sample_ids=ids)
    assert reserved._cache.shape[0] == 30 and plain._cache.shape[0] >= 30
    for ids in (torch.tensor([0, 29, 17, 3]), torch.tensor([8, 4, 2, 1])):
        torch.manual_seed(0)
        a = plain(x, y, sample_ids=ids)
        torch.manual_seed(0)
        b = reserved(x, y, sample_ids=ids)
        assert torch.equal(a, b) and not torch.equal(a, x)


def test_random_share_moves_the_mask_but_keeps_its_area():
    torch.manual_seed(0)
    x = torch.zeros(64, 2, 16, 16)
    x[:, 0, :4, :4] = 5.0  # class 0's evidence: the top-left corner
    y = torch.zeros(64, dtype=torch.long)
    top = CAMAT(p=1.0, warmup=0.0, tau=0.5)(x, y, model=Toy())
    mixed = CAMAT(p=1.0, warmup=0.0, tau=0.5, random_share=1.0, fill="noise")(x, y, model=Toy())
    hidden_top = (top != x).any(dim=1)
    hidden_mixed = (mixed != x).any(dim=1)
    assert hidden_top[:, :4, :4].all()  # top-CAM: the evidence is hidden
    assert (hidden_mixed.flatten(1).sum(1) - hidden_top.flatten(1).sum(1)).abs().max() <= 4  # same area
    assert hidden_mixed[:, :4, :4].float().mean() < 0.5  # but mostly elsewhere


def test_random_area_draws_the_random_squares_size_from_its_range():
    torch.manual_seed(0)
    x = torch.zeros(256, 2, 20, 20)
    x[:, 0, :4, :4] = 5.0
    y = torch.zeros(256, dtype=torch.long)
    out = CAMAT(p=1.0, warmup=0.0, tau=0.5, random_share=1.0, random_area=[0.1, 0.5], fill="noise")(x, y, model=Toy())
    share = (out != x).any(dim=1).flatten(1).float().mean(dim=1)
    assert share.min() >= 0.08 and share.max() <= 0.53  # rounding of the square's sides
    assert share.std() > 0.08  # spread over the range, not the CAM region's fixed 4%
    with pytest.raises(ValueError, match="random_area"):
        CamatConfig(random_area=[0.5, 0.1])


def test_random_grid_hides_grid_cells_at_the_drawn_share():
    torch.manual_seed(0)
    x = torch.zeros(512, 2, 16, 16)
    x[:, 0, :4, :4] = 5.0
    y = torch.zeros(512, dtype=torch.long)
    out = CAMAT(p=1.0, warmup=0.0, tau=0.5, random_share=1.0, random_area=[0.5, 0.5], random_shape="grid",
                fill="noise")(x, y, model=Toy())
    hidden = (out != x).any(dim=1).float()
    cells = hidden.view(512, 4, 4, 4, 4)  # (n, cell row, row in cell, cell col, col in cell)
    per_cell = cells.mean(dim=(2, 4))
    assert ((per_cell == 0) | (per_cell == 1)).all()  # whole 4 x 4 px cells, never parts of one
    assert abs(float(hidden.mean()) - 0.5) < 0.02  # each cell hidden with the drawn share
    assert float(per_cell.flatten(1).sum(1).std()) > 1.0  # scattered at random, not one fixed pattern
    with pytest.raises(ValueError, match="random_shape"):
        CamatConfig(random_shape="circle")


def test_consistency_pairs_train_clean_and_occluded_copies():
    from geocamat.camat.consistency import consistency_loss, paired_batch

    clean = torch.randn(4, 2, 8, 8)
    occluded = clean.clone()
    occluded[1, :, :4] = 0
    chosen = torch.tensor([False, True, False, False])
    batch, index = paired_batch(clean, occluded, chosen)
    assert batch.shape[0] == 5 and torch.equal(batch[:4], clean) and torch.equal(batch[4], occluded[1])
    logits = torch.tensor([[2.0, 0.0], [3.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 3.0]], requires_grad=True)
    loss = consistency_loss(logits, 4, index)
    assert loss > 0
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[4].abs().sum() > 0  # the clean side is the target
    same = torch.tensor([[1.0, 0.0]] * 4 + [[1.0, 0.0]])
    assert consistency_loss(same, 4, torch.tensor([0])).item() < 1e-6


def test_schedule_moves_occlusion_strength_linearly_around_the_set_one():
    cfg = CamatConfig(schedule="rising", warmup=0.2, p=0.4, area=0.2, random_area=[0.1, 0.5], tau=0.7)
    first, last = cfg.at_epoch(6, 30), cfg.at_epoch(29, 30)  # epochs 6..29 occlude (warm-up 0.2 of 30)
    assert (first.p, first.area, first.tau) == pytest.approx((0.2, 0.1, 0.85))
    assert first.random_area == pytest.approx([0.05, 0.25])
    assert (last.p, last.area, last.tau) == pytest.approx((0.6, 0.3, 0.55))
    assert last.random_area == pytest.approx([0.15, 0.75])
    assert sum(cfg.strength(e, 30) for e in range(6, 30)) / 24 == pytest.approx(1.0)  # same occlusion on average
    falling = CamatConfig(schedule="falling", warmup=0.2, p=0.4)
    assert (falling.at_epoch(6, 30).p, falling.at_epoch(29, 30).p) == pytest.approx((0.6, 0.2))
    assert CamatConfig(p=0.9, schedule="rising").at_epoch(29, 30).p == 1.0  # kept in range
    constant = CamatConfig()
    assert constant.at_epoch(3, 30) is constant
    with pytest.raises(ValueError, match="schedule"):
        CamatConfig(schedule="cosine")


def test_rising_schedule_occludes_few_samples_early_and_many_late():
    torch.manual_seed(0)
    x = torch.zeros(2000, 2, 8, 8)
    x[:, 0, :2, :2] = 5.0
    y = torch.zeros(2000, dtype=torch.long)
    camat = CAMAT(p=0.6, warmup=0.0, tau=0.5, schedule="rising")
    early = camat(x, y, model=Toy(), epoch=0, max_epochs=10)
    late = camat(x, y, model=Toy(), epoch=9, max_epochs=10)
    share = [float((out != x).flatten(1).any(dim=1).float().mean()) for out in (early, late)]
    assert share == pytest.approx([0.3, 0.9], abs=0.03)
