"""Build a model from the architecture spec stored in a bundle."""

from __future__ import annotations

from torch import nn


def build_model(spec: dict) -> nn.Module:
    """Instantiate the model described by ``spec`` (``{"name": ..., **kwargs}``), untrained.

    Known names: ``camnet`` (land-use tile classifier, :class:`geocamat.models.camnet.CamNet`) and
    ``detector`` (object detector, :mod:`geocamat.models.detectors`).
    """
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    name = spec.get("name")
    if name == "camnet":
        from geocamat.models.camnet import CamNet

        return CamNet(**kwargs)
    if name == "detector":
        from geocamat.models.detectors import build_detector

        return build_detector(**kwargs)
    raise ValueError(f"unknown model {name!r}")
