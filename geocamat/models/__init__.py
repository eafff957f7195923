"""Models whose class activation maps are meaningful at the tile size."""

from geocamat.models.camnet import ARCHS, CamNet, plan_strides, tile_probabilities
from geocamat.models.registry import build_model

__all__ = ["ARCHS", "CamNet", "build_model", "plan_strides", "tile_probabilities"]
