import pytest
import torch
from torch import nn

from geocamat.camat.robustness import (
    CONDITIONS,
    cloud_mask,
    deletion_insertion,
    occlude,
    random_square_mask,
    robustness_report,
)
from geocamat.models.camnet import CamNet


def test_random_square_fraction():
    g = torch.Generator().manual_seed(0)
    for frac in (0.1, 0.25, 0.4):
        m = random_square_mask(5, 40, 40, frac, generator=g)
        side = round((frac * 1600) ** 0.5)
        assert (m.flatten(1).sum(1) == side * side).all()
        rows = m[:, 0].any(dim=2).sum(1)
        assert (rows == side).all()  # a square


def test_cloud_cover_and_smoothness():
    g = torch.Generator().manual_seed(0)
    m = cloud_mask(4, 64, 64, 0.3, generator=g)[:, 0]
    assert (m.flatten(1).sum(1) == round(0.3 * 64 * 64)).all()
    # smooth: far fewer cloud/clear transitions between neighbours than a random mask of the same cover
    edges = (m[:, 1:] != m[:, :-1]).float().mean()
    rand = torch.rand(4, 64, 64, generator=g) < 0.3
    assert edges < 0.25 * (rand[:, 1:] != rand[:, :-1]).float().mean()


def test_occlude_conditions():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    cams = torch.rand(3, 32, 32)
    for name in CONDITIONS:
        out = occlude(x, name, cams=cams, generator=torch.Generator().manual_seed(1),
                      band_max=torch.tensor([9.0, 8.0, 7.0]))
        assert out.shape == x.shape
        changed = (out != x).any(dim=1)
        frac = CONDITIONS[name][1]
        assert abs(changed.float().mean().item() - frac) < 0.02
    out = occlude(x, "cloud30", generator=torch.Generator().manual_seed(1), band_max=torch.tensor([9.0, 8.0, 7.0]))
    changed = (out != x).any(dim=1)
    assert torch.equal(out[:, 0][changed], torch.full((int(changed.sum()),), 9.0))
    top = occlude(x, "topcam25", cams=cams)
    hidden = (top != x).any(dim=1)
    for i in range(3):
        assert cams[i][hidden[i]].min() >= cams[i][~hidden[i]].max()


def test_deletion_insertion_prefers_true_evidence():
    # a model that only looks at the mean of a central block: the true saliency deletes it first
    class Block(nn.Module):
        def forward(self, x):
            s = x[:, 0, 4:8, 4:8].mean(dim=(1, 2))
            return torch.stack([s, -s], dim=1) * 5

    x = torch.zeros(2, 1, 12, 12)
    x[:, :, 4:8, 4:8] = 1.0
    good = torch.zeros(2, 12, 12)
    good[:, 4:8, 4:8] = 1.0
    bad = 1 - good
    cls = torch.zeros(2, dtype=torch.long)
    d_good, i_good = deletion_insertion(Block(), x, good, cls, steps=12)
    d_bad, i_bad = deletion_insertion(Block(), x, bad, cls, steps=12)
    assert (d_good < d_bad).all() and (i_good > i_bad).all()


def test_report_keys_and_determinism():
    torch.manual_seed(0)
    net = CamNet(3, 4, 16, arch="camnet-s")
    x, y = torch.randn(10, 3, 16, 16), torch.randint(0, 4, (10,))
    r1 = robustness_report(net, (x, y), batch_size=4, auc_samples=3, auc_steps=2)
    assert r1["n"] == 10 and set(r1["accuracy"]) == set(CONDITIONS)
    assert all(0.0 <= v <= 1.0 for v in r1["accuracy"].values())
    assert 0.0 <= r1["deletion_auc"] <= 1.0 and 0.0 <= r1["insertion_auc"] <= 1.0
    assert net.training  # mode restored
    loader = [{"image": x[:6], "label": y[:6]}, {"image": x[6:], "label": y[6:]}]
    r2 = robustness_report(net, loader, conditions=["clean", "random25", "cloud30"], auc_samples=0)
    assert r2["accuracy"]["clean"] == r1["accuracy"]["clean"]
    assert "deletion_auc" not in r2
    with pytest.raises(ValueError):
        robustness_report(net, (x, y), conditions=["fog"])
