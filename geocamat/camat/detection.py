"""Object-aware occlusion for detection: CAMAT and Random Erasing inside ground-truth boxes. Pure torch.

For each ground-truth object (chosen with probability ``p``), CAMAT takes the class activation map of the
object's class, keeps the part inside the object's box, normalises it by its maximum *inside the box*,
and occludes where it is >= ``tau`` (or the top ``area`` fraction of the box's pixels). Only pixels inside
boxes are ever occluded, and the boxes are kept: the detector must find the object from what is left.
The object-aware Random Erasing baseline erases a random rectangle inside each chosen box instead.

Occluders only ever inside boxes, filled with one constant, teach a shortcut ("a flat patch means an
object"; docs/bench_detection.md, the decoy test). So CAMAT for detection also pastes copies of the same
occluder shapes *outside* every box (``negatives``: how many per occluded object), with the same fill, and by
default fills with a per-tile mix that includes patches of the scene itself (``texture``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch
from torch import Tensor

from geocamat.camat.config import CamatConfig, DetectionCamatConfig
from geocamat.camat.fills import FILLS, apply_mask, fill_values
from geocamat.camat.masks import normalise_maps, threshold_mask, top_area_mask


def _pixel_box(box: Tensor, h: int, w: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box.tolist()
    x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    x1, y1 = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
    return x0, y0, x1, y1


def object_cam_masks(
    cams: Tensor,
    boxes: list[Tensor],
    labels: list[Tensor],
    *,
    tau: float = 0.7,
    area: float | None = None,
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Occlusion masks from the CAM of each object's class, restricted to the object's box.

    Args:
        cams: (N, K, H, W) class activation maps at the image size (raw or normalised).
        boxes: per image, (M, 4) xyxy pixel boxes.
        labels: per image, (M,) class indices into K.
        tau: occlude where the in-box normalised map >= tau (used when ``area`` is None).
        area: if set, occlude this top fraction of each box's pixels instead.
        p: probability that an object is occluded.
        generator: random generator for the choice of objects.

    Returns:
        (N, 1, H, W) boolean mask; true only inside chosen boxes.
    """
    n, _, h, w = cams.shape
    mask = torch.zeros(n, 1, h, w, dtype=torch.bool, device=cams.device)
    chosen = [torch.rand(len(b), generator=generator).to(b.device) < p for b in boxes]
    if area is None:
        return _threshold_in_boxes(cams, boxes, labels, chosen, tau, mask)
    for i in range(n):
        if len(boxes[i]) == 0:
            continue
        for box, label in zip(boxes[i][chosen[i]], labels[i][chosen[i]], strict=True):
            x0, y0, x1, y1 = _pixel_box(box, h, w)
            if x1 <= x0 or y1 <= y0:
                continue
            crop = cams[i, int(label), y0:y1, x0:x1].unsqueeze(0)
            if area is not None:
                sub = top_area_mask(crop, area)
            else:
                sub = threshold_mask(normalise_maps(crop), tau)
            mask[i, :, y0:y1, x0:x1] |= sub[0]
    return mask


def _threshold_in_boxes(cams: Tensor, boxes: list[Tensor], labels: list[Tensor], chosen: list[Tensor], tau: float,
                        mask: Tensor, chunk: int = 256) -> Tensor:
    """Vectorised tau-threshold masks of all chosen objects (no per-object Python loop, no host syncs)."""
    h, w = cams.shape[-2:]
    img = torch.cat([torch.full((int(c.sum()),), i, device=cams.device, dtype=torch.long)
                     for i, c in enumerate(chosen)]) if chosen else torch.zeros(0, dtype=torch.long)
    if img.numel() == 0:
        return mask
    bx = torch.cat([b[c] for b, c in zip(boxes, chosen, strict=True)]).to(cams.device).float()
    lb = torch.cat([lab[c] for lab, c in zip(labels, chosen, strict=True)]).to(cams.device).long()
    ys = torch.arange(h, device=cams.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=cams.device, dtype=torch.float32).view(1, 1, w)
    for s in range(0, len(img), chunk):
        b, i, k = bx[s:s + chunk], img[s:s + chunk], lb[s:s + chunk]
        # pixel (y, x) is in the box if its cell overlaps [floor(x0), ceil(x1)) x [floor(y0), ceil(y1))
        inside = ((xs >= b[:, 0].floor().view(-1, 1, 1)) & (xs < b[:, 2].ceil().view(-1, 1, 1))
                  & (ys >= b[:, 1].floor().view(-1, 1, 1)) & (ys < b[:, 3].ceil().view(-1, 1, 1)))
        maps = cams[i, k].float().clamp_min(0) * inside
        peak = maps.flatten(1).amax(dim=1).clamp_min(1e-8).view(-1, 1, 1)
        sub = inside & (maps / peak >= tau) & (maps > 0)
        for u in i.unique():
            mask[u, 0] |= sub[i == u].any(dim=0)
    return mask


def boxes_cover(boxes: Tensor, h: int, w: int) -> np.ndarray:
    """(H, W) boolean array, true on every pixel that any box touches (the cells of :func:`_pixel_box`)."""
    cover = np.zeros((h, w), bool)
    for box in boxes:
        x0, y0, x1, y1 = _pixel_box(box, h, w)
        cover[y0:y1, x0:x1] = True
    return cover


def negative_masks(
    mask: Tensor,
    boxes: list[Tensor],
    rate: float = 1.0,
    *,
    tries: int = 8,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Copies of each object's occluder shape pasted outside every box: negatives for object-aware occlusion.

    For each box whose pixels are occluded in ``mask``, the occluded shape (cropped to its extent) is pasted
    ``rate`` times (the fractional part by chance) at random places; of ``tries`` random places the one
    overlapping the boxes least is kept, and any pixel of a copy that still falls on a box is dropped, so
    the result never touches a box. Computed on the CPU (one transfer of the mask each way).

    Args:
        mask: (N, 1, H, W) boolean positive occlusion mask (inside boxes).
        boxes: per image, (M, 4) xyxy pixel boxes.
        rate: negatives per occluded object.
        tries: random places tried per negative.
        generator: random generator (CPU) for the places.

    Returns:
        (N, 1, H, W) boolean mask of the negatives, false on every box pixel.
    """
    n, _, h, w = mask.shape
    pos = mask.detach().cpu().numpy()
    out = np.zeros_like(pos)
    if rate <= 0:
        return torch.from_numpy(out).to(mask.device)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    whole, frac = int(rate), rate - int(rate)
    for i in range(n):
        if len(boxes[i]) == 0 or not pos[i, 0].any():
            continue
        free = ~boxes_cover(boxes[i], h, w)
        if not free.any():
            continue
        for box in boxes[i]:
            x0, y0, x1, y1 = _pixel_box(box, h, w)
            shape = pos[i, 0, y0:y1, x0:x1]
            if not shape.any():
                continue
            ys, xs = np.nonzero(shape)
            crop = shape[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            ch, cw = crop.shape
            wanted = int(crop.sum())
            for _ in range(whole + int(rng.random() < frac)):
                best, best_kept = (0, 0), -1
                for _ in range(tries):
                    top, left = int(rng.integers(0, max(1, h - ch + 1))), int(rng.integers(0, max(1, w - cw + 1)))
                    kept = int((crop & free[top:top + ch, left:left + cw]).sum())
                    if kept > best_kept:
                        best, best_kept = (top, left), kept
                    if kept == wanted:
                        break
                top, left = best
                out[i, 0, top:top + ch, left:left + cw] |= crop & free[top:top + ch, left:left + cw]
    return torch.from_numpy(out).to(mask.device)


def object_random_masks(
    shape: tuple[int, int, int],
    boxes: list[Tensor],
    *,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 3.3),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Object-aware Random Erasing: one random rectangle inside each chosen box.

    Args:
        shape: (N, H, W).
        boxes: per image, (M, 4) xyxy pixel boxes.
        p: probability that an object is erased.
        area: range of the erased fraction of the box area.
        aspect: range of the rectangle's aspect ratio (log-uniform).

    Returns:
        (N, 1, H, W) boolean mask.
    """
    n, h, w = shape
    mask = torch.zeros(n, 1, h, w, dtype=torch.bool, device=device)
    for i in range(n):
        for box in boxes[i]:
            if float(torch.rand(1, generator=generator)) >= p:
                continue
            x0, y0, x1, y1 = _pixel_box(box, h, w)
            bw, bh = x1 - x0, y1 - y0
            if bw < 1 or bh < 1:
                continue
            r = torch.rand(4, generator=generator).tolist()
            frac = area[0] + r[0] * (area[1] - area[0])
            ratio = math.exp(math.log(aspect[0]) + r[1] * (math.log(aspect[1]) - math.log(aspect[0])))
            rh = max(1, min(bh, int(round(math.sqrt(frac * bw * bh * ratio)))))
            rw = max(1, min(bw, int(round(math.sqrt(frac * bw * bh / ratio)))))
            top = y0 + int(r[2] * (bh - rh + 1))
            left = x0 + int(r[3] * (bw - rw + 1))
            mask[i, :, top:top + rh, left:left + rw] = True
    return mask


CamFn = Callable[[Tensor], Tensor]


class ObjectRegulariser:
    """No occlusion (the ``none`` baseline); the interface of the object-aware regularisers."""

    name = "none"
    needs_cam = False
    #: > 0: the training step keeps the clean tiles and adds the occluded copies, their loss times this weight
    pairs_weight = 0.0
    #: (C,) normalised value of a raw 0 per band, for the ``zero`` fill; set by the training workflow
    zero_value: Tensor | None = None

    def __call__(self, images: Tensor, boxes: list[Tensor], labels: list[Tensor], *, cam_fn: CamFn | None = None,
                 epoch: int = 0, max_epochs: int = 1) -> tuple[Tensor, Tensor | None]:
        """Occlude a batch.

        Args:
            images: (N, C, H, W) normalised tiles.
            boxes: per tile, (M, 4) ground-truth boxes.
            labels: per tile, (M,) class indices.
            cam_fn: images -> (N, K, H, W) class activation maps (CAMAT only).
            epoch: current epoch, 0-based.
            max_epochs: total epochs (for the warm-up).

        Returns:
            (images, occlusion mask (N, 1, H, W) or None when nothing was occluded).
        """
        return images, None

    def settings(self) -> dict:
        """Settings to record in a model bundle."""
        return {"name": self.name}


class ObjectRandomErasing(ObjectRegulariser):
    """Random Erasing inside ground-truth boxes."""

    name = "random-erasing"

    def __init__(self, p: float = 0.5, area: tuple[float, float] = (0.02, 0.4),
                 aspect: tuple[float, float] = (0.3, 3.3), fill: str = "mean", warmup: float = 0.0) -> None:
        if fill not in FILLS:
            raise ValueError(f"unknown fill {fill!r}: choose one of {', '.join(FILLS)}")
        self.p, self.area, self.aspect, self.fill, self.warmup = p, tuple(area), tuple(aspect), fill, warmup

    def __call__(self, images, boxes, labels, *, cam_fn=None, epoch=0, max_epochs=1):
        if epoch < math.floor(self.warmup * max_epochs):
            return images, None
        n, _, h, w = images.shape
        mask = object_random_masks((n, h, w), boxes, p=self.p, area=self.area, aspect=self.aspect,
                                   device=images.device)
        return apply_mask(images, mask, fill_values(images, self.fill, zero_value=self.zero_value)), mask

    def settings(self):
        return {"name": self.name, "p": self.p, "area": list(self.area), "aspect": list(self.aspect),
                "fill": self.fill, "warmup": self.warmup}


class ObjectCAMAT(ObjectRegulariser):
    """CAMAT for detection: occlude the high-CAM part of each object inside its box (boxes kept).

    Options are those of :class:`geocamat.camat.config.DetectionCamatConfig` (tau, area, fill, mix, p, warmup,
    negatives, ...): by default a mixed fill with texture and one negative occluder per occluded object.
    """

    name = "camat"
    needs_cam = True
    #: share of the last batch's pixels occluded as negatives (outside the boxes)
    last_negative_fraction = 0.0

    def __init__(self, config: CamatConfig | None = None, **options) -> None:
        self.config = config or DetectionCamatConfig(**options)
        self.pairs_weight = float(self.config.consistency)

    def active(self, epoch: int, max_epochs: int) -> bool:
        """Whether occlusion is on at this epoch (off during the warm-up)."""
        return epoch >= self.config.first_occluding_epoch(max_epochs)

    def __call__(self, images, boxes, labels, *, cam_fn=None, epoch=0, max_epochs=1):
        if cam_fn is None:
            raise ValueError("CAMAT needs cam_fn to compute class activation maps")
        if not self.active(epoch, max_epochs) or not any(len(b) for b in boxes):
            return images, None
        cfg = self.config.at_epoch(epoch, max_epochs)  # its schedule applied (~15 us)
        cams = cam_fn(images)
        mask = object_cam_masks(cams, boxes, labels, tau=cfg.tau, area=cfg.area, p=cfg.p)
        if cfg.negatives > 0:  # the same shapes outside the boxes: an occluder is no evidence of an object
            negatives = negative_masks(mask, boxes, float(cfg.negatives))
            self.last_negative_fraction = float(negatives.float().mean())
            mask = mask | negatives
        fill = fill_values(images, cfg.fill, zero_value=self.zero_value, mix=cfg.mixed_fills())
        return apply_mask(images, mask, fill), mask

    def settings(self):
        return {"name": self.name, **asdict(self.config)}


OBJECT_REGULARISERS = ("none", "random-erasing", "camat")


def build_object_regulariser(name: str, **options) -> ObjectRegulariser:
    """Create an object-aware regulariser by name (one of :data:`OBJECT_REGULARISERS`)."""
    classes = {"none": ObjectRegulariser, "random-erasing": ObjectRandomErasing, "camat": ObjectCAMAT}
    if name not in classes:
        raise ValueError(f"unknown detection regulariser {name!r}: choose one of {', '.join(OBJECT_REGULARISERS)}")
    return classes[name](**options)
