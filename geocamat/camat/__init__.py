"""CAMAT, the method: saliency maps, occlusion masks, fills, the baselines and robustness tests. Pure torch.

Names are imported on first use, so that :mod:`geocamat.camat.config` (the settings) stays free of torch.
"""

import importlib

_HOMES = {
    "config": ("CamatConfig", "FILLS", "MIXED_FILLS", "SALIENCY", "SOURCES", "TARGETS", "register_saliency"),
    "fills": ("apply_mask", "fill_values"),
    "geometry": ("dihedral", "dihedral_inverse", "random_dihedral"),
    "masks": ("normalise_maps", "threshold_mask", "top_area_mask"),
    "regularisers": ("CAMAT", "REGULARISERS", "Cutout", "HideAndSeek", "RandomErasing", "Regulariser",
                     "build_regulariser"),
    "robustness": ("CONDITIONS", "robustness_report"),
    "saliency": ("class_activation_maps", "grad_cam", "grad_cam_pp", "saliency_maps", "upsample_maps"),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'geocamat.camat' has no attribute {name!r}")
    return getattr(importlib.import_module(f"geocamat.camat.{_WHERE[name]}"), name)
