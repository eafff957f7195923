"""Per-class logit offsets chosen on training pixels, so that classes the labels hold are not left off the map.

A land-use model trained on imbalanced labels predicts its rare classes too rarely: on the NC sample
agriculture (15 of 4,479 training tiles) and sediment (5) were never mapped. A per-class offset added
to the logits moves the decision boundaries without retraining; the offsets are fitted on a bounded sample of
*training* pixels (the validation blocks that score the map are never looked at) by coordinate ascent on
macro-F1, and folded into the classifier's bias, so every consumer of the model (maps, tiles, CAMs) sees them.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: candidate offsets tried for each class at every round (logit units)
OFFSET_STEPS = torch.linspace(-2.0, 2.0, 17)
#: rounds of coordinate ascent over the classes
ROUNDS = 3
#: pixels used for the fit at most (a random subset beyond)
MAX_PIXELS = 1_000_000


def macro_f1(pred: Tensor, target: Tensor, num_classes: int) -> float:
    """Macro-F1 of predicted vs labelled class indices, as the map's scores define it
    (:func:`geocamat.metrics.classification.macro_f1`)."""
    from geocamat.metrics.classification import macro_f1 as from_confusion

    k = num_classes
    return from_confusion(torch.bincount(target * k + pred, minlength=k * k).view(k, k).numpy())


def fit_class_offsets(logits: Tensor, target: Tensor, *, max_oa_loss: float = 0.01,
                      generator: torch.Generator | None = None) -> tuple[Tensor, dict]:
    """Per-class logit offsets that raise macro-F1 on labelled pixels, losing at most ``max_oa_loss`` accuracy.

    Args:
        logits: (P, K) per-pixel logits.
        target: (P,) class indices.
        max_oa_loss: the largest drop of overall accuracy (share of pixels) an offset may cost.
        generator: random generator for the subset when there are more than :data:`MAX_PIXELS` pixels.

    Returns:
        (offsets (K,), a summary: macro-F1 and OA before and after, pixels used).
    """
    if len(target) > MAX_PIXELS:
        keep = torch.randperm(len(target), generator=generator)[:MAX_PIXELS]
        logits, target = logits[keep], target[keep]
    logits, target = logits.float(), target.long()
    k = logits.shape[1]
    offsets = torch.zeros(k)

    def score(off: Tensor) -> tuple[float, float]:
        pred = (logits + off).argmax(dim=1)
        return macro_f1(pred, target, k), float((pred == target).float().mean())

    f1_0, oa_0 = score(offsets)
    best_f1 = f1_0
    for _ in range(ROUNDS):
        changed = False
        for c in range(k):
            for step in OFFSET_STEPS.tolist():
                trial = offsets.clone()
                trial[c] = step
                f1, oa = score(trial)
                if f1 > best_f1 + 1e-4 and oa >= oa_0 - max_oa_loss:
                    offsets, best_f1, changed = trial, f1, True
        if not changed:
            break
    f1_1, oa_1 = score(offsets)
    summary = {"pixels": len(target), "macro_f1_before": round(f1_0, 4), "macro_f1_after": round(f1_1, 4),
               "accuracy_before": round(oa_0, 4), "accuracy_after": round(oa_1, 4),
               "offsets": [round(float(v), 3) for v in offsets]}
    return offsets, summary


@torch.no_grad()
def pixel_logits(model, images: Tensor, masks: Tensor, batch: int = 512) -> tuple[Tensor, Tensor]:
    """The model's per-pixel logits on labelled pixels of tiles (dense models: upsampled CAM logits; window
    models: the tile's logits at every pixel of it).

    Args:
        model: a :class:`geocamat.models.camnet.CamNet` (eval mode is set here).
        images: (N, C, T, T) normalised tiles.
        masks: (N, T, T) per-pixel class indices, -1 where unlabelled.

    Returns:
        (logits (P, K), classes (P,)) of the labelled pixels.
    """
    import torch.nn.functional as F

    model.eval()
    out_logits, out_target = [], []
    for i in range(0, len(images), batch):
        x, m = images[i:i + batch], masks[i:i + batch]
        dense, tile = model.dense_logits(x)
        if getattr(model, "output", "dense") == "dense":
            per_pixel = F.interpolate(dense.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
        else:
            per_pixel = tile.float()[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        labelled = m >= 0
        out_logits.append(per_pixel.permute(0, 2, 3, 1)[labelled])
        out_target.append(m[labelled])
    return torch.cat(out_logits), torch.cat(out_target).long()


def fold_offsets(model, offsets: Tensor) -> None:
    """Add per-class offsets to the classifier's bias (CamNet ``head``): logits of tiles and of pixels move alike."""
    with torch.no_grad():
        model.head.bias.add_(offsets.to(model.head.bias))


#: the calibration sample kept through training at most (MB of normalised tiles)
SAMPLE_MB = 64


def keep_sample(images: Tensor | None, masks: Tensor | None, seed: int = 0) -> tuple[Tensor, Tensor] | None:
    """A random part of the statistics sample (at most :data:`SAMPLE_MB`) kept for the calibration, or None
    when the sample has no per-pixel labels."""
    if images is None or masks is None or not bool((masks >= 0).any()):
        return None
    per_tile = images[0].numel() * 4
    cap = max(1, int(SAMPLE_MB * 1e6 // per_tile))
    if len(images) > cap:
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:cap]
        images, masks = images[keep], masks[keep]
    return images.clone(), masks.clone()


def calibrate(model, sample: tuple[Tensor, Tensor], class_names: list[str], *, max_oa_loss: float = 0.01,
              log=print) -> dict:
    """Fit per-class offsets on the training sample and fold them into ``model``'s classifier bias.

    Returns:
        The summary recorded in the bundle (offsets per class name, macro-F1/OA on the sample before/after).
    """
    logits, target = pixel_logits(model, *sample)
    offsets, summary = fit_class_offsets(logits, target, max_oa_loss=max_oa_loss,
                                         generator=torch.Generator().manual_seed(0))
    fold_offsets(model, offsets)
    summary["offsets"] = {name: summary["offsets"][i] for i, name in enumerate(class_names)}
    moved = [f"{name} {v:+.2f}" for name, v in summary["offsets"].items() if v]
    log(f"class offsets chosen on {summary['pixels']:,} training pixels: macro-F1 {summary['macro_f1_before']} -> "
        f"{summary['macro_f1_after']}, accuracy {summary['accuracy_before']} -> {summary['accuracy_after']}"
        + (f" ({', '.join(moved)})" if moved else " (none moved)"))
    return summary
