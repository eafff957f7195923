"""CAMAT's settings and the names of its building blocks: the one home of every CAMAT default.

Torch-free, so that the command line can describe the options without importing torch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

#: Saliency methods by name: a ``(features, head, targets) -> (N, h, w)`` function, or "module:function" for a
#: built-in one (imported on first use). :func:`register_saliency` adds one.
SALIENCY: dict[str, Callable | str] = {
    "cam": "geocamat.camat.saliency:cam_maps",
    "gradcam": "geocamat.camat.saliency:grad_cam",
    "gradcampp": "geocamat.camat.saliency:grad_cam_pp",
}
#: The default ``random_area`` of land use and scenes: the random squares' area drawn from 10-50% of the image. On
#: the CPU benchmark (RSSCN7, camnet-s, 8 seeds) it lifted random 40% squares by 4 points at 30 and at 60 epochs
#: at no clean cost (docs/bench_camat.md, session 15); before, the squares took their CAM region's area (null).
DEFAULT_RANDOM_AREA = (0.1, 0.5)
#: Fills of occluded pixels (see :func:`geocamat.camat.fills.fill_values`).
FILLS = ("mean", "zero", "white", "max", "noise", "blur", "texture", "mixed")
#: The fills ``mixed`` draws from, one per sample (land use and scenes; ``camat.mix`` changes it).
MIXED_FILLS = ("mean", "white", "noise", "blur")
#: The default ``camat.mix`` of land use and scenes: 3 in 7 occluders mean-filled (the fill of the occlusion tests
#: and of most real gaps), the rest white (clouds), noise and blur drawn twice: the GPU benchmark of 2026-11-27
#: (RSSCN7, 3 seeds) put it within 1 point of `none` clean and level with the best baseline on blur and top-CAM
#: squares, where one blur was 1-3 points under (docs/bench_camat.md, "GPU, session 9").
DEFAULT_MIX = ("mean", "mean", "mean", "white", "noise", "blur", "blur")
#: The fills ``mixed`` draws from for detection: no fill is one constant an occluded box can be told by, and
#: ``texture`` (a patch of the image itself from elsewhere) is the hardest to tell from an object.
DETECTION_MIXED_FILLS = ("mean", "white", "noise", "blur", "texture")
#: Where CAMAT's maps come from: an extra forward, or the sample's previous training forward.
SOURCES = ("fresh", "cached")
#: Shapes of CAMAT's random occluders (``random_share``): one square, or Hide-and-Seek's grid cells.
RANDOM_SHAPES = ("square", "grid")
#: Which class's map is occluded: the ground truth or the prediction.
TARGETS = ("gt", "pred")
#: How the occlusion strength (``p`` and the occluders' areas) changes over the occluding epochs (``schedule``).
SCHEDULES = ("constant", "rising", "falling")
#: The factor on the occlusion strength at the start and at the end of a ``rising`` schedule (``falling``: the
#: other way round): linear in between, so the mean over the occluding epochs is the set strength.
SCHEDULE_RANGE = (0.5, 1.5)


def register_saliency(name: str, method: Callable) -> None:
    """Make ``method(features, head, targets) -> (N, h, w) maps`` available as ``camat.saliency: name``."""
    SALIENCY[name] = method


def saliency_method(name: str) -> Callable:
    """The saliency function registered under ``name``."""
    if name not in SALIENCY:
        raise ValueError(f"unknown saliency {name!r}: choose one of {', '.join(SALIENCY)}")
    method = SALIENCY[name]
    if isinstance(method, str):
        module, attr = method.split(":")
        method = SALIENCY[name] = getattr(importlib.import_module(module), attr)
    return method


@dataclass
class CamatConfig:
    """CAMAT options (see docs/camat.md for what each does and when to change it).

    Attributes:
        saliency: ``cam`` (GAP + linear head; no backward pass), ``gradcam`` or ``gradcampp`` (a backward
            through the head only, with :func:`torch.autograd.grad`), or a method added by
            :func:`register_saliency`.
        target: ``gt`` (ground-truth class) or ``pred`` (predicted class).
        tau: occlude where the normalised map >= tau (used when ``area`` is None).
        area: if set, occlude this top fraction of pixels instead of thresholding.
        fill: one of :data:`FILLS`.
        p: probability that a sample is occluded.
        warmup: fraction of epochs trained clean before occlusion starts.
        source: ``fresh`` (an extra no-grad forward per step on the chosen samples) or ``cached`` (the map
            from the sample's previous training forward, recorded by :meth:`CAMAT.observe`).
        cache_miss: cached source, sample with no map yet: ``skip`` (not occluded) or ``fresh`` (compute it).
        cache_update: cached source, which training forwards refresh the cache: ``clean`` (only samples
            that were not occluded in that step, so the map is the model's view of the whole image) or
            ``all`` (also occluded ones: the next occlusion then hides the next most salient region).
        random_share: share of the occluded samples whose mask is a random square of ``random_area``'s size
            (robustness to occluders that are not where the evidence is), the rest top-CAM.
        random_area: ``[lo, hi]``: the random squares' area is drawn uniformly from this range of the image's
            (:data:`DEFAULT_RANDOM_AREA`), or None: each matches its sample's top-CAM region.
        random_shape: the random occluders of ``random_share``: one ``square``, or ``grid``: the cells of a
            4 x 4 grid, each hidden with a probability equal to that area (Hide-and-Seek's occluder).
        consistency: > 0: each occluded sample is trained beside its clean copy in the same batch, and this
            weight multiplies a KL term between the two predictions (clean one detached); 0: the occluded
            sample replaces its clean copy. Detection: the clean tiles are all kept and the occluded copies
            of the tiles that got an occluder are a second forward whose loss this weight multiplies.
        schedule: ``constant``, or ``rising`` / ``falling``: ``p``, ``area``, ``random_area`` (and ``1 - tau``)
            are multiplied by a factor going linearly from 0.5 to 1.5 (or 1.5 to 0.5) over the epochs after the
            warm-up: the same occlusion on average, stronger at the end or at the start.
    """

    saliency: str = field(default="cam", metadata={"help": "Saliency method."})
    target: str = field(default="gt", metadata={"help": "Class whose map is occluded: ground truth or prediction."})
    tau: float = field(default=0.7, metadata={"help": "Occlude where the normalised map >= tau."})
    area: float | None = field(default=0.25, metadata={"help": "Occlude this top fraction of the map (null: where "
                                                                  "the map >= tau)."})
    fill: str = field(default="mixed", metadata={"help": "Fill of occluded pixels."})
    p: float = field(default=0.35, metadata={"help": "Probability that a sample is occluded."})
    warmup: float = field(default=0.2, metadata={"help": "Fraction of epochs trained clean first."})
    source: str | None = field(default=None, metadata={"help": "Maps from the sample's last training forward "
                                                               "(cached) or an extra forward (fresh).",
                                                       "unset": "cached (fresh with cutmix)"})
    cache_miss: str = field(default="skip", metadata={"help": "Cached maps: a sample without one is skipped or "
                                                               "gets a fresh map."})
    cache_update: str = field(default="clean", metadata={"help": "Cached maps: refreshed by clean forwards only, "
                                                                 "or by all."})
    random_share: float = field(default=0.5, metadata={"help": "Share of the occluded samples that get a random "
                                                              "square (of random_area's size) instead."})
    random_area: list[float] | None = field(default_factory=lambda: list(DEFAULT_RANDOM_AREA),
                                            metadata={"help": "[lo, hi]: the random squares' area, uniform in this "
                                                              "share of the image (null: the CAM region's)."})
    random_shape: str = field(default="square", metadata={"help": "The random occluders: one square, or the cells of "
                                                                 "a 4 x 4 grid hidden at random (grid)."})
    consistency: float = field(default=0.0, metadata={"help": "> 0: train on clean + occluded pairs, this weight on "
                                                             "a KL term tying their predictions."})
    mix: list[str] | None = field(default_factory=lambda: list(DEFAULT_MIX),
                                  metadata={"help": "Fills that `mixed` draws from, one per sample (a name given "
                                                    "twice is drawn twice as often)."})
    negatives: float = field(default=0.0, metadata={"help": "Detection: occluders also pasted outside the boxes, "
                                                            "this many per occluded object."})
    schedule: str = field(default="constant", metadata={"help": "Occlusion strength over the epochs after the "
                                                                "warm-up: constant, or p and the occluders' areas "
                                                                "rising (falling) linearly from 0.5x to 1.5x."})

    @staticmethod
    def choices(name: str) -> tuple | None:
        """The allowed values of an option with a fixed set of them."""
        return {"saliency": tuple(SALIENCY), "target": TARGETS, "fill": FILLS, "source": SOURCES,
                "cache_miss": ("skip", "fresh"), "cache_update": ("clean", "all"),
                "random_shape": RANDOM_SHAPES, "schedule": SCHEDULES}.get(name)

    def __post_init__(self) -> None:
        def number(value) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool)

        def one_of(name: str, optional: bool = False) -> tuple[bool, str]:
            value, allowed = getattr(self, name), self.choices(name)
            return (optional and value is None) or value in allowed, ", ".join(allowed)

        checks = {
            "saliency": one_of("saliency"),
            "target": one_of("target"),
            "tau": (number(self.tau) and 0.0 < self.tau <= 1.0, "a number in (0, 1]"),
            "area": (self.area is None or (number(self.area) and 0.0 <= self.area <= 1.0), "a number in [0, 1]"),
            "fill": one_of("fill"),
            "p": (number(self.p) and 0.0 <= self.p <= 1.0, "a probability in [0, 1]"),
            "warmup": (number(self.warmup) and 0.0 <= self.warmup < 1.0, "a fraction in [0, 1)"),
            "source": one_of("source", optional=True),
            "cache_miss": one_of("cache_miss"),
            "cache_update": one_of("cache_update"),
            "random_share": (number(self.random_share) and 0.0 <= self.random_share <= 1.0, "a share in [0, 1]"),
            "random_area": (self.random_area is None or (isinstance(self.random_area, list | tuple)
                                                         and len(self.random_area) == 2
                                                         and all(number(v) for v in self.random_area)
                                                         and 0.0 < self.random_area[0] <= self.random_area[1] <= 1.0),
                            "null or [lo, hi] with 0 < lo <= hi <= 1"),
            "random_shape": one_of("random_shape"),
            "consistency": (number(self.consistency) and self.consistency >= 0.0, "a weight >= 0"),
            "mix": (self.mix is None or (isinstance(self.mix, list | tuple) and len(self.mix) > 0
                                         and all(f in FILLS and f != "mixed" for f in self.mix)),
                    "a list of fills from " + ", ".join(f for f in FILLS if f != "mixed")),
            "negatives": (number(self.negatives) and 0.0 <= self.negatives <= 10.0, "a number in [0, 10]"),
            "schedule": one_of("schedule"),
        }
        for key, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"invalid CAMAT setting {key}={getattr(self, key)!r}: use {allowed}")

    def first_occluding_epoch(self, max_epochs: int) -> int:
        """The first (0-based) epoch after the warm-up, when occlusion starts."""
        return math.floor(self.warmup * max_epochs)

    def strength(self, epoch: int, max_epochs: int) -> float:
        """The factor ``schedule`` puts on the occlusion strength at ``epoch`` (0-based) of ``max_epochs``."""
        if self.schedule == "constant":
            return 1.0
        start = self.first_occluding_epoch(max_epochs)
        progress = min(max((epoch - start) / max(1, max_epochs - 1 - start), 0.0), 1.0)
        low, high = SCHEDULE_RANGE
        return low + (high - low) * (progress if self.schedule == "rising" else 1.0 - progress)

    def at_epoch(self, epoch: int, max_epochs: int) -> CamatConfig:
        """The settings in force at ``epoch``: ``p``, ``area``, ``random_area`` and ``1 - tau`` times
        :meth:`strength` (each kept in its range); the settings themselves when the schedule is constant."""
        factor = self.strength(epoch, max_epochs)
        if factor == 1.0:
            return self
        return replace(
            self, schedule="constant", p=min(1.0, self.p * factor),
            tau=min(1.0, max(1e-3, 1.0 - (1.0 - self.tau) * factor)),
            area=None if self.area is None else min(1.0, self.area * factor),
            random_area=None if self.random_area is None else [min(1.0, v * factor) for v in self.random_area])

    def mixed_fills(self) -> tuple[str, ...]:
        """The fills ``mixed`` draws from."""
        return tuple(self.mix) if self.mix else MIXED_FILLS

    @classmethod
    def names(cls) -> list[str]:
        """The option names."""
        return [f.name for f in fields(cls)]


@dataclass
class DetectionCamatConfig(CamatConfig):
    """CAMAT options of detection: the same options, with the defaults object-aware CAMAT needs.

    A constant fill pasted only inside boxes becomes evidence of an object (docs/bench_detection.md: decoys),
    so detection occludes with a mix of fills that includes patches of the image itself (``texture``) and
    pastes as many occluders of the same shapes outside the boxes (``negatives``).
    """

    area: float | None = field(default=None, metadata={"help": "Occlude this top fraction of each box (null: where "
                                                                  "the object's map >= tau)."})
    fill: str = field(default="mixed", metadata={"help": "Fill of occluded pixels (detection: mixed)."})
    p: float = field(default=0.5, metadata={"help": "Probability that an object is occluded."})
    source: str = field(default="fresh", metadata={"help": "Detection computes the maps of each batch (fresh)."})
    random_share: float = field(default=0.0, metadata={"help": "Not available for detection."})
    random_area: list[float] | None = field(default=None, metadata={"help": "Not available for detection."})
    mix: list[str] | None = field(default_factory=lambda: list(DETECTION_MIXED_FILLS),
                                  metadata={"help": "Fills that `mixed` draws from."})
    consistency: float = field(default=0.0, metadata={"help": "> 0: keep every clean tile and train the occluded "
                                                             "copies beside them, their loss times this weight."})
    negatives: float = field(default=1.0, metadata={"help": "Occluders also pasted outside every box, this many "
                                                            "per occluded object."})
