"""Settings of scene classification from a folder per class: the one home of their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from geocamat.errors import ConfigError
from geocamat.settings import in_range, positive_int, setting
from geocamat.tasks.base import ClassifierSettings
from geocamat.tasks.landuse.config import ARCH_NAMES


@dataclass
class SceneConfig(ClassifierSettings):
    """Scene classification: one label per image (RSSCN7 / UC Merced layout: a sub-folder per class)."""

    scenes: str | None = setting(None, "A folder with one sub-folder of images per class.", path=True)
    image_size: int = setting(64, "Images are resized to this side (pixels).")
    train_fraction: float = setting(0.5, "Stratified share of each class used for training.")
    cache_mb: float = setting(2048, "Scenes whose decoded images (4 bytes a band and pixel at image_size) fit in "
                              "this many MB are decoded once into memory; more are decoded as they are drawn "
                              "(with num_workers processes), so memory does not grow with the dataset.")
    pixel_metres: float | None = setting(None, "Pixel size in metres of training images without a georeference "
                                         "(e.g. 0.3 for UC Merced), recorded so that predict cuts georeferenced "
                                         "scenes into cells of the same ground; georeferenced images give theirs.")
    arch: str | None = setting(None, "Backbone; default resnet18, or the weights' own with --weights/--init-from.",
                               choices=ARCH_NAMES)

    #: the arch when neither --arch nor starting weights say
    ARCH_FALLBACK = "resnet18"

    def check(self) -> None:
        super().check()
        if not self.scenes:
            raise ConfigError("no scene folder given: pass --scenes DIR (one sub-folder of images per class)")
        positive_int(self, "image_size", "epochs", "batch_size")
        in_range(self, "cache_mb", 0, float("inf"))
        in_range(self, "pixel_metres", 0, float("inf"), low_open=True, optional=True)
        if self.arch is None and not (self.weights or self.init_from):
            self.arch = self.ARCH_FALLBACK
        in_range(self, "train_fraction", 0, 1, low_open=True, high_open=True)
