"""Clean + occluded pairs in one batch, and the consistency term between their predictions. Pure torch.

With ``camat.consistency > 0`` an occluded sample does not replace its clean copy: both are trained, and a KL
term pulls the prediction on the occluded copy towards the (detached) prediction on the clean one, so the
model keeps its clean accuracy while it learns to do without the most discriminative region.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def paired_batch(clean: Tensor, occluded: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:
    """The clean batch followed by the occluded copies of the chosen samples.

    Returns:
        (N + K, C, H, W) images and the (K,) indices of the chosen samples (row N + i copies sample ``index[i]``).
    """
    index = chosen.nonzero().squeeze(1)
    return torch.cat([clean, occluded[index]]), index


def consistency_loss(logits: Tensor, n_clean: int, index: Tensor) -> Tensor:
    """KL(p_clean || p_occluded), averaged over the pairs; the clean predictions are the (detached) target."""
    if index.numel() == 0:
        return logits.sum() * 0.0
    target = F.softmax(logits[index].detach().float(), dim=1)
    return F.kl_div(F.log_softmax(logits[n_clean:].float(), dim=1), target, reduction="batchmean")
