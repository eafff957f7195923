"""Training tiles for detection: a grid of windows over each image, boxes clipped to each window.

Tiles are read from the image files when a batch asks for them (:class:`NormalisedImage`), so memory holds a
batch, not the scenes: an orthomosaic trains like a crop. Windows overlap by half a tile; a box cut by a window
edge is kept (clipped) when at least ``min_visible`` of it is inside, and dropped otherwise. Validation windows
come from a vertical strip at the right of each image that no training window touches (spatially disjoint):
training windows, and the larger windows that scale jitter reads, stay left of the strip's first column.
When no image is wide enough for a strip (a dataset of chips), whole images are held out instead.

Training augmentation keeps boxes right: one of the 8 flips / quarter turns, scale jitter (a window of
``tile / f`` pixels around the tile resized to the tile, ``f`` log-uniform in [1/(1+s), 1+s], boxes scaled
with it) and colour jitter (per band, contrast x U(1-c, 1+c) and brightness + U(-c, c) band std).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from geocamat.camat.geometry import dihedral, dihedral_boxes, random_dihedral
from geocamat.data.boxes import ImageBoxes
from geocamat.data.detection_images import ArrayImage, NormalisedImage, band_stats, normalisation


@dataclass
class Tile:
    """One training window: image index and (col_off, row_off) of its top-left corner."""

    image: int
    col: int
    row: int


def grid_offsets(length: int, tile: int, stride: int, start: int = 0, stop: int | None = None) -> list[int]:
    """Offsets of windows of ``tile`` px every ``stride`` px covering [start, stop), the last one flush."""
    stop = length if stop is None else stop
    if stop - start <= tile:
        return [start]
    offs = list(range(start, stop - tile + 1, stride))
    if offs[-1] + tile < stop:
        offs.append(stop - tile)
    return offs


def window_boxes(ib: ImageBoxes, col: int, row: int, size: int, min_visible: float = 0.5,
                 width: int | None = None, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`clip_boxes` of an image's boxes for one window, looking only at the boxes near it
    (:meth:`ImageBoxes.near`); returns (boxes in window coordinates, their indices in ``ib.boxes``)."""
    near = ib.near(col, size if width is None else width)
    clipped, kept = clip_boxes(ib.boxes[near], col, row, size, min_visible, width=width, height=height)
    return clipped, near[kept]


def clip_boxes(boxes: np.ndarray, col: int, row: int, size: int, min_visible: float = 0.5,
               width: int | None = None, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes in window coordinates, clipped; returns (boxes, index of the kept input boxes).

    Args:
        boxes: (M, 4) xyxy image pixel boxes.
        col, row: the window's top-left corner.
        size: the window's side.
        min_visible: fraction of a box's area that must be inside the window for it to be kept.
        width, height: clip to this much of the window instead (the part that holds readable pixels).
    """
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, int)
    width, height = size if width is None else width, size if height is None else height
    b = boxes - np.array([col, row, col, row], np.float32)
    c = np.clip(b, 0, [width, height, width, height])
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    vis = (c[:, 2] - c[:, 0]).clip(0) * (c[:, 3] - c[:, 1]).clip(0)
    keep = (vis >= min_visible * area) & ((c[:, 2] - c[:, 0]) >= 2) & ((c[:, 3] - c[:, 1]) >= 2)
    return c[keep].astype(np.float32), np.nonzero(keep)[0]


class DetectionTiles(Dataset):
    """Tiles of normalised images with their boxes.

    Args:
        images: the images, read by window (:class:`NormalisedImage`; a normalised float32 (C, H, W) array is
            taken as it is).
        boxes: per image, its :class:`ImageBoxes`.
        class_index: class name -> output index.
        tiles: the windows.
        tile_size: window side in pixels.
        augment: random flips and 90-degree rotations (and the jitters below).
        min_visible: fraction of a box that must be inside a window for it to be kept.
        scale_jitter: ``s``: zoom factor log-uniform in [1/(1+s), 1+s] (0: none; with ``augment`` only).
        colour_jitter: ``c``: per band contrast x U(1-c, 1+c), brightness + U(-c, c) (0: none; ``augment`` only).
        grey: probability that a tile's bands are all replaced by their mean (colour-blind tiles; ``augment`` only).
        col_limits: per image, the first column a window may not reach (the validation strip's start);
            None: the image width.
    """

    def __init__(self, images: list[NormalisedImage | np.ndarray], boxes: list[ImageBoxes], class_index: dict[str, int],
                 tiles: list[Tile], tile_size: int, augment: bool = False, min_visible: float = 0.5,
                 scale_jitter: float = 0.0, colour_jitter: float = 0.0, col_limits: list[int] | None = None,
                 grey: float = 0.0) -> None:
        self.images = [ArrayImage(im) if isinstance(im, np.ndarray) else im for im in images]
        self.boxes, self.class_index = boxes, class_index
        self.tiles, self.tile_size, self.augment, self.min_visible = tiles, tile_size, augment, min_visible
        self.scale_jitter, self.colour_jitter, self.grey = float(scale_jitter), float(colour_jitter), float(grey)
        self.col_limits = col_limits

    def __len__(self) -> int:
        return len(self.tiles)

    def _window(self, t: Tile) -> tuple[int, int, int]:
        """(col, row, side) of the source window: the tile, or with scale jitter a window around its centre."""
        s = self.tile_size
        if not (self.augment and self.scale_jitter > 0):
            return t.col, t.row, s
        r = math.log1p(self.scale_jitter)
        f = math.exp((2 * float(torch.rand(1)) - 1) * r)
        side = max(8, int(round(s / f)))
        _, h, w = self.images[t.image].shape
        limit = self.col_limits[t.image] if self.col_limits is not None else w
        col = int(round(t.col + (s - side) / 2))
        row = int(round(t.row + (s - side) / 2))
        col = min(max(0, col), max(0, limit - side))
        row = min(max(0, row), max(0, h - side))
        return col, row, side

    def __getitem__(self, i: int) -> tuple[Tensor, dict]:
        t = self.tiles[i]
        img = self.images[t.image]
        s = self.tile_size
        c, h, w = img.shape
        col, row, side = self._window(t)
        limit = self.col_limits[t.image] if self.col_limits is not None else w
        x = np.zeros((c, side, side), np.float32)
        hh, ww = max(0, min(side, h - row)), max(0, min(side, min(w, limit) - col))
        if hh and ww:  # nothing right of the validation strip's first column is read
            x[:, :hh, :ww] = img.read(col, row, ww, hh)
        ib = self.boxes[t.image]
        b, idx = window_boxes(ib, col, row, side, self.min_visible, width=ww, height=hh)
        labels = np.array([self.class_index[ib.names[j]] for j in idx], np.int64)
        image, boxes = torch.from_numpy(x), torch.from_numpy(b)
        if side != s:  # scale jitter: resize the window to the tile, boxes with it
            image = F.interpolate(image[None], size=(s, s), mode="bilinear", align_corners=False,
                                  antialias=side > s)[0]
            boxes = boxes * (s / side)
            if len(boxes):
                big = ((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)
                boxes, labels = boxes[big], labels[big.numpy()]
        if self.augment:  # one of the 8 flips/quarter turns, boxes moved with the pixels
            k = int(random_dihedral(1)[0])
            image, boxes = dihedral(image, k).contiguous(), dihedral_boxes(boxes, k, self.tile_size)
            if self.colour_jitter > 0:
                cj = self.colour_jitter
                contrast = 1 + (2 * torch.rand(c, 1, 1) - 1) * cj
                brightness = (2 * torch.rand(c, 1, 1) - 1) * cj
                image = image * contrast + brightness
            if self.grey > 0 and float(torch.rand(1)) < self.grey:
                image = image.mean(0, keepdim=True).expand_as(image).contiguous()
        return image, {"boxes": boxes, "labels": torch.from_numpy(labels)}


def collate(batch: list[tuple[Tensor, dict]]) -> tuple[Tensor, list[dict]]:
    """Stack tiles; keep targets as a list of dicts (torchvision detection convention)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def validation_split(width: int, tile_size: int, val_fraction: float) -> int:
    """The first column of an image's validation strip (``width``: no strip).

    The strip is ``val_fraction`` of the width, at least one tile; an image narrower than 2.5 tiles has
    none. Training windows (and the tile left of the strip) always fit: the strip starts at >= one tile.
    """
    if val_fraction <= 0 or width < strip_min_width(tile_size):
        return width
    return max(tile_size, width - max(tile_size, int(round(val_fraction * width))))


def strip_min_width(tile_size: int) -> int:
    """The narrowest image that gives a validation strip: 2.5 tiles."""
    return 2 * tile_size + tile_size // 2


@dataclass
class ValidationPlan:
    """Where the validation tiles come from: a strip at the right of each wide image, else whole images.

    ``splits[i]`` is image i's first strip column (its width: no strip); ``held`` the images held out whole
    (training draws no tile from them); ``kind``: ``strips``, ``images`` or ``none``; ``note`` says which, in
    one line for the run's log.
    """

    splits: list[int]
    held: set[int]
    kind: str
    note: str


def validation_plan(boxes: list[ImageBoxes], tile_size: int, val_fraction: float) -> ValidationPlan:
    """Validation strips of the images at least 2.5 tiles wide; when there is none (a dataset of small
    images, as COCO/YOLO/DOTA chips are), ``val_fraction`` of the labelled images held out whole, spread
    over the list (at least one, and at least one labelled image left for training)."""
    splits = [validation_split(b.width, tile_size, val_fraction) for b in boxes]
    if val_fraction <= 0:
        return ValidationPlan(splits, set(), "none", "validation: none (val_fraction 0)")
    strips = sum(s < b.width for s, b in zip(splits, boxes, strict=True))
    if strips:
        return ValidationPlan(splits, set(), "strips", f"validation: the right-hand {val_fraction:.0%} of {strips} "
                              f"image{'s' if strips > 1 else ''} (spatially disjoint strips)")
    labelled = [i for i, b in enumerate(boxes) if len(b.boxes)]
    if len(labelled) < 2:
        widest = max(b.width for b in boxes)
        return ValidationPlan(splits, set(), "none", (
            f"warning: no validation split: one labelled image, {widest} px wide, under the 2.5 tiles "
            f"({strip_min_width(tile_size)} px) a validation strip needs; nothing scores the model and the score "
            f"threshold is not chosen on validation. Give val_images (--set val_images=...), more images, or "
            f"--tile-size {max(32, int(widest / 2.5))}"))
    n = min(len(labelled) - 1, max(1, int(round(val_fraction * len(labelled)))))
    held = {labelled[int((k + 0.5) * len(labelled) / n)] for k in range(n)}
    return ValidationPlan(splits, held, "images", (
        f"validation: {len(held)} whole image{'s' if len(held) > 1 else ''} of {len(boxes)} (no image is "
        f"2.5 tiles wide for a strip; images that overlap others on the ground would share objects "
        f"with training: give val_images then)"))


def plan_tiles(
    boxes: list[ImageBoxes], tile_size: int, *, val_fraction: float = 0.2, empty_ratio: float = 0.1,
    max_tiles: int | None = None, seed: int = 0, min_visible: float = 0.5, plan: ValidationPlan | None = None,
) -> tuple[list[Tile], list[Tile]]:
    """Training and validation windows.

    Validation follows :func:`validation_plan`: each image wider than 2.5 tiles gives a strip at its right
    (``val_fraction`` of the width, at least one tile; see :func:`validation_split`) and training windows
    (stride half a tile) stay left of it: no training window reaches a column of the strip. When no image
    is that wide, whole images are held out. Tiles without any box are kept at ``empty_ratio`` times the
    number of tiles with boxes. ``plan``: that validation plan, when the caller has it already.

    Returns:
        (training tiles, validation tiles).
    """
    rng = random.Random(seed)
    train, val = [], []
    plan = plan or validation_plan(boxes, tile_size, val_fraction)
    for i, ib in enumerate(boxes):
        w, h = ib.width, ib.height
        split = plan.splits[i]
        if i in plan.held:
            val.extend(Tile(i, col, row) for row in grid_offsets(h, tile_size, tile_size)
                       for col in grid_offsets(w, tile_size, tile_size))
            continue
        rows = grid_offsets(h, tile_size, tile_size // 2)
        for col in grid_offsets(w, tile_size, tile_size // 2, 0, split):
            for row in rows:
                train.append(Tile(i, col, row))
        if split < w:
            for col in grid_offsets(w, tile_size, tile_size, split, w):
                for row in grid_offsets(h, tile_size, tile_size):
                    val.append(Tile(i, col, row))

    def has_boxes(t: Tile) -> bool:
        return len(window_boxes(boxes[t.image], t.col, t.row, tile_size, min_visible)[0]) > 0

    full = [t for t in train if has_boxes(t)]
    empty = [t for t in train if not has_boxes(t)]
    rng.shuffle(empty)
    train = full + empty[: int(round(empty_ratio * len(full)))]
    rng.shuffle(train)
    if max_tiles is not None and len(train) > max_tiles:
        train = train[:max_tiles]
    return train, val


def anchor_sizes_from_boxes(boxes: list[ImageBoxes], levels: int = 4,
                            quantiles: tuple[float, ...] = (0.05, 0.35, 0.65, 0.95)) -> list[int]:
    """Anchor sizes (pixels, one per pyramid level, increasing) from the training boxes.

    The sizes are quantiles of ``sqrt(w * h)`` of the boxes, spread over the levels (finest level: smallest
    objects), each at least 4 px and at least 1.25x the previous one.

    Args:
        boxes: the training images' boxes.
        levels: pyramid levels (4: strides 4, 8, 16, 32).
        quantiles: one quantile per level.
    """
    sizes = [np.sqrt(np.clip(b.boxes[:, 2] - b.boxes[:, 0], 0, None) * np.clip(b.boxes[:, 3] - b.boxes[:, 1], 0, None))
             for b in boxes if len(b.boxes)]
    qs = list(quantiles)[:levels] if len(quantiles) >= levels else list(np.linspace(0.05, 0.95, levels))
    values = np.quantile(np.concatenate(sizes), qs) if sizes else np.array([16.0 * 2**i for i in range(levels)])
    out: list[int] = []
    for v in values:
        a = max(4, int(round(float(v))))
        if out:
            a = max(a, int(math.ceil(out[-1] * 1.25)))
        out.append(a)
    return out


def _normalised(path, normalise: str, mean: list[float], std: list[float], bands: int | None):
    """An image (or a mosaic of sheets, whose statistics are pooled) normalised for training tiles."""
    from geocamat.data.image_mosaic import ImageMosaic, NormalisedMosaic

    if isinstance(path, ImageMosaic):
        if normalise == "image":
            mean, std = band_stats(path.paths, bands=bands)
        return NormalisedMosaic(path, mean, std, bands)
    return NormalisedImage(path, *normalisation(path, normalise, mean, std, bands), bands)


def open_normalised(paths: list, mean: list[float], std: list[float], normalise: str = "dataset",
                    cache_mb: float = 0, bands: int | None = None) -> list[NormalisedImage | ArrayImage]:
    """The images (paths, or :class:`ImageMosaic` of sheets), normalised per band (with ``mean``/``std``, or each
    image's own statistics when ``normalise`` is ``image``; invalid pixels become the band mean, 0).

    ``bands``: read every image as this many bands (a grey image among colour ones repeated); None: their own.
    When all of them, normalised, fit in ``cache_mb`` they are read once into memory (tiles then cost no file
    read); otherwise each is read by window whenever a tile is drawn, so memory does not grow with the scenes.
    """
    images = [_normalised(p, normalise, mean, std, bands) for p in paths]
    if sum(im.nbytes for im in images) <= cache_mb * 2**20:
        return [im.load() for im in images]
    return images
