"""Settings of land-use training on a GeoTIFF stack with raster or vector labels: the one home of their defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass

from geocamat.errors import ConfigError
from geocamat.settings import as_list, in_range, positive_int, setting
from geocamat.tasks.base import ClassifierSettings

ARCH_NAMES = ("camnet-xs", "camnet-s", "resnet10", "resnet18")


@dataclass
class LandUseConfig(ClassifierSettings):
    """Land-use training: tiles of a stack, labelled per pixel (raster) or by polygons/points."""

    images: list[str] = setting(help="Image files, globs or folders (one multi-band file, or one file per band).",
                                path=True, factory=list)
    bands: list | None = setting(None, "Band selection: names (file stems / descriptions) or 1-based numbers.")
    nodata: float | None = setting(None, "Value of the images' fill pixels, replacing what the files declare "
                                   "(e.g. 0 for a collar of zeros with no nodata tag); the model keeps it.")
    labels: str | list[str] | None = setting(None, "Classified raster, or vector layer of polygons/points (FILE:LAYER "
                                                "for one layer of a GeoPackage; several vector files: a list, or "
                                                "--labels repeated).", path=True)
    label_field: str | None = setting(None, "Class field of a vector label layer ('layer': each layer, or each "
                                            "file, is a class named by it).")
    label_nodata: int | None = setting(None, "Value of a label raster meaning 'not labelled', replacing what the "
                                       "file declares (e.g. 0).")
    classes: dict = setting(help="{code: {name: ..., color: '#rrggbb'}} or {code: name}.", factory=dict)
    tile_size: int = setting(16, "Tile side in pixels.")
    stride: int | None = setting(None, "Training tile stride in pixels (default: tile_size // 4).")
    footprint: float = setting(0.25, "Central share of the tile whose labels give its class (1: whole tile).")
    output: str | None = setting(None, "Map from the per-pixel CAM logits (dense) or window probabilities (window); "
                                 "default: dense when pixel_loss > 0, else window.", choices=("dense", "window"))
    purity: float = setting(0.5, "Minimum share of a tile's majority class.")
    min_labelled: float = setting(0.5, "Minimum share of labelled pixels in a tile (labels per pixel).")
    min_valid: float = setting(0.5, "Minimum share of valid image pixels in a tile.")
    blocks: int = setting(4, "Checkerboard blocks per side for the train/validation split.")
    val_parity: str = setting("odd", "Validation blocks: row block + column block odd (or even).",
                              choices=("odd", "even"))
    max_tiles: int = setting(50000, "Cap on training tiles of the memory pipeline (the stream has none).")
    data_pipeline: str = setting("stream", "stream: windows read from the stack every epoch (bounded memory, every "
                                 "labelled window reachable); memory: tiles cut once into memory (at most max_tiles).",
                                 choices=("stream", "memory"))
    samples_per_epoch: int | None = setting(None, "stream: windows drawn per epoch (default: every training window "
                                            "once per epoch).")
    val_samples: int | None = setting(20000, "stream: validation windows scored each epoch, a fixed sample drawn "
                                      "once (the validation map scores every validation block); null: all of them "
                                      "(a 10x scene's 139,772 cost 70x a 2,000-window epoch).")
    class_balance: float = setting(0.0, "stream: draw a window of a class with n windows with probability ~ "
                                   "n^-class_balance (0: as labelled, 0.5: square-root, 1: every class equally).")
    window_cache_mb: float = setting(256, "stream: bound of each data process's cache of decoded chunks (MB).")
    arch: str | None = setting(None, "Backbone; default camnet-xs (mapped best on the NC sample, ~1/20 of "
                               "resnet18's cost), or the weights' own with --weights/--init-from.", choices=ARCH_NAMES)

    #: the arch when neither --arch nor starting weights say
    ARCH_FALLBACK = "camnet-xs"
    class_weighting: bool = setting(False, "Weight the loss by inverse class frequency.")
    calibration: str = setting("none", "macro-f1: after training, per-class logit offsets chosen on training pixels "
                               "to raise macro-F1 (rare classes mapped more often); none: the model as trained.",
                               choices=("macro-f1", "none"))
    calibration_max_loss: float = setting(0.01, "The most overall accuracy (share of training pixels) the "
                                          "calibration may give up for macro-F1.")
    label_offset: str | list = setting("check", "Labels vs imagery: check | auto (score in the labels' frame) | "
                                       "none | [dy, dx].")
    pixel_loss: float = setting(1.0, "Weight of per-pixel supervision of the CAM logits (0: tile labels only).")
    ema_decay: float = setting(0.0, "> 0 (e.g. 0.998): the bundle gets a moving average of the weights.")
    cutmix: float = setting(0.0, "Probability of CutMix per batch (a rectangle of another tile pasted in).")
    predict_tta: bool = setting(False, "Maps average each tile over its 8 flips/quarter turns (8x model cost).")
    predict_overlap: float | None = setting(None, "Window overlap of maps (default: window maps 1 - footprint / 2, "
                                            "at most 0.875; dense maps and footprint 1: 0.5).")

    def check(self) -> None:
        super().check()
        self.images = as_list(self.images)
        if not self.images:
            raise ConfigError("no images given: pass --images PATH (or `images:` in the config file)")
        paths = self.labels if isinstance(self.labels, list | tuple) else [self.labels]
        if self.labels and not all(isinstance(p, str | os.PathLike) for p in paths):  # ({a: 1}: "not found")
            raise ConfigError(f"labels must be a path (a classified raster or a vector layer) or a list of paths, not "
                              f"{self.labels!r}")
        if isinstance(self.labels, list | tuple):  # several vector files (one per class, with label_field: layer)
            self.labels = self.labels[0] if len(self.labels) == 1 else [str(p) for p in self.labels]
        if not self.labels:
            raise ConfigError("no labels given: pass --labels PATH (a classified raster or a vector layer)")
        check_class_table(self.classes)
        positive_int(self, "tile_size", "epochs", "batch_size", "blocks", "max_tiles")
        if self.tile_size < 8:
            raise ConfigError("tile_size must be at least 8 pixels for a meaningful class activation map")
        if self.stride is not None:
            positive_int(self, "stride")
        if isinstance(self.bands, str):
            self.bands = self.bands.split(",")
        if self.arch is None and not (self.weights or self.init_from):
            self.arch = self.ARCH_FALLBACK
        if self.output is None:
            self.output = "dense" if self.pixel_loss else "window"
        in_range(self, "footprint", 0, 1, low_open=True)
        in_range(self, "pixel_loss", 0, float("inf"))
        for key in ("purity", "min_labelled", "min_valid"):
            in_range(self, key, 0, 1)
        offset = self.label_offset
        if not (offset in ("check", "auto", "none") or (isinstance(offset, list) and len(offset) == 2
                                                           and all(isinstance(v, int) for v in offset))):
            raise ConfigError(f"label_offset must be check, auto, none or [dy, dx] in pixels, not {offset!r}")
        in_range(self, "ema_decay", 0, 1, high_open=True)
        if self.samples_per_epoch is not None:
            positive_int(self, "samples_per_epoch")
        if self.val_samples is not None:
            positive_int(self, "val_samples")
        in_range(self, "class_balance", 0, 1)
        in_range(self, "calibration_max_loss", 0, 1)
        in_range(self, "window_cache_mb", 0, float("inf"))
        in_range(self, "cutmix", 0, 1)
        in_range(self, "predict_overlap", 0, 1, high_open=True, optional=True)
        if self.camat.source is None:  # cutmix needs maps of the mixed tiles: an extra forward
            self.camat.source = "fresh" if self.cutmix else "cached"
        if self.cutmix and self.camat.source == "cached" and self.regulariser == "camat":
            raise ConfigError("cutmix needs fresh class activation maps: cached maps belong to unmixed tiles "
                              "(set camat.source: fresh or cutmix: 0)")


def check_class_table(classes) -> None:
    """``classes``: ``{code: name}`` or ``{code: {name: ..., color: '#rrggbb'}}`` (a list or a number was an internal
    error after the labels were read)."""
    import re

    example = "e.g. {1: developed, 2: {name: water, color: '#1f78b4'}}"
    if not isinstance(classes, dict):
        raise ConfigError(f"classes must map the labels' class codes to names ({example}), not {classes!r}")
    for code, spec in classes.items():
        if isinstance(code, bool) or not (isinstance(code, int) or str(code).strip().lstrip("-").isdigit()):
            raise ConfigError(f"classes: {code!r} is not a class code (the integers of the labels; {example})")
        if isinstance(spec, dict):
            unknown = sorted(set(map(str, spec)) - {"name", "color"})
            if unknown:
                raise ConfigError(f"classes: class {code} has {unknown[0]!r}: give name and color only ({example})")
            color = spec.get("color")
            if color is not None and not re.fullmatch(r"#[0-9a-fA-F]{6}", str(color)):
                raise ConfigError(f"classes: class {code}'s color {color!r} is not #rrggbb (e.g. '#1f78b4'; quote it "
                                  "in YAML, where # starts a comment)")
        elif not isinstance(spec, str | int | float) or isinstance(spec, bool):
            raise ConfigError(f"classes: class {code}'s name {spec!r} is not a name ({example})")
