"""Exponential moving average of a model's weights, bias-corrected so the initial weights fade out."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, decay: float, norm: float) -> float:
    """One step of ``average = sum_i d^(n-i) w_i / sum_i d^(n-i)`` over the steps so far.

    Floating-point weights and buffers are averaged; integer buffers (e.g. BatchNorm's step count) are copied.

    Args:
        average: the averaged copy of ``model``, updated in place.
        model: the model being trained.
        decay: the decay ``d`` per step.
        norm: the running normaliser ``sum_i d^(n-i)`` before this step (0 at the start).

    Returns:
        The normaliser after this step (keep it for the next call; checkpoints should save it).
    """
    norm = float(decay) * norm + 1.0
    a = 1.0 / norm
    for e, w in zip(average.state_dict().values(), model.state_dict().values(), strict=True):
        if e.dtype.is_floating_point:
            e.lerp_(w.to(e.dtype), a)
        else:
            e.copy_(w)
    return norm
