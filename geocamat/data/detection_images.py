"""Images for detection: GeoTIFFs or plain PNG/JPG, read whole (detection scenes are small) or by window."""

from __future__ import annotations

import warnings

import numpy as np

from geocamat.data.boxes import ImageInfo
from geocamat.data.paths import expand_paths as _expand
from geocamat.errors import InvalidRasterError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".vrt")


def expand_paths(items: str | list[str], what: str = "image") -> list[str]:
    """Image files (paths, globs, folders of images) as strings, in argument order."""
    return [str(p) for p in _expand(items, IMAGE_SUFFIXES, what)]


def _open(path: str):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise InvalidRasterError(f"{path} cannot be read as an image ({exc.__class__.__name__})") from exc


def image_info(path: str) -> ImageInfo:
    """Size, CRS and transform of an image (CRS None for plain PNG/JPG)."""
    with _open(path) as src:
        crs = src.crs if src.crs else None
        return ImageInfo(str(path), src.width, src.height, crs, src.transform if crs else None)


def band_names(path: str) -> list[str]:
    """Band names from the file's descriptions, else ``band1``...``bandN``."""
    with _open(path) as src:
        return [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]


def read_image(path: str, window: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read an image (or a window of it, padded where it leaves the image).

    Args:
        path: image file.
        window: (col_off, row_off, width, height); None reads the whole image.

    Returns:
        (float32 (C, H, W) pixels, bool (H, W) validity: false on nodata and outside the image).
    """
    from rasterio.windows import Window

    with _open(path) as src:
        if window is None:
            window = (0, 0, src.width, src.height)
        col, row, w, h = window
        data = np.zeros((src.count, h, w), np.float32)
        valid = np.zeros((h, w), bool)
        c0, r0 = max(col, 0), max(row, 0)
        c1, r1 = min(col + w, src.width), min(row + h, src.height)
        if c1 > c0 and r1 > r0:
            arr = src.read(window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float32)
            data[:, r0 - row:r1 - row, c0 - col:c1 - col] = arr
            ok = np.ones(arr.shape[1:], bool)
            if src.nodata is not None:
                ok &= ~(arr == src.nodata).all(axis=0)
            valid[r0 - row:r1 - row, c0 - col:c1 - col] = ok
    return data, valid


def image_band_stats(path: str, max_side: int = 1024) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation of one image's valid pixels, from a read of at most ``max_side``.

    The read is decimated (nearest) so that any image, however large, costs at most ``max_side``^2 pixels a
    band; training and prediction call this same function, so an image gets the same statistics in both.
    """
    with _open(path) as src:
        scale = max(1.0, max(src.width, src.height) / max_side)
        shape = (src.count, max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        arr = src.read(out_shape=shape).astype(np.float64)
        valid = ~(arr == src.nodata).all(axis=0) if src.nodata is not None else np.ones(shape[1:], bool)
    px = arr[:, valid]
    if px.shape[1] == 0:
        raise InvalidRasterError(f"{path} holds no valid pixel")
    return px.mean(1).tolist(), np.maximum(px.std(1), 1e-6).tolist()


def normalisation(path: str, mode: str, mean: list[float], std: list[float]) -> tuple[list[float], list[float]]:
    """The (mean, std) that normalise ``path``: the model's own (``dataset``) or the image's (``image``)."""
    if mode == "image":
        return image_band_stats(path)
    if mode != "dataset":
        raise ValueError(f"unknown normalisation {mode!r}: use dataset or image")
    return mean, std


def band_stats(paths: list[str], max_pixels: int = 2_000_000) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over the valid pixels of the images (subsampled)."""
    sums = None
    for path in paths:
        data, valid = read_image(path)
        px = data[:, valid]
        if px.shape[1] > max_pixels:
            px = px[:, :: px.shape[1] // max_pixels + 1]
        px = px.astype(np.float64)
        s = np.stack([px.sum(1), (px ** 2).sum(1), np.full(px.shape[0], px.shape[1])])
        if sums is not None and sums.shape != s.shape:
            raise InvalidRasterError(f"{path} has {data.shape[0]} bands, unlike the other images")
        sums = s if sums is None else sums + s
    if sums is None or sums[2, 0] == 0:
        raise InvalidRasterError("the images hold no valid pixel")
    mean = sums[0] / sums[2]
    std = np.sqrt(np.maximum(sums[1] / sums[2] - mean ** 2, 1e-12))
    return mean.tolist(), np.maximum(std, 1e-6).tolist()
