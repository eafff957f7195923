"""Scene-classification folders: ``ROOT/<class>/*.jpg|png|tif`` (RSSCN7, UC Merced, AID layout).

The class of an image is the name of its folder; classes are sorted by name. :func:`split_scenes` makes a
fixed stratified split from a seed; :class:`SceneDataset` decodes and resizes every image once into memory
(700 RSSCN7 images at 64-144 px take a few MB) and serves tensors; :class:`SceneFiles` decodes each image when
it is drawn, for datasets whose decoded images do not fit in memory (memory then does not grow with them).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from geocamat.data.grey import grey_for_colour
from geocamat.errors import InputNotFoundError, InvalidLabelsError, InvalidRasterError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


@dataclass
class SceneSplit:
    """A stratified split of a scene folder.

    Attributes:
        classes: class names (folder names), sorted; the label of a class is its index here.
        train: (path, label) pairs of the training part.
        test: (path, label) pairs of the held-out part.
    """

    classes: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]


def hidden(path: Path) -> bool:
    """Whether a file or folder is hidden (``.DS_Store``, macOS's ``._x.jpg`` copies, ``.ipynb_checkpoints``):
    not one of the user's images."""
    return path.name.startswith(".")


def class_name(folder: Path) -> str:
    """A class folder's name as a class (Unicode NFC: a folder unzipped on macOS spells ``à`` as ``a`` + accent)."""
    import unicodedata

    return unicodedata.normalize("NFC", folder.name)


def list_scenes(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and all (path, label) pairs under ``root``, in a fixed (sorted) order; hidden files and folders
    are not read, and class folders without images are named in a warning.

    Raises:
        InputNotFoundError: ``root`` does not exist.
        InvalidLabelsError: no class folder with images was found.
    """
    import warnings

    from geocamat.errors import GeocamatWarning

    root = Path(root)
    if not root.is_dir():
        raise InputNotFoundError(f"scene folder {root} not found: give a folder with one sub-folder per class")
    classes, items, empty = [], [], []
    for folder in sorted((p for p in root.iterdir() if p.is_dir() and not hidden(p)), key=class_name):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not hidden(f))
        if not files:
            empty.append(folder.name)
            continue
        label = len(classes)
        classes.append(class_name(folder))
        items.extend((f, label) for f in files)
    if not classes:
        splits = [p.name for p in root.iterdir() if p.is_dir() and not hidden(p)][:3]
        hint = f" (a train/val/test layout? give {root / splits[0]})" if splits else ""
        raise InvalidLabelsError(
            f"no class folders with images in {root}: expected {root}/<class>/{{{','.join(IMAGE_SUFFIXES)}}}{hint}")
    if empty:
        warnings.warn(f"class folder(s) {', '.join(empty[:5])} of {root} hold no image directly (images in "
                      "sub-folders are not read): left out", GeocamatWarning, stacklevel=2)
    return classes, items


def split_scenes(root: str | Path, train_fraction: float = 0.5, seed: int = 0) -> SceneSplit:
    """Fixed stratified split: in each class, ``round(train_fraction * n)`` images chosen with ``seed``.

    Args:
        root: scene folder.
        train_fraction: fraction of each class for training, in (0, 1).
        seed: seed of the shuffle (the same seed gives the same split on any machine).

    Returns:
        The split; both parts are sorted by (label, path).
    """
    if not 0.0 < train_fraction < 1.0:
        raise InvalidLabelsError(f"train_fraction must be in (0, 1), got {train_fraction}")
    classes, items = list_scenes(root)
    rng = random.Random(seed)
    train, test = [], []
    for label in range(len(classes)):
        files = [it for it in items if it[1] == label]
        if len(files) < 2:
            raise InvalidLabelsError(f"class {classes[label]} of {root} has one image: a class needs at least two "
                                     "(one to train on, one held out to score); add images or remove the folder")
        order = list(range(len(files)))
        rng.shuffle(order)
        k = min(max(round(train_fraction * len(files)), 1), len(files) - 1)  # each part holds one at least
        chosen = set(order[:k])
        for i, it in enumerate(files):
            (train if i in chosen else test).append(it)
    return SceneSplit(classes, train, test)


def load_image(path: str | Path, size: int | tuple[int, int] | None = None) -> Tensor:
    """Decode an image to a float tensor (C, H, W) with values in [0, 1] (8-bit) or raw (other types).

    TIFFs go through rasterio (every band, alpha bands dropped: a 4-band RGB + NIR TIFF keeps its NIR); other
    formats through Pillow (palette, RGBA and CMYK as RGB; grey stays one band). With ``size``, the image is
    resized (antialiased bilinear).
    """
    return _as_tensor(_read_with(Path(path), _read_raster, _read_pillow), size)


def _read_with(path: Path, raster, pillow):
    """``raster(path)`` or ``pillow(path)``, whichever reads it, rasterio first for TIFFs and Pillow first for
    the rest (what :func:`load_image` and :func:`scene_header` both need).

    Raises:
        InvalidRasterError: neither can read it.
    """
    readers = (raster, pillow) if path.suffix.lower() in (".tif", ".tiff") else (pillow, raster)
    errors = []
    for read in readers:
        try:
            return read(path)
        except Exception as exc:  # noqa: BLE001 - the other reader may know the file
            errors.append(str(exc))
    raise InvalidRasterError(f"cannot read image {path}: {'; '.join(errors)}; re-export it or remove it from the "
                             "folder")


def _as_tensor(arr: np.ndarray, size: int | tuple[int, int] | None) -> Tensor:
    """(H, W[, C]) pixels as float (C, H, W): 8-bit divided by 255, other types raw; resized with ``size``."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float() / scale
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(x.shape[-2:]) != hw:
            x = F.interpolate(x[None], size=hw, mode="bilinear", antialias=True, align_corners=False)[0]
    return x


def load_window(src, window: tuple[int, int, int, int], size: int) -> tuple[Tensor, float]:
    """A window (col, row, width, height) of an open rasterio image as :func:`load_image` gives whole images
    (alpha bands dropped, 8-bit divided by 255, resized to ``size``), and the share of its pixels with data."""
    from rasterio.windows import Window

    win = Window(*window)
    arr = src.read(_image_bands(src), window=win)
    valid = float((src.dataset_mask(window=win) > 0).mean())
    return _as_tensor(np.moveaxis(arr, 0, -1), size), valid


def same_bands(images: list[Tensor], paths: list[Path], bands: int | None = None,
               source: str = "the model expects") -> tuple[list[Tensor], int]:
    """Every image with ``bands`` bands (default: the most common count; ``source``, e.g. "the model expects",
    says where ``bands`` came from in the message): (the images, how many grey ones were repeated into 3 bands).
    A grey image among colour ones is repeated (as torchvision's ``ImageFolder`` does); any other difference is
    the user's to fix.

    Raises:
        InvalidRasterError: an image with another band count that is not a grey image among RGB ones.
    """
    counts = [int(x.shape[0]) for x in images]
    target = bands or max(set(counts), key=lambda c: (counts.count(c), c))
    out, greys = [], 0
    for x, path, c in zip(images, paths, counts, strict=True):
        if c == target:
            out.append(x)
        elif grey_for_colour(c, target):
            out.append(x.expand(3, -1, -1).clone())
            greys += 1
        else:
            raise band_count_error(path, c, target, source if bands else "the others have")
    return out, greys


def band_count_error(path, count: int, target: int, source: str) -> InvalidRasterError:
    """The one-line error for a scene image with ``count`` bands where ``source`` (e.g. "the model expects")
    ``target``."""
    return InvalidRasterError(f"scene image {path} has {count} band{'s' if count != 1 else ''} but {source} "
                              f"{target}: give every image the same bands (convert or remove it)")


class SceneHeader(NamedTuple):
    """An image's bands and size as :func:`load_image` gives it, and its pixel side in metres (None when it is
    not georeferenced)."""

    bands: int
    width: int
    height: int
    metres: float | None = None


def scene_header(path: str | Path) -> SceneHeader:
    """The :class:`SceneHeader` of an image, from its header (no pixels decoded).

    Raises:
        InvalidRasterError: neither reader can open it.
    """
    return _read_with(Path(path), _raster_header, _pillow_header)


def _pillow_header(path: Path) -> SceneHeader:
    from PIL import Image

    with Image.open(path) as im:
        return SceneHeader(1 if im.mode in ("L", "I;16", "F") else 3, im.width, im.height)


def _raster_header(path: Path) -> SceneHeader:
    import rasterio

    from geocamat.preflight import pixel_metres

    with rasterio.open(path) as src:
        georeferenced = src.crs is not None and not src.transform.is_identity
        return SceneHeader(len(_image_bands(src)), src.width, src.height,
                           pixel_metres(src.crs, src.res, src.bounds) if georeferenced else None)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB") if im.mode not in ("RGB", "L", "I;16", "F") else im)


def _read_raster(path: Path) -> np.ndarray:
    import rasterio
    from rasterio.enums import ColorInterp

    with rasterio.open(path) as src:
        pixels = np.moveaxis(src.read(_image_bands(src)), 0, -1)
        if src.count == 1 and src.colorinterp[0] == ColorInterp.palette:  # a colour-mapped TIFF: its colours
            table = src.colormap(1)
            lut = np.array([table.get(i, (0, 0, 0, 0))[:3] for i in range(max(table) + 1)], np.uint8)
            pixels = lut[np.clip(pixels[..., 0], 0, len(lut) - 1)]
        return pixels


def _image_bands(src) -> list[int]:
    """The 1-based bands of an open rasterio image that hold pixels (alpha bands dropped)."""
    from geocamat.data.stack import mask_kind

    _, alpha = mask_kind(src)
    return [b + 1 for b in range(src.count) if b not in alpha]


class SceneDataset(Dataset):
    """Images of a scene folder, decoded and resized once into memory.

    Args:
        items: (path, label) pairs (e.g. ``split.train``).
        size: side in pixels of the (square) images served.
        transform: optional function applied to each image tensor (C, H, W), e.g. normalisation.
        bands: the band count every image must have (default: the most common one); see :func:`same_bands`.
        source: what gave ``bands``, for the message (e.g. "the training images have").

    Each sample is ``{"image": float (C, H, W), "label": int64 scalar, "index": int64 scalar}``, where
    ``index`` is the sample's position in ``items`` (a stable id for cached CAMAT maps).
    """

    def __init__(self, items: list[tuple[Path, int]], size: int, transform=None, bands: int | None = None,
                 source: str = "the model expects") -> None:
        if not items:
            raise InvalidLabelsError("empty scene list: nothing to load")
        self.items = list(items)
        self.size = size
        self.transform = transform
        if bands is None:  # the most common count: every image decoded first
            images, self.greys = same_bands([load_image(p, size) for p, _ in self.items],
                                            [p for p, _ in self.items], bands, source)
            self.images = torch.stack(images)
        else:  # decoded straight into one tensor: thousands of small tensors left between the freed full-size
            # decodes would fragment the heap (3,500 RSSCN7 images at 64 px: 4.1 GB of RSS instead of ~1)
            self.images, self.greys = torch.empty((len(self.items), bands, size, size)), 0
            for i, (path, _) in enumerate(self.items):
                (x,), grey = same_bands([load_image(path, size)], [path], bands, source)
                self.images[i], self.greys = x, self.greys + grey
        self.labels = torch.tensor([lab for _, lab in self.items], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return {"image": x, "label": self.labels[i], "index": torch.tensor(i, dtype=torch.long)}

    def band_stats(self) -> tuple[Tensor, Tensor]:
        """Per-band mean and standard deviation over all images, (C,) each."""
        return self.images.mean(dim=(0, 2, 3)), self.images.std(dim=(0, 2, 3)).clamp_min(1e-6)


class SceneFiles(Dataset):
    """Images of a scene folder decoded, resized and normalised when drawn: memory holds a batch, not the dataset.

    Args:
        items: (path, label) pairs.
        size: side in pixels of the (square) images served.
        mean, std: per-band normalisation.
        bands: the band count served (a grey image is repeated into 3 bands; any other count is refused when
            drawn, so check the headers first with :func:`scene_header`).

    Samples are :class:`SceneDataset`'s, normalised: ``{"image", "label", "index"}``.
    """

    def __init__(self, items: list[tuple[Path, int]], size: int, mean, std, bands: int) -> None:
        if not items:
            raise InvalidLabelsError("empty scene list: nothing to load")
        self.items, self.size, self.bands = list(items), size, bands
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.labels = torch.tensor([lab for _, lab in self.items], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        path = self.items[i][0]
        (x,), _ = same_bands([load_image(path, self.size)], [path], self.bands)
        return {"image": (x - self.mean) / self.std, "label": self.labels[i], "index": torch.tensor(i)}


def sampled_band_stats(items: list[tuple[Path, int]], size: int, bands: int, limit: int = 2000,
                       ) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over at most ``limit`` images spread evenly over ``items`` (each
    decoded at ``size``), so that the statistics of a dataset of any size cost ``limit`` decodes."""
    step = max(1, len(items) / limit)
    picked = [items[int(k * step)] for k in range(min(limit, len(items)))]
    total = torch.zeros(bands, dtype=torch.float64)
    squares = torch.zeros(bands, dtype=torch.float64)
    count = 0
    for path, _ in picked:
        (x,), _ = same_bands([load_image(path, size)], [path], bands)
        x = x.double().flatten(1)
        total += x.sum(1)
        squares += (x ** 2).sum(1)
        count += x.shape[1]
    mean = total / count
    std = (squares / count - mean ** 2).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.tolist(), std.tolist()
