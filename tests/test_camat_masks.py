import pytest
import torch

from geocamat.camat.fills import FILLS, MIXED_FILLS, apply_mask, fill_values
from geocamat.camat.masks import normalise_maps, threshold_mask, top_area_mask


def test_top_area_fraction_exact():
    torch.manual_seed(0)
    maps = torch.rand(5, 20, 30)
    for area in (0.0, 0.1, 0.25, 0.4, 1.0):
        mask = top_area_mask(maps, area)
        assert mask.shape == (5, 1, 20, 30)
        assert (mask.flatten(1).sum(1) == round(area * 600)).all()
    # ties (a constant map) still give the exact count
    assert top_area_mask(torch.zeros(2, 10, 10), 0.25).flatten(1).sum(1).tolist() == [25, 25]
    # and the occluded pixels are the most salient ones
    mask = top_area_mask(maps, 0.1)[:, 0]
    for i in range(5):
        assert maps[i][mask[i]].min() >= maps[i][~mask[i]].max()


def test_tau_semantics():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])
    norm = normalise_maps(maps)
    assert torch.allclose(norm, maps / 4)
    assert threshold_mask(norm, 0.5)[0, 0].tolist() == [[False, False], [True, True]]
    assert threshold_mask(norm, 1.0)[0, 0].tolist() == [[False, False], [False, True]]
    # negative evidence is clipped; an all-zero or all-negative map occludes nothing
    assert not threshold_mask(normalise_maps(-torch.rand(1, 3, 3)), 0.1).any()
    assert not threshold_mask(normalise_maps(torch.zeros(1, 3, 3)), 0.1).any()


def test_fill_values():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 16, 16)
    assert torch.equal(fill_values(x, "mean"), torch.zeros_like(x))
    white = fill_values(x, "white")
    assert torch.equal(white[:, :, 0, 0], x.amax(dim=(0, 2, 3)).expand(3, 4))
    assert torch.equal(fill_values(x, "max"), white)
    zv = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    assert torch.equal(fill_values(x, "zero", zero_value=zv)[1, :, 5, 5], zv)
    noise = fill_values(torch.zeros(8, 3, 64, 64), "noise", generator=torch.Generator().manual_seed(1))
    assert abs(float(noise.mean())) < 0.02 and abs(float(noise.std()) - 1) < 0.02
    blur = fill_values(x, "blur")
    assert blur.shape == x.shape and blur.std() < x.std()
    mixed = fill_values(x, "mixed")
    for i in range(3):
        candidates = [fill_values(x, k)[i] for k in MIXED_FILLS if k != "noise"]
        is_known = any(torch.equal(mixed[i], c) for c in candidates)
        looks_noise = abs(float(mixed[i].std()) - 1) < 0.1 and not is_known
        assert is_known or looks_noise
    with pytest.raises(ValueError):
        fill_values(x, "purple")
    assert set(MIXED_FILLS) <= set(FILLS)


def test_blur_fill_is_the_box_mean():
    import torch.nn.functional as F

    x = torch.randn(2, 3, 100, 120)
    k = max(3, (100 // 8) | 1)
    want = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
    assert torch.allclose(fill_values(x, "blur"), want, atol=1e-5)


def test_texture_fill_is_the_image_from_elsewhere():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 32, 40, generator=g)
    tex = fill_values(x, "texture", generator=g)
    assert tex.shape == x.shape
    for i in range(3):
        # a shifted copy of the same image: the same values, not in the same places
        assert torch.equal(tex[i].flatten().sort().values, x[i].flatten().sort().values)
        assert not torch.equal(tex[i], x[i])
        assert not torch.equal(tex[i], fill_values(x, "mean")[i])
        assert not torch.allclose(tex[i], fill_values(x, "noise", generator=g)[i])
        # offset of 1/4..3/4 of the size: no pixel keeps its own value
        assert float((tex[i] == x[i]).float().mean()) < 0.01
    mixed = fill_values(x, "mixed", generator=g, mix=["texture"])
    assert torch.equal(mixed.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
    with pytest.raises(ValueError):
        fill_values(x, "mixed", mix=["mean", "mixed"])


def test_apply_mask_blocks_gradient():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, 2:5, 1:6] = True
    fill = fill_values(x, "white")
    out = apply_mask(x, mask, fill)
    out.sum().backward()
    grad = x.grad
    assert torch.equal(grad[mask.expand_as(grad)], torch.zeros(2 * 3 * 15))
    assert torch.equal(grad[~mask.expand_as(grad)], torch.ones(2 * 3 * 49))


def test_mixed_fill_gives_each_sample_its_drawn_fill_with_the_batch_statistics():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 3, 16, 16, generator=g)
    mixed = fill_values(x, "mixed", generator=torch.Generator().manual_seed(0),
                        mix=["mean", "mean", "mean", "white", "blur"])
    white, blur = fill_values(x, "white"), fill_values(x, "blur")
    kinds = []
    for i in range(len(x)):
        if torch.equal(mixed[i], torch.zeros_like(x[i])):
            kinds.append("mean")
        elif torch.equal(mixed[i], white[i]):  # the whole batch's band maximum, not this sample's
            kinds.append("white")
        else:
            assert torch.allclose(mixed[i], blur[i], atol=1e-6)
            kinds.append("blur")
    assert 0.4 < kinds.count("mean") / len(kinds) < 0.8  # a fill named three times of five is drawn ~60%
    assert kinds.count("white") > 0 and kinds.count("blur") > 0
