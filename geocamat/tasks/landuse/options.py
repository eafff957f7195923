"""Options of land-use prediction and evaluation: the one home of their defaults.

``None`` means "the model's own setting" (recorded in its bundle at training time).
"""

from __future__ import annotations

from dataclasses import dataclass

from geocamat.inference.tta import DEFAULT_TTA_VIEWS, TTA_VIEWS
from geocamat.settings import setting


@dataclass
class PredictOptions:
    """How a land-use model maps a region (``geocamat predict``)."""

    region: str | None = setting(None, "Vector AOI (any CRS; FILE:LAYER for one layer of a GeoPackage); windows "
                                 "outside it are skipped.")
    region_field: str | None = setting(None, "One output per value of this AOI field (subfolders; a detection model "
                                       "counts its objects per value instead: counts.csv).")
    bbox: tuple | None = setting(None, "Bounding box AOI: XMIN YMIN XMAX YMAX.")
    bbox_crs: str | None = setting(None, "CRS of --bbox (default: the images' CRS), e.g. EPSG:4326.")
    crs: str | None = setting(None, "Output CRS (default: the input's).")
    res: float | None = setting(None, "Output pixel size in output CRS units (default: the input's).")
    overlap: float | None = setting(None, "Window overlap fraction (default: the model's, at least 0.75 for dense "
                                    "models; 0.125 with --window).")
    tta: bool | None = setting(None, "Average each pixel over the 8 flips/quarter turns of its tiles (default: the "
                               "model's).")
    tta_views: str = setting(DEFAULT_TTA_VIEWS, "TTA: each tile through one of the 8 views, spread so every pixel gets "
                             "all 8 (the cost of no TTA; needs overlap >= 0.75), or all 8 views per tile (8x).",
                             choices=TTA_VIEWS)
    window: int | None = setting(None, "Dense-output models: run the fully convolutional model on windows of this "
                                 "size (px) instead of training-size tiles; faster, maps differ slightly.")
    batch_size: int = setting(64, "Tiles per forward pass.")
    workers: int | None = setting(None, "Reader threads (default: min(8, CPU count)).")
    device: str = setting("auto", "auto | cpu | cuda | cuda:1")
    resume: bool = setting(False, "Continue an interrupted run in the same output folder.")
    probabilities: bool = setting(False, "Also write probabilities.tif (one band per class).")
    vector: bool = setting(True, "Write landuse.gpkg (polygons of the classes).")
    force: bool = setting(False, "Map anyway an image without georeference or at a pixel size beyond 4x the "
                          "model's.")
    nodata: float | None = setting(None, "Value of the images' fill pixels, replacing what the files declare "
                                   "(default: the model's, if it was trained with one, else the files').")
    require_all_bands: bool = setting(False, "Map pixels where some bands are nodata as nodata (else they are "
                                      "classified from the other bands, counted in report.json and shown in "
                                      "partial_bands.tif).")
    min_polygon_pixels: int = setting(4, "Minimum mapping unit: regions of the map smaller than this many pixels "
                                      "are merged into their largest neighbour before the polygons (0: keep all).")
    min_area: float | None = setting(None, "Minimum mapping unit in hectares (e.g. 0.5), as land-cover "
                                     "specifications give it: converted to pixels of the map (at its centre for a "
                                     "longitude/latitude map) in place of --min-polygon-pixels.")
    devices: int | None = setting(None, "Processes on this machine sharing the map (default: a launcher's, else 1); "
                                  "without torchrun/srun they are started here: CPU processes, or one GPU each. "
                                  "The map is identical to one process's.")
    num_nodes: int | None = setting(None, "Machines sharing the map (> 1 needs torchrun or srun on each; the output "
                                    "folder must be on a disk they share).")

    def check(self) -> None:
        """Validate the values a user can get wrong."""
        import math

        from geocamat.errors import ConfigError

        if self.res is not None and not (isinstance(self.res, int | float) and math.isfinite(self.res)
                                         and self.res > 0):
            raise ConfigError(f"--res must be a pixel size > 0 in the output CRS's units, not {self.res}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be >= 1 (reader threads), not {self.workers}")
        if self.min_polygon_pixels < 0:
            raise ConfigError(f"--min-polygon-pixels must be >= 0, not {self.min_polygon_pixels}")
        if self.min_area is not None and self.min_area <= 0:
            raise ConfigError(f"--min-area is in hectares and must be > 0, not {self.min_area}")
        if self.min_area is not None and self.min_polygon_pixels != type(self)().min_polygon_pixels:
            raise ConfigError("give the minimum mapping unit once: --min-area (hectares) or --min-polygon-pixels")


#: the minimum mapping unit of maps made without PredictOptions (validation maps, evaluate): the same as predict's
MIN_MAPPING_UNIT = PredictOptions().min_polygon_pixels


@dataclass
class EvaluateOptions:
    """How a land-use map is scored against a reference (``geocamat evaluate``)."""

    reference: str | None = setting(None, "Reference land cover (any CRS): a raster of the model's class codes, "
                                    "or polygons/points with reference_field.")
    reference_field: str | None = setting(None, "Class field of a vector reference: the model's codes or names.")
    blocks: int | None = setting(None, "Score only validation blocks of an N x N checkerboard.")
    parity: str = setting("odd", "Which checkerboard blocks are scored.", choices=("odd", "even"))
    map: str | None = setting(None, "Score this existing landuse.tif instead of mapping the images again.")
    mask: str | None = setting(None, "Score only inside this mask: a raster (non-zero inside) or polygons (a study "
                                     "area), any CRS.")
    out: str | None = setting(None, "Keep the map and metrics.json here (default: a temporary folder).")
    overlap: float | None = setting(None, "Window overlap fraction (default: the model's).")
    tta: bool | None = setting(None, "Test-time augmentation (default: the model's).")
    tta_views: str = setting(DEFAULT_TTA_VIEWS, "TTA views: spread over the overlapping tiles, or all 8 per tile (8x).",
                             choices=TTA_VIEWS)
    window: int | None = setting(None, "Dense-output models: map with windows of this size (px).")
    label_offset: str = setting("none", "Score map[i+DY, j+DX] against reference[i, j]: none, model (the offset "
                                "training found) or DY,DX.")
    device: str = setting("auto", "auto | cpu | cuda")
    force: bool = setting(False, "Map anyway images at a pixel size beyond 4x the model's.")

    def check(self) -> None:
        """Validate the values a user can get wrong (--blocks 0 scored every pixel, 500 a 48 px map's)."""
        from geocamat.errors import ConfigError

        if self.blocks is not None and (not isinstance(self.blocks, int) or self.blocks < 1):
            raise ConfigError(f"--blocks must be >= 1 (a checkerboard of N x N blocks; leave it out to score every "
                              f"pixel), not {self.blocks}")
