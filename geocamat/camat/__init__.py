"""CAMAT, the method: saliency maps, occlusion masks, fills and the baselines. Pure torch."""

from geocamat.camat.fills import FILLS, apply_mask, fill_values
from geocamat.camat.masks import normalise_maps, threshold_mask, top_area_mask
from geocamat.camat.regularisers import (
    CAMAT,
    REGULARISERS,
    CamatConfig,
    Cutout,
    HideAndSeek,
    RandomErasing,
    Regulariser,
    build_regulariser,
)
from geocamat.camat.saliency import class_activation_maps, upsample_maps

__all__ = [
    "CAMAT", "FILLS", "REGULARISERS", "CamatConfig", "Cutout", "HideAndSeek", "RandomErasing", "Regulariser",
    "apply_mask", "build_regulariser", "class_activation_maps", "fill_values", "normalise_maps",
    "threshold_mask", "top_area_mask", "upsample_maps",
]
