"""Is the label raster registered to the imagery? A per-pixel check on the training tiles.

A per-pixel classifier (a small MLP of the bands: it sees no neighbours, so it cannot learn an offset) is
fitted on the training tiles' (pixel, label) pairs; its predictions are then compared with the labels at
every offset up to ``max_shift`` pixels. If the labels were drawn on a grid moved against the imagery,
the predictions agree best at that offset. Only training tiles are used: the validation blocks play no
part in the estimate. Fitting and scoring on the same pixels biases the result toward (0, 0), so an
offset it reports is conservative.

Offsets follow one convention everywhere: ``(dy, dx)`` means that the label at pixel (i, j) describes the
image at (i + dy, j + dx); a map is read in the labels' frame as ``map[i + dy, j + dx]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Registration:
    """Result of :func:`estimate_label_offset`.

    Attributes:
        offset: (dy, dx) of the best agreement.
        accuracy: per-pixel agreement at each tested offset, keyed ``"dy,dx"``.
        gain: agreement at ``offset`` minus agreement at (0, 0).
        pixels: labelled pixels compared (per offset).
    """

    offset: tuple[int, int]
    accuracy: dict[str, float]
    gain: float
    pixels: int

    def summary(self) -> dict:
        return {"offset_px": list(self.offset), "gain": round(self.gain, 4), "pixels": self.pixels,
                "per_pixel_accuracy": {k: round(v, 4) for k, v in self.accuracy.items()}}


def estimate_label_offset(images: Tensor, masks: Tensor, num_classes: int, *, max_shift: int = 2,
                          max_pixels: int = 20000, steps: int = 200, seed: int = 0) -> Registration:
    """Estimate the offset between per-pixel labels and imagery from labelled tiles.

    Args:
        images: (N, C, T, T) normalised tiles (invalid pixels 0).
        masks: (N, T, T) class indices, -1 where unlabelled.
        num_classes: number of classes.
        max_shift: largest offset tested, pixels, in each direction.
        max_pixels: labelled pixels used to fit the per-pixel classifier (a random subset).
        steps: full-batch Adam steps.
        seed: random seed.
    """
    generator = torch.Generator().manual_seed(seed)
    c = images.shape[1]
    labelled = torch.nonzero(masks >= 0)  # (n, tile, row, col) of every labelled pixel
    if len(labelled) == 0:
        return Registration((0, 0), {"0,0": float("nan")}, 0.0, 0)
    n, i, j = labelled[torch.randperm(len(labelled), generator=generator)[:max_pixels]].unbind(dim=1)
    fit_x, fit_y = images[n, :, i, j].float(), masks[n, i, j].long()
    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream (e.g. training) untouched
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(c, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                                  torch.nn.ReLU(), torch.nn.Linear(32, num_classes))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(fit_x), fit_y).backward()
            opt.step()
    with torch.no_grad():  # per pixel, a chunk of tiles at a time (channels last: a view, no copy)
        pred = torch.cat([net(images[a:a + 1024].permute(0, 2, 3, 1).float()).argmax(dim=-1)
                          for a in range(0, len(images), 1024)])
    m, t = max_shift, masks.shape[-1]
    if t <= 2 * m:
        return Registration((0, 0), {"0,0": float("nan")}, 0.0, 0)
    labels = masks[:, m:t - m, m:t - m]
    known = labels >= 0
    accuracy = {}
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            moved = pred[:, m + dy:t - m + dy, m + dx:t - m + dx]  # prediction at (i + dy, j + dx)
            accuracy[f"{dy},{dx}"] = float((moved[known] == labels[known]).float().mean())
    best = max(accuracy, key=lambda k: (accuracy[k], -abs(int(k.split(",")[0])) - abs(int(k.split(",")[1]))))
    dy, dx = (int(v) for v in best.split(","))
    return Registration((dy, dx), accuracy, accuracy[best] - accuracy["0,0"], int(known.sum()))


def in_label_frame(array: np.ndarray, offset: tuple[int, int], fill) -> np.ndarray:
    """A map read in the labels' frame: ``out[..., i, j] = array[..., i + dy, j + dx]`` (``fill`` where outside)."""
    dy, dx = offset
    h, w = array.shape[-2:]
    out = np.full_like(array, fill)
    out[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)] = array[..., max(dy, 0):h + min(dy, 0),
                                                                                max(dx, 0):w + min(dx, 0)]
    return out
