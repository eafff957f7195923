"""Training-time occlusion: CAMAT and the baselines it is compared with, behind one interface.

A regulariser takes a batch of normalised images with their targets and returns the (partly) occluded
batch. ``CAMAT`` asks the model for class activation maps; the baselines occlude at random.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from geocamat.camat.fills import FILLS, apply_mask, fill_values
from geocamat.camat.masks import normalise_maps, threshold_mask, top_area_mask
from geocamat.camat.saliency import class_activation_maps, upsample_maps


class Regulariser:
    """Base class: returns the images unchanged."""

    name = "none"
    needs_model = False

    def __call__(
        self,
        images: Tensor,
        targets: Tensor,
        *,
        model: nn.Module | None = None,
        epoch: int = 0,
        max_epochs: int = 1,
        sample_ids: Tensor | None = None,
        transforms: Tensor | None = None,
    ) -> Tensor:
        """Occlude a batch.

        Args:
            images: (N, C, H, W) normalised images, already augmented.
            targets: (N,) ground-truth class indices.
            model: the model being trained (CAMAT only); must expose ``forward_features`` and ``head``.
            epoch: current epoch, 0-based.
            max_epochs: total number of epochs (for the warm-up).
            sample_ids: (N,) stable index of each sample in its dataset (for cached maps).
            transforms: (N,) dihedral augmentation index 0-7 applied to each sample (see
                :func:`geocamat.camat.geometry.dihedral`), so cached maps can follow the augmentation.

        Returns:
            (N, C, H, W) images, occluded where the regulariser decided.
        """
        return images

    def observe(
        self,
        features: Tensor,
        head: nn.Module,
        targets: Tensor,
        *,
        sample_ids: Tensor | None = None,
        transforms: Tensor | None = None,
    ) -> None:
        """Receive the (detached) feature map of the training forward; a no-op except for cached CAMAT."""

    def settings(self) -> dict:
        """The settings to record in a model bundle."""
        return {"name": self.name}


def _random_rect_mask(n: int, h: int, w: int, area: Tensor, aspect: Tensor, device) -> Tensor:
    """Axis-aligned rectangles of the given area fraction and aspect ratio at random positions."""
    rh = (area * h * w * aspect).sqrt().round().clamp(1, h).long()
    rw = (area * h * w / aspect).sqrt().round().clamp(1, w).long()
    top = (torch.rand(n, device=device) * (h - rh + 1).float()).floor().long()
    left = (torch.rand(n, device=device) * (w - rw + 1).float()).floor().long()
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    inside_y = (ys >= top.view(-1, 1, 1)) & (ys < (top + rh).view(-1, 1, 1))
    inside_x = (xs >= left.view(-1, 1, 1)) & (xs < (left + rw).view(-1, 1, 1))
    return (inside_y & inside_x).unsqueeze(1)


class Cutout(Regulariser):
    """Cutout (DeVries & Taylor 2017): one square of ``area`` of the image, filled with the band mean."""

    name = "cutout"

    def __init__(self, area: float = 0.25, p: float = 1.0, fill: str = "mean") -> None:
        self.area, self.p, self.fill = area, p, fill

    def __call__(self, images, targets, *, model=None, epoch=0, max_epochs=1, sample_ids=None, transforms=None):
        n, _, h, w = images.shape
        area = torch.full((n,), self.area, device=images.device)
        mask = _random_rect_mask(n, h, w, area, torch.ones(n, device=images.device), images.device)
        mask &= (torch.rand(n, device=images.device) < self.p).view(-1, 1, 1, 1)
        return apply_mask(images, mask, fill_values(images, self.fill))

    def settings(self):
        return {"name": self.name, "area": self.area, "p": self.p, "fill": self.fill}


class RandomErasing(Regulariser):
    """Random Erasing (Zhong et al. 2020): p 0.5, area 0.02-0.4, aspect 0.3-3.3, band-mean fill."""

    name = "random-erasing"

    def __init__(
        self,
        p: float = 0.5,
        area: tuple[float, float] = (0.02, 0.4),
        aspect: tuple[float, float] = (0.3, 3.3),
        fill: str = "mean",
    ) -> None:
        self.p, self.area, self.aspect, self.fill = p, tuple(area), tuple(aspect), fill

    def __call__(self, images, targets, *, model=None, epoch=0, max_epochs=1, sample_ids=None, transforms=None):
        n, _, h, w = images.shape
        dev = images.device
        area = torch.empty(n, device=dev).uniform_(*self.area)
        log_aspect = torch.empty(n, device=dev).uniform_(math.log(self.aspect[0]), math.log(self.aspect[1]))
        mask = _random_rect_mask(n, h, w, area, log_aspect.exp(), dev)
        mask &= (torch.rand(n, device=dev) < self.p).view(-1, 1, 1, 1)
        return apply_mask(images, mask, fill_values(images, self.fill))

    def settings(self):
        return {"name": self.name, "p": self.p, "area": list(self.area), "aspect": list(self.aspect),
                "fill": self.fill}


class HideAndSeek(Regulariser):
    """Hide-and-Seek (Singh & Lee 2017): a ``grid`` x ``grid`` partition, each cell hidden with p."""

    name = "hide-and-seek"

    def __init__(self, grid: int = 4, p: float = 0.5, fill: str = "mean") -> None:
        self.grid, self.p, self.fill = grid, p, fill

    def __call__(self, images, targets, *, model=None, epoch=0, max_epochs=1, sample_ids=None, transforms=None):
        n, _, h, w = images.shape
        cells = torch.rand(n, 1, self.grid, self.grid, device=images.device) < self.p
        mask = nn.functional.interpolate(cells.float(), size=(h, w), mode="nearest").bool()
        return apply_mask(images, mask, fill_values(images, self.fill))

    def settings(self):
        return {"name": self.name, "grid": self.grid, "p": self.p, "fill": self.fill}


@dataclass
class CamatConfig:
    """CAMAT options (see docs/camat.md for what each does and when to change it).

    Attributes:
        saliency: ``cam`` (GAP + linear head; no backward pass).
        target: ``gt`` (ground-truth class) or ``pred`` (predicted class).
        tau: occlude where the normalised map >= tau (used when ``area`` is None).
        area: if set, occlude this top fraction of pixels instead of thresholding.
        fill: see :data:`geocamat.camat.fills.FILLS`.
        p: probability that a sample is occluded.
        warmup: fraction of epochs trained clean before occlusion starts.
        source: ``fresh`` (an extra no-grad forward per step).
    """

    saliency: str = "cam"
    target: str = "gt"
    tau: float = 0.7
    area: float | None = None
    fill: str = "mean"
    p: float = 0.5
    warmup: float = 0.2
    source: str = "fresh"

    def __post_init__(self) -> None:
        checks = {
            "saliency": self.saliency in ("cam",),
            "target": self.target in ("gt", "pred"),
            "tau": 0.0 < self.tau <= 1.0,
            "area": self.area is None or 0.0 <= self.area <= 1.0,
            "fill": self.fill in FILLS,
            "p": 0.0 <= self.p <= 1.0,
            "warmup": 0.0 <= self.warmup < 1.0,
            "source": self.source in ("fresh",),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid CAMAT setting {bad[0]}={getattr(self, bad[0])!r}")


class CAMAT(Regulariser):
    """CAM-guided adversarial occlusion: hide what the model relies on most for the sample's class."""

    name = "camat"
    needs_model = True

    def __init__(self, config: CamatConfig | None = None, **options) -> None:
        self.config = config or CamatConfig(**options)

    def active(self, epoch: int, max_epochs: int) -> bool:
        """Whether occlusion is on at this epoch (off during the warm-up)."""
        return epoch >= math.floor(self.config.warmup * max_epochs)

    def maps(self, images: Tensor, targets: Tensor, model: nn.Module) -> Tensor:
        """Normalised saliency maps (N, H, W) of the target class, at the image size."""
        with torch.no_grad():
            features = model.forward_features(images)
            if self.config.target == "pred":
                targets = model.head(features.mean(dim=(2, 3))).argmax(dim=1)
            cams = class_activation_maps(features, model.head.weight, targets)
        return normalise_maps(upsample_maps(cams.float(), tuple(images.shape[-2:])))

    def __call__(self, images, targets, *, model=None, epoch=0, max_epochs=1, sample_ids=None, transforms=None):
        if model is None:
            raise ValueError("CAMAT needs the model to compute class activation maps")
        if not self.active(epoch, max_epochs):
            return images
        cfg = self.config
        chosen = torch.rand(images.shape[0], device=images.device) < cfg.p
        if not bool(chosen.any()):
            return images
        maps = self.maps(images[chosen], targets[chosen], model)
        sub_mask = top_area_mask(maps, cfg.area) if cfg.area is not None else threshold_mask(maps, cfg.tau)
        mask = torch.zeros(images.shape[0], 1, *images.shape[-2:], dtype=torch.bool, device=images.device)
        mask[chosen] = sub_mask
        return apply_mask(images, mask, fill_values(images, cfg.fill))

    def settings(self):
        return {"name": self.name, **asdict(self.config)}


REGULARISERS = ("none", "camat", "cutout", "random-erasing", "hide-and-seek")


def build_regulariser(name: str, **options) -> Regulariser:
    """Create a regulariser by name (one of :data:`REGULARISERS`) with its options."""
    classes = {"none": Regulariser, "camat": CAMAT, "cutout": Cutout, "random-erasing": RandomErasing,
               "hide-and-seek": HideAndSeek}
    if name not in classes:
        raise ValueError(f"unknown regulariser {name!r}: choose one of {', '.join(REGULARISERS)}")
    return classes[name](**options)
