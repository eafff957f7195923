"""CAMAT, the method: saliency maps, occlusion masks, fills, the baselines and robustness tests. Pure torch."""

from geocamat.camat.fills import FILLS, MIXED_FILLS, apply_mask, fill_values
from geocamat.camat.geometry import dihedral, dihedral_inverse, random_dihedral
from geocamat.camat.masks import normalise_maps, threshold_mask, top_area_mask
from geocamat.camat.regularisers import (
    CAMAT,
    REGULARISERS,
    SOURCES,
    TARGETS,
    CamatConfig,
    Cutout,
    HideAndSeek,
    RandomErasing,
    Regulariser,
    build_regulariser,
)
from geocamat.camat.robustness import CONDITIONS, robustness_report
from geocamat.camat.saliency import (
    SALIENCY,
    class_activation_maps,
    grad_cam,
    grad_cam_pp,
    saliency_maps,
    upsample_maps,
)

__all__ = [
    "CAMAT", "CONDITIONS", "FILLS", "MIXED_FILLS", "REGULARISERS", "SALIENCY", "SOURCES", "TARGETS", "CamatConfig",
    "Cutout", "HideAndSeek", "RandomErasing", "Regulariser", "apply_mask", "build_regulariser",
    "class_activation_maps", "dihedral", "dihedral_inverse", "fill_values", "grad_cam", "grad_cam_pp",
    "normalise_maps", "random_dihedral", "robustness_report", "saliency_maps", "threshold_mask", "top_area_mask",
    "upsample_maps",
]
