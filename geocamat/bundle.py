"""The self-describing model bundle (``model.geocamat``).

One file holds everything needed to run a trained model on new imagery: weights, architecture, bands,
normalisation statistics, classes (ids, names, colours), tile size, resolution and CRS of training, the
regulariser (CAMAT) settings and the validation metrics. It is a ``torch.save`` file of plain Python
values and tensors, loadable with ``weights_only=True`` (no code is unpickled).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from geocamat.errors import BundleError

FORMAT = "geocamat-bundle"
VERSION = 1


@dataclass
class ClassInfo:
    """One class: its label code in the training data, its name and its colour (#rrggbb)."""

    id: int
    name: str
    color: str


@dataclass(repr=False)
class Bundle:
    """A trained model and everything needed to apply it.

    Attributes:
        task: ``landuse`` or ``detection``.
        model: architecture spec for :func:`geocamat.models.build_model`.
        state_dict: trained weights.
        bands: band names, in the order the model expects them.
        mean: per-band mean used for normalisation (raw units).
        std: per-band standard deviation used for normalisation (raw units).
        classes: the classes, in the order of the model's outputs.
        tile_size: tile side in pixels.
        resolution: pixel size (x, y) of the training imagery, in CRS units.
        crs: CRS of the training imagery (WKT).
        regulariser: training-time occlusion settings (CAMAT or a baseline).
        metrics: validation metrics.
        extra: task-specific settings (e.g. detection thresholds).
    """

    task: str
    model: dict
    state_dict: dict
    bands: list[str]
    mean: list[float]
    std: list[float]
    classes: list[ClassInfo]
    tile_size: int
    resolution: tuple[float, float] | None = None
    crs: str | None = None
    regulariser: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def build_model(self) -> nn.Module:
        """The trained model, in eval mode, on the CPU."""
        from geocamat.errors import ConfigError
        from geocamat.models import build_model

        try:
            model = build_model(self.model)
        except ConfigError as exc:  # an architecture (or head) this geocamat does not have: the bundle is not at fault
            raise BundleError(f"the model's architecture ({self.model.get('arch') or self.model.get('name')}) is "
                              f"unknown to this geocamat ({exc}): it was written by another version; use that "
                              "version, or retrain") from exc
        bad = self.non_finite()
        if bad:  # a diverged training's weights: the map would be one class everywhere
            raise BundleError(f"this model holds NaN or infinite weights ({len(bad)} tensors, e.g. {bad[0]}): its "
                              "training diverged; retrain it with a lower learning rate (--lr)")
        model.load_state_dict(self.state_dict)
        return model.eval()

    def non_finite(self) -> list[str]:
        """The names of the weight tensors holding NaN or infinite values (none in a model that trained)."""
        return [k for k, v in self.state_dict.items()
                if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]

    def __repr__(self) -> str:  # the dataclass's would print every weight tensor (~100 KB for a small model)
        arch = self.model.get("arch") or self.model.get("name")
        params = sum(v.numel() for v in self.state_dict.values() if torch.is_tensor(v))
        return (f"Bundle(task={self.task!r}, arch={arch!r}, bands={self.bands!r}, classes="
                f"{[c.name for c in self.classes]!r}, tile_size={self.tile_size}, resolution={self.resolution}, "
                f"weights={params:,} values in {len(self.state_dict)} tensors, metrics={sorted(self.metrics)!r})")

    def save(self, path: str | os.PathLike) -> None:
        """Write the bundle atomically (temporary name, then rename)."""
        path = Path(path)
        bad = self.non_finite()
        if bad:
            from geocamat.errors import TrainingDivergedError

            raise TrainingDivergedError(f"training diverged: {len(bad)} weight tensors hold NaN or infinite values "
                                        f"(e.g. {bad[0]}); no model was written: lower the learning rate (--lr)")
        payload = asdict(self)
        payload["format"], payload["version"] = FORMAT, VERSION
        payload["state_dict"] = {k: v.detach().cpu() for k, v in self.state_dict.items()}
        tmp = path.with_name(path.name + ".part")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Bundle:
        """Read a bundle, with a clear error if the file is missing or not a geocamat bundle."""
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"model bundle not found: {path} (train one with `geocamat train`)")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            from geocamat.data.detection_images import IMAGE_SUFFIXES
            from geocamat.data.paths import RASTER_SUFFIXES

            if path.suffix.lower() in RASTER_SUFFIXES + IMAGE_SUFFIXES:
                raise BundleError(f"{path} is an image, not a model bundle: give the model first (geocamat info "
                                  "--check RUN/model.geocamat IMAGE...; --model RUN/model.geocamat)") from exc
            raise BundleError(f"{path} is not a readable geocamat model bundle ({exc.__class__.__name__})") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise BundleError(f"{path} is not a geocamat model bundle")
        if payload.get("version", 0) > VERSION:
            raise BundleError(f"{path} was written by a newer geocamat (bundle version {payload['version']})")
        payload.pop("format"), payload.pop("version")
        import dataclasses

        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(payload) - known)
        if extra:  # written by another geocamat (a field added without a version bump): read what is understood
            import warnings

            from geocamat.errors import GeocamatWarning

            warnings.warn(f"{path} holds fields this geocamat does not know ({', '.join(extra)}): written by another "
                          "version; they are ignored", GeocamatWarning, stacklevel=2)
            for key in extra:
                payload.pop(key)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in payload
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise BundleError(f"{path} lacks {', '.join(missing)}: it was not written by geocamat's Bundle.save, or "
                              "by an incompatible version")
        payload["classes"] = [ClassInfo(**c) for c in payload["classes"]]
        if payload.get("resolution") is not None:
            payload["resolution"] = tuple(payload["resolution"])
        return cls(**payload)

    @property
    def class_ids(self) -> list[int]:
        """Label codes of the classes, in output order."""
        return [c.id for c in self.classes]


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (the model hash recorded in reports)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
