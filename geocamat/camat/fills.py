"""Fill values for occluded pixels.

Images reaching :mod:`geocamat.camat` are normalised per band (zero mean, unit variance), so the band
mean is 0. Every fill returns a tensor shaped like the images; the caller mixes it in with a mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from geocamat.camat.config import FILLS, MIXED_FILLS


def fill_values(
    images: Tensor,
    kind: str,
    *,
    zero_value: Tensor | None = None,
    generator: torch.Generator | None = None,
    mix: tuple[str, ...] | list[str] | None = None,
) -> Tensor:
    """Build the fill for a batch of normalised images.

    Args:
        images: (N, C, H, W) normalised images.
        kind: one of ``mean`` (band mean, 0), ``zero`` (the normalised value of a raw 0, given by
            ``zero_value``), ``white``/``max`` (per-band maximum of the
            batch), ``noise`` (standard normal, i.e. noise with the band statistics), ``blur`` (a strong
            box blur of the image itself), ``texture`` (the image itself shifted by a random offset of a
            quarter to three quarters of its size: a patch of the same scene from elsewhere),
            ``mixed`` (per sample, one of ``mix`` at random).
        zero_value: (C,) normalised value of a raw zero per band, for ``kind="zero"``.
        generator: random generator for ``noise``, ``texture`` and ``mixed`` (on the CPU or the images' device).
        mix: the fills ``mixed`` draws from (default :data:`MIXED_FILLS`).

    Returns:
        (N, C, H, W) fill tensor, detached from the graph.
    """
    images = images.detach()
    if kind == "mean":
        return torch.zeros_like(images)
    if kind == "zero":
        if zero_value is None:
            raise ValueError("fill zero needs zero_value, the normalised value of a raw 0 per band "
                             "(-mean / std); the regulariser gets it from the training data")
        return zero_value.to(images).view(1, -1, 1, 1).expand_as(images).clone()
    if kind in ("white", "max"):
        band_max = images.amax(dim=(0, 2, 3), keepdim=True)
        return band_max.expand_as(images).clone()
    if kind == "noise":
        return torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    if kind == "blur":
        k = max(3, (min(images.shape[-2:]) // 8) | 1)
        # the k x k box mean, computed as a column mean then a row mean (same values, 2k instead of k^2 adds)
        cols = F.avg_pool2d(images, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
        return F.avg_pool2d(cols, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)
    if kind == "texture":
        return texture_fill(images, generator=generator)
    if kind == "mixed":
        names = tuple(mix) if mix else MIXED_FILLS
        if "mixed" in names:
            raise ValueError("the fills of mixed cannot include mixed")
        choice = torch.randint(0, len(names), (images.shape[0],), generator=generator, device=images.device)
        out = torch.zeros_like(images)  # the mean fill
        for name in dict.fromkeys(names):  # each fill once, for every sample that drew it
            if name == "mean":
                continue
            drew = torch.zeros_like(choice, dtype=torch.bool)
            for i in (i for i, other in enumerate(names) if other == name):
                drew |= choice == i
            if images.is_cuda:  # every fill for the whole batch, kept where drawn: no host sync
                out = torch.where(drew.view(-1, 1, 1, 1),
                                  fill_values(images, name, zero_value=zero_value, generator=generator), out)
                continue
            idx = drew.nonzero().flatten()  # on the CPU, only the samples that drew it (cheaper)
            if len(idx) == 0:
                continue
            if name in ("white", "max"):  # the band maximum of the whole batch, as for the plain fill
                out[idx] = images.amax(dim=(0, 2, 3), keepdim=True).expand(len(idx), -1, *images.shape[-2:])
            else:
                out[idx] = fill_values(images[idx], name, zero_value=zero_value, generator=generator)
        return out
    raise ValueError(f"unknown fill {kind!r}: choose one of {', '.join(FILLS)}")


def texture_fill(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each image shifted (cyclically) by its own random offset of 1/4 to 3/4 of its height and width.

    Pasted through a mask, it fills the occluded pixels with real texture of the same scene from elsewhere:
    no constant value and no statistic of the fill says "occluded".

    Args:
        images: (N, C, H, W).
        generator: random generator of the offsets (CPU).

    Returns:
        (N, C, H, W) shifted copies.
    """
    n, _, h, w = images.shape
    r = torch.rand(n, 2, generator=generator, device=images.device if generator is None else generator.device)
    dy = (h // 4 + (r[:, 0] * max(1, h // 2)).long()).tolist()
    dx = (w // 4 + (r[:, 1] * max(1, w // 2)).long()).tolist()
    return torch.stack([torch.roll(images[i], (dy[i], dx[i]), dims=(-2, -1)) for i in range(n)])


def apply_mask(images: Tensor, mask: Tensor, fill: Tensor) -> Tensor:
    """Replace the pixels where ``mask`` is true by ``fill``.

    Args:
        images: (N, C, H, W).
        mask: (N, 1, H, W) boolean, true where the image is occluded.
        fill: (N, C, H, W) fill values.

    Returns:
        The occluded images. No gradient flows into ``fill`` or through the mask.
    """
    return torch.where(mask, fill.to(images.dtype), images)
