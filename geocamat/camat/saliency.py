"""Class activation maps for a batch.

A model usable by CAMAT exposes ``forward_features(x) -> (N, C, h, w)`` and a linear ``head`` applied
after global average pooling (see :class:`geocamat.models.camnet.CamNet`). CAM needs a linear head;
Grad-CAM and Grad-CAM++ only need the head to be differentiable (they backpropagate through the head, not the backbone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def class_activation_maps(features: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """CAM (Zhou et al. 2016) of the target class of each sample.

    Args:
        features: (N, C, h, w) last feature map.
        weight: (K, C) weights of the linear head that follows global average pooling.
        targets: (N,) class index per sample.

    Returns:
        (N, h, w) maps: sum over channels of ``weight[target, c] * features[c]``.
    """
    w = weight[targets].to(features.dtype)  # (N, C)
    return torch.einsum("nc,nchw->nhw", w, features)


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize (N, h, w) maps to ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1).float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def _head_gradients(features: Tensor, head: nn.Module, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient of each sample's target logit with respect to its (detached) feature map.

    The features are detached and re-entered as a leaf, and :func:`torch.autograd.grad` is used, so no
    ``.grad`` of the model's parameters is touched and no graph of the training forward is extended.

    Returns:
        (features as float32 (N, C, h, w), gradients (N, C, h, w) float32).
    """
    with torch.enable_grad():
        leaf = features.detach().float().requires_grad_(True)
        with torch.autocast(device_type=leaf.device.type, enabled=False):
            logits = head(leaf.mean(dim=(2, 3)))
        score = logits.gather(1, targets.view(-1, 1)).sum()
        (grads,) = torch.autograd.grad(score, leaf)
    return leaf.detach(), grads


def grad_cam(features: Tensor, head: nn.Module, targets: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017) through the head: channel weights are the mean gradients.

    For a GAP + linear head this equals the CAM divided by ``h * w`` (the negative part is clipped
    later by :func:`geocamat.camat.masks.normalise_maps`); it also works for a non-linear head.

    Args:
        features: (N, C, h, w) last feature map (detached or not; no gradient flows back).
        head: module mapping pooled features (N, C) to logits (N, K).
        targets: (N,) class index per sample.

    Returns:
        (N, h, w) maps (before ReLU).
    """
    feats, grads = _head_gradients(features, head, targets)
    weights = grads.mean(dim=(2, 3))
    return torch.einsum("nc,nchw->nhw", weights, feats)


def grad_cam_pp(features: Tensor, head: nn.Module, targets: Tensor, eps: float = 1e-7) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), with the usual exponential-score closed form.

    Args:
        features: (N, C, h, w) last feature map.
        head: module mapping pooled features (N, C) to logits (N, K).
        targets: (N,) class index per sample.
        eps: guard against division by zero.

    Returns:
        (N, h, w) maps.
    """
    feats, grads = _head_gradients(features, head, targets)
    g2, g3 = grads.pow(2), grads.pow(3)
    total = feats.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + total * g3 + eps)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * grads.clamp_min(0)).sum(dim=(2, 3))
    return torch.einsum("nc,nchw->nhw", weights, feats)


def cam_maps(features: Tensor, head: nn.Module, targets: Tensor) -> Tensor:
    """CAM from a feature map and a linear head (after global average pooling), without gradients."""
    with torch.no_grad():
        return class_activation_maps(features.detach().float(), head.weight.float(), targets)


def saliency_maps(features: Tensor, head: nn.Module, targets: Tensor, method: str = "cam") -> Tensor:
    """Low-resolution saliency maps of the target classes from a feature map.

    Args:
        features: (N, C, h, w) last feature map.
        head: the model's head; for ``cam`` it must be an :class:`torch.nn.Linear` (after GAP).
        targets: (N,) class index per sample.
        method: a name in :data:`geocamat.camat.config.SALIENCY` (see
            :func:`geocamat.camat.config.register_saliency`).

    Returns:
        (N, h, w) float32 maps (not normalised; see :func:`geocamat.camat.masks.normalise_maps`).
    """
    from geocamat.camat.config import saliency_method

    return saliency_method(method)(features, head, targets).float()
