"""Training-time occlusion: CAMAT and the baselines it is compared with, behind one interface.

A regulariser takes a batch of normalised images with their targets and returns the (partly) occluded
batch. ``CAMAT`` asks the model for class activation maps; the baselines occlude at random.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace

import torch
from torch import Tensor, nn

from geocamat.camat.config import CamatConfig
from geocamat.camat.fills import apply_mask, fill_values
from geocamat.camat.geometry import dihedral, dihedral_inverse
from geocamat.camat.masks import normalise_maps, threshold_mask, top_area_mask
from geocamat.camat.saliency import saliency_maps, upsample_maps


class Regulariser:
    """Base class: returns the images unchanged."""

    name = "none"
    needs_model = False
    #: (C,) normalised value of a raw 0 per band, for the ``zero`` fill; set by the training workflow
    zero_value: Tensor | None = None
    #: weight of the clean/occluded consistency term (> 0: the training step adds clean + occluded pairs)
    consistency: float = 0.0

    @property
    def occluded(self) -> Tensor | None:
        """(N,) bool: the samples the last call occluded (None when the regulariser does not say)."""
        return None

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

    def reserve(self, n_samples: int) -> None:
        """Say how many samples the training set has (their ``sample_ids`` are below it); cached CAMAT sizes its
        cache from it once instead of reading the largest id back from the GPU every step."""

    def settings(self) -> dict:
        """The settings to record in a model bundle."""
        return {"name": self.name}

    def state_dict(self) -> dict:
        """What the regulariser learned during training that a resumed run needs (``{}``: nothing).

        Tensors on the CPU and plain numbers only, so that a checkpoint holding it loads with
        ``torch.load(weights_only=True)``.
        """
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (an empty dict: nothing)."""

    @classmethod
    def merge_states(cls, states: list[dict]) -> dict:
        """One state from those of several processes (DDP ranks); here: the first."""
        return states[0] if states else {}


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


def _random_grid_mask(n: int, h: int, w: int, area: Tensor, device, grid: int = 4) -> Tensor:
    """The cells of a ``grid`` x ``grid`` partition, each hidden with probability ``area`` (per sample)."""
    cells = torch.rand(n, 1, grid, grid, device=device) < area.view(-1, 1, 1, 1)
    return nn.functional.interpolate(cells.float(), size=(h, w), mode="nearest").bool()


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
        return apply_mask(images, mask, fill_values(images, self.fill, zero_value=self.zero_value))

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
        return apply_mask(images, mask, fill_values(images, self.fill, zero_value=self.zero_value))

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
        mask = _random_grid_mask(n, h, w, torch.full((n,), self.p, device=images.device), images.device, self.grid)
        return apply_mask(images, mask, fill_values(images, self.fill, zero_value=self.zero_value))

    def settings(self):
        return {"name": self.name, "grid": self.grid, "p": self.p, "fill": self.fill}


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Run forwards in the model's current mode without updating BatchNorm running statistics."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            saved.append((m, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class CAMAT(Regulariser):
    """CAM-guided adversarial occlusion: hide what the model relies on most for the sample's class.

    Args:
        config: the options; or pass them as keyword arguments (see :class:`CamatConfig`).
    """

    name = "camat"
    needs_model = True

    def __init__(self, config: CamatConfig | None = None, **options) -> None:
        self.config = config or CamatConfig(**options)
        if self.config.source is None:  # unset: cached maps (cost ~nothing; land use with cutmix sets fresh)
            self.config = replace(self.config, source="cached")
        self.consistency = float(self.config.consistency)
        self._cache: Tensor | None = None  # (S, h, w) float16 normalised maps, canonical frame
        self._seen: Tensor | None = None  # (S,) bool
        self._last_occluded: Tensor | None = None  # (N,) bool, from the last __call__
        self._reserved = 0  # sample count announced by reserve(): ids below it need no size check

    def reserve(self, n_samples: int) -> None:
        self._reserved = max(0, int(n_samples))

    def active(self, epoch: int, max_epochs: int) -> bool:
        """Whether occlusion is on at this epoch (off during the warm-up)."""
        return epoch >= self.config.first_occluding_epoch(max_epochs)

    @property
    def occluded(self) -> Tensor | None:
        return self._last_occluded

    def _targets(self, features: Tensor, head: nn.Module, targets: Tensor) -> Tensor:
        if self.config.target == "pred":
            pooled = features.detach().float().mean(dim=(2, 3))
            with torch.no_grad(), torch.autocast(device_type=pooled.device.type, enabled=False):
                return head(pooled).argmax(dim=1)
        return targets

    def low_res_maps(self, features: Tensor, head: nn.Module, targets: Tensor) -> Tensor:
        """Normalised (N, h, w) saliency maps of the target classes from a feature map."""
        cls = self._targets(features, head, targets)
        return normalise_maps(saliency_maps(features, head, cls, self.config.saliency))

    def maps(self, images: Tensor, targets: Tensor, model: nn.Module) -> Tensor:
        """Fresh normalised saliency maps (N, H, W) of the target class at the image size.

        One extra forward of the backbone without gradient, in the model's current mode (BatchNorm running
        statistics are left untouched); Grad-CAM variants add a backward through the head only.
        """
        with torch.no_grad(), frozen_batchnorm_stats(model):
            features = model.forward_features(images)
        low = self.low_res_maps(features, model.head, targets)
        return normalise_maps(upsample_maps(low, tuple(images.shape[-2:])))

    def cached_maps(
        self, sample_ids: Tensor, transforms: Tensor | None, size: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """Cached maps mapped into the current augmentation frame and upsampled.

        Returns:
            (maps (N, H, W) in [0, 1], seen (N,) bool: whether the sample had a cached map).
        """
        n = sample_ids.shape[0]
        if self._cache is None:
            return torch.zeros(n, *size, device=sample_ids.device), torch.zeros(n, dtype=torch.bool,
                                                                              device=sample_ids.device)
        self._cache_to(sample_ids.device)
        ids = sample_ids.to(self._cache.device).long()
        valid = ids < self._cache.shape[0]
        idx = ids.clamp(max=self._cache.shape[0] - 1)
        seen = self._seen[idx] & valid
        low = self._cache[idx].float()
        if transforms is not None:
            low = dihedral(low, transforms)
        return normalise_maps(upsample_maps(low, size)), seen

    def __call__(self, images, targets, *, model=None, epoch=0, max_epochs=1, sample_ids=None, transforms=None):
        cfg = self.config.at_epoch(epoch, max_epochs)  # its schedule applied (~15 us)
        n = images.shape[0]
        dev = images.device
        if not self.active(epoch, max_epochs):
            self._last_occluded = torch.zeros(n, dtype=torch.bool, device=dev)
            return images
        chosen = torch.rand(n, device=dev) < cfg.p
        size = tuple(images.shape[-2:])
        if cfg.source == "fresh":
            if model is None:
                raise ValueError("CAMAT needs the model to compute class activation maps")
            if not bool(chosen.any()):
                self._last_occluded = chosen
                return images
            maps = torch.zeros(n, *size, device=dev)
            maps[chosen] = self.maps(images[chosen], targets[chosen], model)
        else:
            if sample_ids is None:
                raise ValueError("cached CAMAT needs sample_ids (the index of each sample in its dataset)")
            maps, seen = self.cached_maps(sample_ids, transforms, size)
            maps, seen = maps.to(dev), seen.to(dev)
            if cfg.cache_miss == "fresh":
                miss = chosen & ~seen
                if model is not None and bool(miss.any()):
                    maps[miss] = self.maps(images[miss], targets[miss], model)
                    seen = seen | miss
            chosen = chosen & seen
        mask = top_area_mask(maps, cfg.area) if cfg.area is not None else threshold_mask(maps, cfg.tau)
        if cfg.random_share > 0:  # some samples: a random square of their CAM region's area instead
            swap = chosen & (torch.rand(n, device=dev) < cfg.random_share)
            if dev.type != "cpu" or bool(swap.any()):  # on a GPU always: no host sync
                if cfg.random_area is not None:
                    lo, hi = (float(v) for v in cfg.random_area)
                    area = lo + (hi - lo) * torch.rand(n, device=dev)
                else:
                    area = mask.float().mean(dim=(1, 2, 3)).clamp(min=1.0 / (size[0] * size[1]))
                if cfg.random_shape == "grid":
                    random_mask = _random_grid_mask(n, size[0], size[1], area, dev)
                else:
                    random_mask = _random_rect_mask(n, size[0], size[1], area, torch.ones(n, device=dev), dev)
                mask = torch.where(swap.view(-1, 1, 1, 1), random_mask, mask)
        mask &= chosen.view(-1, 1, 1, 1)
        self._last_occluded = chosen
        return apply_mask(images, mask, fill_values(images, cfg.fill, zero_value=self.zero_value,
                                                    mix=cfg.mixed_fills()))

    def observe(self, features, head, targets, *, sample_ids=None, transforms=None):
        """Record the CAM of each sample from the training forward (``source="cached"`` only).

        The map is taken from the (detached) features of the training forward, normalised, mapped back
        to the canonical frame with :func:`geocamat.camat.geometry.dihedral_inverse` and stored as float16
        on the features' device, indexed by ``sample_ids``. With ``cache_update="clean"`` only samples
        that the preceding :meth:`__call__` left unoccluded are recorded.
        """
        if self.config.source != "cached":
            return
        if sample_ids is None:
            raise ValueError("cached CAMAT needs sample_ids (the index of each sample in its dataset)")
        low = self.low_res_maps(features.detach(), head, targets)
        if transforms is not None:
            low = dihedral_inverse(low, transforms)
        ids = sample_ids.to(low.device).long()
        hw = tuple(low.shape[-2:])
        if self._reserved and self._cache is not None and self._cache.shape[0] >= self._reserved \
                and tuple(self._cache.shape[1:]) == hw:
            self._cache_to(low.device)  # ids are below the announced sample count: no read-back of their max
        else:
            self._ensure_cache(max(int(ids.max()) + 1, self._reserved), hw, low.device)
        update = torch.ones(ids.shape[0], dtype=torch.bool, device=low.device)
        last = self._last_occluded
        if self.config.cache_update == "clean" and last is not None and last.shape[0] == ids.shape[0]:
            update = ~last.to(low.device)
        old = self._cache[ids]
        self._cache[ids] = torch.where(update.view(-1, 1, 1), low.to(self._cache.dtype), old)
        self._seen[ids] = self._seen[ids] | update

    def _ensure_cache(self, size: int, hw: tuple[int, int], device: torch.device) -> None:
        self._cache_to(device)
        if self._cache is not None and tuple(self._cache.shape[1:]) != hw:
            self._cache = self._seen = None  # the feature map size changed: start again
        if self._cache is None:
            self._cache = torch.zeros(size, *hw, dtype=torch.float16, device=device)
            self._seen = torch.zeros(size, dtype=torch.bool, device=device)
        elif size > self._cache.shape[0]:
            grow = max(size, 2 * self._cache.shape[0]) - self._cache.shape[0]
            self._cache = torch.cat([self._cache, self._cache.new_zeros(grow, *hw)])
            self._seen = torch.cat([self._seen, self._seen.new_zeros(grow)])

    def _cache_to(self, device: torch.device) -> None:
        """Move the cache to ``device`` (a cache restored from a checkpoint starts on the CPU)."""
        if self._cache is not None and self._cache.device != torch.device(device):
            self._cache, self._seen = self._cache.to(device), self._seen.to(device)

    def reset_cache(self) -> None:
        """Forget all cached maps."""
        self._cache = self._seen = self._last_occluded = None

    def state_dict(self) -> dict:
        """The cached maps, so that a resumed run keeps them (``source="cached"``; ``{}`` without a cache).

        Only the samples with a map are stored, losslessly at the cache's own resolution and type:
        ``cache_ids`` (int32, or int64 past 2^31 samples), ``cache_maps`` (float16, (n, h, w) at the feature
        map's size, canonical frame) and ``cache_size`` (rows of the cache). A sample costs ``2*h*w + 4``
        bytes: 132 B at an 8 x 8 feature map (16-256 px tiles of the CamNets), 166 B at 9 x 9 (144 px).
        """
        if self._cache is None:
            return {}
        ids = self._seen.nonzero().flatten()
        small = self._cache.shape[0] <= torch.iinfo(torch.int32).max
        return {"cache_ids": ids.to(torch.int32 if small else torch.int64).cpu(),
                "cache_maps": self._cache[ids].cpu(), "cache_size": int(self._cache.shape[0])}

    def load_state_dict(self, state: dict) -> None:
        """Restore the cached maps of :meth:`state_dict` (on the CPU; they follow the batches' device).

        Raises:
            ValueError: a state that does not hold cached maps.
        """
        self.reset_cache()
        if not state:
            return
        missing = {"cache_ids", "cache_maps", "cache_size"} - set(state)
        if missing:
            raise ValueError(f"not a CAMAT cache state: missing {', '.join(sorted(missing))}")
        ids, maps = state["cache_ids"].long(), state["cache_maps"]
        self._cache = torch.zeros(int(state["cache_size"]), *maps.shape[1:], dtype=torch.float16)
        self._seen = torch.zeros(int(state["cache_size"]), dtype=torch.bool)
        self._cache[ids] = maps.to(torch.float16)
        self._seen[ids] = True

    @classmethod
    def merge_states(cls, states: list[dict]) -> dict:
        """One cache state from several (e.g. each DDP rank's: each saw its own shard of the samples); a sample
        cached in several takes the map of the first state that has it."""
        states = [s for s in states if s]
        if not states:
            return {}
        hw = tuple(states[0]["cache_maps"].shape[1:])
        size = max(int(s["cache_size"]) for s in states)
        merged = cls()
        merged._cache = torch.zeros(size, *hw, dtype=torch.float16)
        merged._seen = torch.zeros(size, dtype=torch.bool)
        for state in reversed(states):  # the first state is written last: it wins
            if tuple(state["cache_maps"].shape[1:]) != hw:
                raise ValueError(f"cannot merge CAMAT caches of different map sizes {hw} and "
                                 f"{tuple(state['cache_maps'].shape[1:])}")
            ids = state["cache_ids"].long()
            merged._cache[ids] = state["cache_maps"].to(torch.float16)
            merged._seen[ids] = True
        return merged.state_dict()

    def settings(self):
        return {"name": self.name, **asdict(self.config)}


REGULARISERS = ("none", "camat", "cutout", "random-erasing", "hide-and-seek")


def build_regulariser(name: str, **options) -> Regulariser:
    """Create a regulariser by name (one of :data:`REGULARISERS`) with its options."""
    classes = {"none": Regulariser, "camat": CAMAT, "cutout": Cutout, "random-erasing": RandomErasing,
               "hide-and-seek": HideAndSeek}
    if name not in classes:
        raise ValueError(f"unknown regulariser {name!r}: choose one of {', '.join(REGULARISERS)}")
    import difflib
    import inspect

    known = [p for p in inspect.signature(classes[name]).parameters if p not in ("self", "args", "kwargs", "options")]
    if name == "camat":
        known += list(CamatConfig.names())
    unknown = [k for k in options if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.6)  # (was a TypeError from __init__)
        raise ValueError(f"{name} has no option {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f": its options are {', '.join(known) or 'none'}")
    for key in ("area", "p"):  # fractions (cutout area=5 was taken); random erasing's area is a (low, high) range
        value = options.get(key)
        values = list(value) if isinstance(value, list | tuple) else [value]
        if value is not None and not all(isinstance(v, int | float) and 0 <= v <= 1 for v in values):
            raise ValueError(f"{name} option {key} is a fraction in [0, 1], not {value!r}")
    return classes[name](**options)
