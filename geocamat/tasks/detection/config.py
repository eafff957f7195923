"""Settings of object detection (training and prediction): the one home of their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from geocamat.camat.config import DetectionCamatConfig
from geocamat.errors import ConfigError
from geocamat.settings import as_list, in_range, positive_int, setting
from geocamat.tasks.base import TrainSettings

#: the occlusions detection trains with (object-aware: inside the boxes)
DETECTION_REGULARISERS = ("none", "camat", "random-erasing")


@dataclass
class DetectionConfig(TrainSettings):
    """Detection training: images with boxes (Pascal VOC XML, CSV, GeoPackage/Shapefile, DOTA text)."""

    regulariser: str = setting("none", "Training-time occlusion; detection default none: object-aware CAMAT costs "
                               "8-10 points mAP@0.5 on sites never trained on (docs/bench_detection.md); camat "
                               "or random-erasing to train with one.", choices=DETECTION_REGULARISERS)
    camat: DetectionCamatConfig = setting(help="CAMAT options (camat.tau, camat.fill, camat.negatives, ...); "
                                          "detection defaults: mixed fill with texture, negatives 1.0; see "
                                          "docs/detection.md.", factory=DetectionCamatConfig)
    images: list[str] = setting(help="Image files or globs (GeoTIFF, or PNG/JPG with pixel boxes).", path=True,
                                factory=list)
    labels: list[str] = setting(help="Box files or globs: vector layers (FILE:LAYER for one layer of a "
                                 "GeoPackage), CSV, Pascal VOC .xml, COCO .json, YOLO or DOTA .txt.",
                                path=True, factory=list)
    label_field: str = setting("label", "Class field of vector box layers / CSV files ('none': every feature of a "
                                        "vector layer is one class, 'object').")
    classes: list[str] | None = setting(None, "Class names to train (default: every name in the labels).")
    bands: list | None = setting(None, "Bands to train on, in this order: 1-based numbers or names (band "
                                 "descriptions), e.g. 3,2,1 for BGR imagery and RGB weights (default: all); "
                                 "predict and evaluate read the same bands.")
    tile_size: int = setting(400, "Tile side in pixels (whole objects in most tiles).")
    epochs: int = setting(10, "Training epochs.")
    batch_size: int = setting(4, "Tiles per batch.")
    lr: float = setting(1e-3, "AdamW peak learning rate (linear warm-up, then cosine decay to 1%).")
    weight_decay: float = setting(1e-4, "AdamW weight decay.")
    lr_warmup: float = setting(0.05, "Fraction of the steps of linear learning-rate warm-up (a from-scratch "
                               "detector with AdamW diverges in its first steps without one).")
    ema_decay: float | None = setting(None, "Decay of the exponential moving average of the weights that "
                                      "validation uses and the bundle stores; 0: off; default: 1 - 10/steps "
                                      "(the last ~10% of the run), clipped to [0.9, 0.9998].")
    scale_jitter: float = setting(0.25, "Training zoom, log-uniform in [1/(1+s), 1+s], boxes scaled with it "
                                  "(object sizes vary between sites); 0: off.")
    colour_jitter: float = setting(0.1, "Training per-band contrast x U(1-c, 1+c) and brightness + U(-c, c) "
                                   "band std (illumination varies between flights); 0: off.")
    grey: float = setting(0.0, "Training probability that a tile's bands are all replaced by their mean, so that "
                          "objects are also learned from shape and texture, not colour alone (colours differ "
                          "between sites and seasons); 0: off.")
    normalise: str = setting("image", "Band normalisation: image (each image by its own band mean/std, at "
                             "training and at prediction: brightness and contrast differ between sites and "
                             "flights; measured +9 mAP@0.5 on other sites) or dataset (the training images' "
                             "mean/std, stored in the model).", choices=("image", "dataset"))
    detector: str | None = setting(None, "Detector head; default fasterrcnn, or a detector bundle's own with "
                                   "--init-from.", choices=("fasterrcnn", "retinanet", "fcos"))
    backbone: str | None = setting(None, "Backbone; default small, or the weights' own with --weights/--init-from.",
                                   choices=("tiny", "small", "resnet10", "resnet18"))
    fpn_channels: int | None = setting(None, "Feature pyramid channels; default 64 (or a detector bundle's).")
    anchor_sizes: list[int] | None = setting(None, "Anchor sizes in pixels, one per pyramid level; default: "
                                             "a detector bundle's, else from the training boxes (quantiles "
                                             "5/35/65/95% of sqrt(w*h)), so that anchors fit the objects.")
    empty_ratio: float = setting(0.1, "Tiles without objects, relative to tiles with objects.")
    labelled_area: str | None = setting(None, "Polygons (vector layer, any CRS) inside which every object is "
                                        "labelled, e.g. the plots of a partly labelled orthophoto: training sees only "
                                        "their inside (pixels outside blanked, tiles mostly outside dropped, boxes "
                                        "mostly outside left out), so unlabelled objects are not taught as "
                                        "background.", path=True)
    max_tiles: int | None = setting(None, "Cap on training tiles.")
    scene_cache_mb: float = setting(1024, "Training images whose normalised pixels (4 bytes a band) fit in this "
                                    "many MB, all together, are read once into memory; larger ones are read by "
                                    "window for every tile drawn, so memory does not grow with them; 0: always.")
    val_fraction: float = setting(0.2, "Right-hand strip of each image held out for validation.")
    val_images: list[str] | None = setting(None, "Separate validation images (instead of val_fraction).", path=True)
    val_labels: list[str] | None = setting(None, "Boxes of val_images (default: labels).", path=True)
    score_threshold: float | None = setting(None, "Predict's default score threshold stored in the model; default: "
                                            "the validation split's best-F1 threshold, else 0.3.")
    nms_iou: float = setting(0.5, "IoU of cross-tile non-maximum suppression stored in the model.")
    overlap: float = setting(0.25, "Tile overlap of predict stored in the model.")
    cam_weight: float = setting(1.0, "Weight of the auxiliary multi-label (CAM head) loss.")

    regularisers = DETECTION_REGULARISERS
    #: what the model settings left unset (None) become when no starting weights say otherwise
    MODEL_FALLBACKS = {"detector": "fasterrcnn", "backbone": "small", "fpn_channels": 64,
                       "anchor_sizes": [16, 32, 64, 128], "score_threshold": 0.3}

    def fill_model_fallbacks(self) -> None:
        """Set the architecture settings still unset to :data:`MODEL_FALLBACKS` (score_threshold stays None: it
        is chosen on the validation split; anchor_sizes too: they come from the training boxes)."""
        for key, value in self.MODEL_FALLBACKS.items():
            if key not in ("score_threshold", "anchor_sizes") and getattr(self, key) is None:
                setattr(self, key, list(value) if isinstance(value, list) else value)

    def check(self) -> None:
        super().check()
        self.images, self.labels = as_list(self.images), as_list(self.labels)
        for key in ("images", "labels"):
            if not getattr(self, key):
                raise ConfigError(f"`{key}` is required for detection training (--{key} PATH, paths or globs)")
        if isinstance(self.classes, str):
            self.classes = [self.classes]
        if isinstance(self.bands, str | int):
            self.bands = str(self.bands).split(",")
        if not isinstance(self.tile_size, int) or not 64 <= self.tile_size <= 4096:
            raise ConfigError(f"tile_size must be an integer in [64, 4096] for detection, not {self.tile_size!r}")
        positive_int(self, "epochs", "batch_size")
        if self.fpn_channels is not None:
            positive_int(self, "fpn_channels")
            if self.detector == "fcos" and self.fpn_channels % 32:  # FCOS's head normalises in 32 groups
                raise ConfigError(f"fpn_channels must be a multiple of 32 with detector fcos (its head uses 32-group "
                                  f"normalisation), not {self.fpn_channels}; e.g. --set fpn_channels=32")
        in_range(self, "empty_ratio", 0, 10)
        in_range(self, "val_fraction", 0, 0.9, high_open=True)
        in_range(self, "scene_cache_mb", 0, float("inf"))
        in_range(self, "overlap", 0, 0.9, high_open=True)
        in_range(self, "score_threshold", 0, 1, optional=True)
        in_range(self, "nms_iou", 0, 1)
        if self.max_tiles is not None:
            positive_int(self, "max_tiles")
        in_range(self, "lr_warmup", 0, 0.5)
        in_range(self, "ema_decay", 0, 1, high_open=True, optional=True)
        in_range(self, "scale_jitter", 0, 1)
        in_range(self, "colour_jitter", 0, 1)
        in_range(self, "grey", 0, 1)
        for key in ("random_share", "random_area"):
            if getattr(self.camat, key):
                raise ConfigError(f"camat.{key} is not available for detection (object-aware CAMAT); leave it at 0")


@dataclass
class PredictOptions:
    """How a detector runs over whole images (``geocamat predict``, ``geocamat evaluate``).

    ``None`` means the model's own setting (chosen at training time and recorded in its bundle).
    """

    score_threshold: float | None = setting(None, "Minimum score of a detection (default: the model's).")
    region: str | None = setting(None, "Vector AOI (any CRS; FILE:LAYER for one layer of a GeoPackage): windows "
                                       "outside it are skipped and objects whose centre is outside are dropped.")
    region_field: str | None = setting(None, "Count the objects per value of this field of --region (stands, parcels, "
                                       "districts): each object gets the value of the feature holding its centre; "
                                       "counts.csv gives objects and objects per ha.")
    bbox: tuple | None = setting(None, "Bounding box AOI: XMIN YMIN XMAX YMAX.")
    bbox_crs: str | None = setting(None, "CRS of --bbox (default: the images' CRS), e.g. EPSG:4326.")
    crs: str | None = setting(None, "CRS of detections.gpkg (default: the first image's), e.g. EPSG:4326.")
    nms_iou: float | None = setting(None, "IoU of cross-tile non-maximum suppression (default: the model's).")
    overlap: float | None = setting(None, "Tile overlap fraction (default: the model's).")
    batch_size: int = setting(4, "Tiles per forward pass.")
    device: str = setting("auto", "auto | cpu | cuda | cuda:1")
    match_iou: float = setting(0.5, "IoU above which boxes of neighbouring tiles are the same object.")
    duplicate_iou: float = setting(0.4, "Boxes that survive NMS but overlap a better box of their class by more "
                                   "than this IoU are merged into it.")
    duplicate_merge: str = setting("nms", "How near-duplicates are merged: nms (keep the best), wbf (score-weighted "
                                   "box), none.", choices=("nms", "wbf", "none"))
    tta: bool = setting(False, "Detect each tile under its 8 flips/quarter turns and fuse the boxes (8x model cost).")
    force: bool = setting(False, "Run anyway on a GeoTIFF without georeference or at a pixel size beyond 4x the "
                          "model's.")
    resume: bool = setting(False, "Continue an interrupted run into the same output folder: the windows it "
                           "finished are not run again.")
    devices: int | None = setting(None, "Processes on this machine sharing the windows (default: a launcher's, else "
                                  "1); without torchrun/srun they are started here (CPU processes, or one GPU each). "
                                  "The objects are those of one process.")
    num_nodes: int | None = setting(None, "Machines sharing the windows (> 1 needs torchrun or srun on each; the "
                                    "output folder must be on a disk they share).")

    def check(self) -> None:
        """Scores and IoUs are fractions (a threshold of 5 returned no object, silently)."""
        from geocamat.settings import in_range, positive_int

        positive_int(self, "batch_size")
        if self.score_threshold is not None:
            in_range(self, "score_threshold", 0.0, 1.0)
        for key in ("nms_iou", "match_iou", "duplicate_iou"):
            if getattr(self, key) is not None:
                in_range(self, key, 0.0, 1.0, low_open=True)
        if self.overlap is not None:
            in_range(self, "overlap", 0.0, 1.0, high_open=True)


@dataclass
class EvaluateOptions(PredictOptions):
    """How a detector is scored against reference boxes (``geocamat evaluate``)."""

    reference: list[str] = setting(help="Reference boxes (Pascal VOC XML, CSV, GeoPackage/Shapefile, COCO JSON, "
                                        "YOLO or DOTA text).", factory=list)
    reference_field: str = setting("label", "Class field of vector/CSV reference boxes.")
    class_agnostic: bool = setting(False, "Every class counts as one (e.g. a Tree model on Dead/Alive labels).")
    out: str | None = setting(None, "Keep metrics.json here.")
