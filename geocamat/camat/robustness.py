"""Test-time occlusions and CAM-quality scores for evaluating a trained classifier.

Conditions (names used as keys in :func:`robustness_report`):

- ``clean``: no occlusion.
- ``random10`` / ``random25`` / ``random40``: one random square covering 10/25/40% of the image, band-mean
  fill (0 after normalisation).
- ``topcam10`` / ``topcam25``: the 10/25% of pixels with the highest CAM of the class the model predicts on
  the clean image, band-mean fill (the model's own evidence removed).
- ``cloud30``: a smooth random cloud mask covering 30% of the image, filled with the per-band maximum
  ("white").
- ``random25_noise`` / ``topcam25_noise`` / ``cloud30_noise``: the same masks filled with Gaussian noise of
  the band statistics; ``topcam25_blur``: filled with a strong blur. Fills a model was not trained with.

CAM quality (Petsiuk et al. 2018, RISE): ``deletion_auc`` (probability of the predicted class as the most
salient pixels are progressively replaced by the band mean; lower is better) and ``insertion_auc`` (pixels
inserted in saliency order into a blurred image; higher is better).

All random draws come from a generator seeded per condition, so two models see the same occlusions when
they are evaluated on the same data in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geocamat.camat.fills import fill_values
from geocamat.camat.masks import normalise_maps, top_area_mask
from geocamat.camat.saliency import saliency_maps, upsample_maps

# name: (mask kind, fraction, fill)
CONDITIONS: dict[str, tuple[str, float, str]] = {
    "clean": ("none", 0.0, "mean"),
    "random10": ("random", 0.10, "mean"),
    "random25": ("random", 0.25, "mean"),
    "random40": ("random", 0.40, "mean"),
    "topcam10": ("topcam", 0.10, "mean"),
    "topcam25": ("topcam", 0.25, "mean"),
    "cloud30": ("cloud", 0.30, "white"),
    "random25_noise": ("random", 0.25, "noise"),
    "topcam25_noise": ("topcam", 0.25, "noise"),
    "topcam25_blur": ("topcam", 0.25, "blur"),
    "cloud30_noise": ("cloud", 0.30, "noise"),
}


def random_square_mask(n: int, h: int, w: int, fraction: float, *, squares: int = 1,
                       generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """Random squares at random positions, each covering ``fraction / squares`` of the image.

    Args:
        n, h, w: batch size and image size.
        fraction: total fraction of the image covered (exact for one square, up to rounding; several
            squares may overlap).
        squares: number of squares per image.
        generator: CPU random generator.
        device: device of the returned mask.

    Returns:
        (N, 1, H, W) boolean mask.
    """
    side = max(1, round(math.sqrt(fraction / squares * h * w)))
    sh, sw = min(side, h), min(side, w)
    mask = torch.zeros(n, 1, h, w, dtype=torch.bool)
    tops = torch.randint(0, h - sh + 1, (n, squares), generator=generator)
    lefts = torch.randint(0, w - sw + 1, (n, squares), generator=generator)
    for i in range(n):
        for j in range(squares):
            t, l_ = int(tops[i, j]), int(lefts[i, j])
            mask[i, 0, t:t + sh, l_:l_ + sw] = True
    return mask.to(device)


def cloud_mask(n: int, h: int, w: int, cover: float = 0.3, *, scale: int = 4, octaves: int = 3,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """Smooth random cloud masks: fractal value noise thresholded so ``cover`` of each image is cloud.

    Args:
        n, h, w: batch size and image size.
        cover: fraction of pixels under cloud (exact up to ties).
        scale: number of noise cells across the image at the coarsest octave.
        octaves: number of noise octaves (each doubles the frequency, halves the amplitude).
        generator: CPU random generator.
        device: device of the returned mask.

    Returns:
        (N, 1, H, W) boolean mask.
    """
    field = torch.zeros(n, 1, h, w)
    for o in range(octaves):
        cells = scale * 2 ** o
        noise = torch.rand(n, 1, cells + 1, cells + 1, generator=generator)
        field += F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=True) / 2 ** o
    return top_area_mask(field[:, 0], cover).to(device)


def _split(batch) -> tuple[Tensor, Tensor]:
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    return batch[0], batch[1]


def _batches(data, batch_size: int) -> Iterable[tuple[Tensor, Tensor]]:
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], Tensor):
        images, labels = data
        for i in range(0, images.shape[0], batch_size):
            yield images[i:i + batch_size], labels[i:i + batch_size]
    else:
        for batch in data:
            yield _split(batch)


def _has_cam(model: nn.Module) -> bool:
    return hasattr(model, "forward_features") and isinstance(getattr(model, "head", None), nn.Linear)


def predicted_cams(model: nn.Module, images: Tensor, saliency: str = "cam") -> tuple[Tensor, Tensor]:
    """Logits and normalised saliency maps (N, H, W) of the predicted class, at the image size."""
    with torch.no_grad():
        features = model.forward_features(images)
        logits = model.head(features.mean(dim=(2, 3)))
    pred = logits.argmax(dim=1)
    low = saliency_maps(features, model.head, pred, saliency)
    return logits.float(), normalise_maps(upsample_maps(low.float(), tuple(images.shape[-2:])))


def deletion_insertion(model: nn.Module, images: Tensor, maps: Tensor, classes: Tensor,
                       steps: int = 8) -> tuple[Tensor, Tensor]:
    """Per-sample deletion and insertion AUC of saliency maps.

    Args:
        model: classifier returning logits.
        images: (N, C, H, W) normalised images.
        maps: (N, H, W) saliency maps (higher = more important).
        classes: (N,) class whose probability is tracked.
        steps: number of equal steps from 0 to 100% of the pixels.

    Returns:
        (deletion AUC (N,), insertion AUC (N,)), trapezoidal over the fraction removed/inserted.
    """
    n, _, h, w = images.shape
    order = maps.flatten(1).argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=images.device).expand(n, -1))
    rank = rank.view(n, 1, h, w)
    blurred = fill_values(images, "blur")
    dele, ins = [], []
    with torch.no_grad():
        for s in range(steps + 1):
            k = round(s / steps * h * w)
            gone = rank < k
            x_del = torch.where(gone, torch.zeros_like(images), images)
            x_ins = torch.where(gone, images, blurred)
            probs = model(torch.cat([x_del, x_ins])).float().softmax(dim=1)
            p = probs.gather(1, classes.repeat(2).view(-1, 1))[:, 0]
            dele.append(p[:n])
            ins.append(p[n:])
    dele_t, ins_t = torch.stack(dele, 1), torch.stack(ins, 1)

    def auc(y: Tensor) -> Tensor:
        return ((y[:, 1:] + y[:, :-1]) / 2).mean(dim=1)

    return auc(dele_t), auc(ins_t)


def occlude(images: Tensor, condition: str, *, model: nn.Module | None = None, cams: Tensor | None = None,
            generator: torch.Generator | None = None, band_max: Tensor | None = None) -> Tensor:
    """Apply one test-time condition of :data:`CONDITIONS` to a batch.

    Args:
        images: (N, C, H, W) normalised images.
        condition: a key of :data:`CONDITIONS`.
        model: needed for ``topcam*`` when ``cams`` is not given.
        cams: (N, H, W) saliency maps of the predicted class (for ``topcam*``).
        generator: CPU generator for the random masks and noise.
        band_max: (C,) per-band maximum for the white fill (default: the batch's maximum).

    Returns:
        The occluded images.
    """
    kind, frac, fill = CONDITIONS[condition]
    n, c, h, w = images.shape
    if kind == "none":
        return images
    if kind == "random":
        mask = random_square_mask(n, h, w, frac, generator=generator, device=images.device)
    elif kind == "cloud":
        mask = cloud_mask(n, h, w, frac, generator=generator, device=images.device)
    elif kind == "topcam":
        if cams is None:
            if model is None:
                raise ValueError("top-CAM occlusion needs the model or the maps")
            _, cams = predicted_cams(model, images)
        mask = top_area_mask(cams, frac)
    else:  # pragma: no cover - CONDITIONS is fixed
        raise ValueError(kind)
    if fill == "white" and band_max is not None:
        values = band_max.to(images).view(1, c, 1, 1).expand_as(images)
    elif fill == "noise":
        values = torch.randn(images.shape, generator=generator).to(images)
    else:
        values = fill_values(images, fill)
    return torch.where(mask, values, images)


def robustness_report(
    model: nn.Module,
    data,
    *,
    conditions: Iterable[str] | None = None,
    device: torch.device | str | None = None,
    batch_size: int = 64,
    seed: int = 0,
    auc_samples: int = 128,
    auc_steps: int = 8,
    band_max: Tensor | None = None,
    autocast: bool = False,
) -> dict:
    """Overall accuracy of a classifier under each test-time occlusion, plus CAM deletion/insertion AUC.

    Args:
        model: classifier (N, C, H, W) -> logits; ``topcam*`` conditions and the AUCs also need
            ``forward_features`` and a linear ``head`` (they are skipped otherwise).
        data: an iterable of batches (dicts with ``image`` and ``label``, or ``(images, labels)`` pairs),
            e.g. a DataLoader, or a pair of tensors ``(images (N, C, H, W), labels (N,))``. Images must be
            normalised as in training.
        conditions: subset of :data:`CONDITIONS` (default: all).
        device: where to run (default: the model's device).
        batch_size: batch size when ``data`` is a pair of tensors.
        seed: seed of the random occlusions.
        auc_samples: number of images (the first ones) used for the deletion/insertion AUC; 0 to skip.
        auc_steps: steps of the deletion/insertion curves.
        band_max: (C,) per-band maximum for the white (cloud) fill; default: each batch's maximum.
        autocast: run the model under bf16 autocast (GPU).

    Returns:
        ``{"n": images, "accuracy": {condition: OA}, "deletion_auc": float, "insertion_auc": float}``
        (the AUC keys are absent when skipped).
    """
    names = list(CONDITIONS) if conditions is None else list(conditions)
    unknown = [c for c in names if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown condition {unknown[0]!r}: choose from {', '.join(CONDITIONS)}")
    cam_ok = _has_cam(model)
    if not cam_ok:
        names = [c for c in names if CONDITIONS[c][0] != "topcam"]
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    was_training = model.training
    model.eval()
    ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if autocast else nullcontext()
    gens = {c: torch.Generator().manual_seed(seed * 1000 + i) for i, c in enumerate(names)}
    correct = dict.fromkeys(names, 0)
    total = 0
    dels, inss = [], []
    auc_left = auc_samples if cam_ok else 0
    try:
        with torch.no_grad(), ctx:
            for images, labels in _batches(data, batch_size):
                images = images.to(device, non_blocking=True).float()
                labels = labels.to(device, non_blocking=True).long()
                cams = None
                if cam_ok:
                    logits, cams = predicted_cams(model, images)
                else:
                    logits = model(images).float()
                for c in names:
                    if c == "clean":
                        out = logits
                    else:
                        x = occlude(images, c, cams=cams, generator=gens[c], band_max=band_max)
                        out = model(x).float()
                    correct[c] += int((out.argmax(dim=1) == labels).sum())
                total += labels.shape[0]
                if auc_left > 0:
                    k = min(auc_left, images.shape[0])
                    d, i_ = deletion_insertion(model, images[:k], cams[:k], logits[:k].argmax(dim=1), auc_steps)
                    dels.append(d.float().cpu())
                    inss.append(i_.float().cpu())
                    auc_left -= k
    finally:
        model.train(was_training)
    report: dict = {"n": total, "accuracy": {c: correct[c] / max(total, 1) for c in names}}
    if dels:
        report["deletion_auc"] = float(torch.cat(dels).mean())
        report["insertion_auc"] = float(torch.cat(inss).mean())
    return report
