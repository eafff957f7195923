import pytest
import torch

from geocamat.camat.masks import normalise_maps
from geocamat.camat.saliency import class_activation_maps, grad_cam, grad_cam_pp, saliency_maps, upsample_maps
from geocamat.models.camnet import CamNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = CamNet(3, 5, 32, arch="camnet-s")
    m.eval()
    return m


def test_cam_equals_gradcam_up_to_scale(net):
    x = torch.randn(4, 3, 32, 32)
    t = torch.tensor([0, 1, 2, 4])
    with torch.no_grad():
        f = net.forward_features(x)
    cam = class_activation_maps(f, net.head.weight, t)
    gc = grad_cam(f, net.head, t)
    h, w = f.shape[-2:]
    assert cam.shape == (4, h, w) == gc.shape
    assert torch.allclose(gc * h * w, cam, atol=1e-4, rtol=1e-4)
    assert torch.allclose(normalise_maps(gc), normalise_maps(cam), atol=1e-5)


def test_gradcampp_closed_form_for_linear_head(net):
    x = torch.randn(3, 3, 32, 32)
    t = torch.tensor([1, 3, 0])
    with torch.no_grad():
        f = net.forward_features(x)
    got = grad_cam_pp(f, net.head, t)
    # linear head after GAP: the gradient is w / (h w) at every cell; the weights follow in closed form
    h, w = f.shape[-2:]
    g = net.head.weight[t].detach() / (h * w)  # (N, C)
    total = f.sum(dim=(2, 3))
    alpha = g**2 / (2 * g**2 + total * g**3 + 1e-7)
    weights = alpha * g.clamp_min(0) * h * w  # sum over the h*w equal cells
    expected = torch.einsum("nc,nchw->nhw", weights, f)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_no_parameter_grad_and_no_graph(net):
    x = torch.randn(2, 3, 32, 32)
    f = net.forward_features(x)  # with a graph, as in a training forward
    for method in ("cam", "gradcam", "gradcampp"):
        m = saliency_maps(f, net.head, torch.tensor([0, 1]), method)
        assert not m.requires_grad
    assert all(p.grad is None for p in net.parameters())


def test_unknown_method_and_upsample(net):
    with pytest.raises(ValueError):
        saliency_maps(torch.rand(1, 256, 4, 4), net.head, torch.tensor([0]), "lime")
    up = upsample_maps(torch.rand(2, 4, 4), (16, 12))
    assert up.shape == (2, 16, 12)


def test_a_new_saliency_method_plugs_in_by_name():
    """A saliency method added without touching CAMAT, the CLI or the engine: occlusion follows its maps."""
    from geocamat.camat import CAMAT
    from geocamat.camat.config import SALIENCY, register_saliency
    from tests.conftest import CLASSIC_CAMAT

    def left_half(features, head, targets):  # salient: the left half of every feature map
        maps = torch.zeros(features.shape[0], *features.shape[-2:])
        maps[..., : features.shape[-1] // 2] = 1.0
        return maps

    class Flat(torch.nn.Module):
        head = torch.nn.Linear(2, 2)

        def forward_features(self, x):
            return x[:, :2]

    register_saliency("left-half", left_half)
    try:
        x = torch.ones(3, 2, 8, 8)
        camat = CAMAT(**{**CLASSIC_CAMAT, "saliency": "left-half", "p": 1.0, "warmup": 0.0})
        out = camat(x, torch.zeros(3, dtype=torch.long), model=Flat())
        assert (out[..., :4] == 0).all() and (out[..., 4:] == 1).all()
    finally:
        SALIENCY.pop("left-half")
