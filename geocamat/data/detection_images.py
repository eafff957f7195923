"""Images for detection: GeoTIFFs or plain PNG/JPG, read by window (training and prediction alike), so that
memory does not grow with the image."""

from __future__ import annotations

import warnings

import numpy as np

from geocamat.data.boxes import ImageInfo
from geocamat.data.grey import grey_for_colour
from geocamat.data.paths import expand_paths as _expand
from geocamat.errors import InvalidRasterError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".vrt")


def expand_paths(items: str | list[str], what: str = "image") -> list[str]:
    """Image files (paths, globs, folders of images) as strings, in argument order."""
    return [str(p) for p in _expand(items, IMAGE_SUFFIXES, what)]


def open_image(path: str):
    """The image opened by rasterio (a plain PNG/JPG without a georeference warning); one line if it cannot be."""
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
    with open_image(path) as src:
        crs = src.crs if src.crs else None
        return ImageInfo(str(path), src.width, src.height, crs, src.transform if crs else None)


def alpha_band(src) -> int | None:
    """The 1-based alpha band of an open image (an RGBA PNG, a GeoTIFF with transparency), or None. It is a mask,
    not a band of the imagery: its zeros are nodata (a band tagged alpha that holds imagery is a band:
    :mod:`geocamat.data.alpha`)."""
    from geocamat.data.alpha import alpha_bands

    alpha = alpha_bands(src)
    return alpha[-1] + 1 if alpha else None


def band_names(path: str) -> list[str]:
    """Band names from the file's descriptions, else ``band1``...``bandN`` (an alpha band is not one)."""
    with open_image(path) as src:
        alpha = alpha_band(src)
        return [d or f"band{i + 1}" for i, d in enumerate(src.descriptions) if i + 1 != alpha]


def band_indexes(src, bands: int | tuple[int, ...] | None) -> list[int]:
    """The 1-based bands of an open image to read: all of them but an alpha band (``bands`` None or their count),
    those a selection names (``bands`` a tuple of 1-based numbers of those bands, in the model's order, e.g.
    (3, 2, 1)), or a grey image's one band repeated (a grey image among colour ones, as torchvision's
    ``ImageFolder`` does).

    Raises:
        InvalidRasterError: another band count, which only the user can fix.
    """
    alpha = alpha_band(src)
    own = [i for i in range(1, src.count + 1) if i != alpha]
    wanted = len(bands) if isinstance(bands, tuple) else bands
    if isinstance(bands, tuple) and len(own) >= max(bands):
        return [own[b - 1] for b in bands]
    if isinstance(bands, tuple) and not grey_for_colour(len(own), wanted):
        raise InvalidRasterError(f"{src.name} has {len(own)} bands but the model reads bands "
                                 f"{', '.join(map(str, bands))} of them; give images with the training bands")
    if bands is None or len(own) == wanted:
        return own
    if grey_for_colour(len(own), wanted):
        return [own[0]] * 3
    raise InvalidRasterError(f"{src.name} has {len(own)} bands where {bands} are needed; give images with the "
                             f"same bands")


def read_image(path: str, window: tuple[int, int, int, int] | None = None,
               bands: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read an image (or a window of it, padded where it leaves the image).

    Args:
        path: image file.
        window: (col_off, row_off, width, height); None reads the whole image.
        bands: read as this many bands (see :func:`band_indexes`); None: the file's own.

    Returns:
        (float32 (C, H, W) pixels, bool (H, W) validity: false on nodata and outside the image).
    """
    with open_image(path) as src:
        return _read_window(src, window, bands)


def _read_window(src, window: tuple[int, int, int, int] | None,
                 bands: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_image` from an open rasterio dataset."""
    from rasterio.windows import Window

    if window is None:
        window = (0, 0, src.width, src.height)
    col, row, w, h = window
    indexes = band_indexes(src, bands)
    data = np.zeros((len(indexes), h, w), np.float32)
    valid = np.zeros((h, w), bool)
    c0, r0 = max(col, 0), max(row, 0)
    c1, r1 = min(col + w, src.width), min(row + h, src.height)
    if c1 > c0 and r1 > r0:
        arr = src.read(indexes, window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float32)
        finite = np.isfinite(arr)
        ok = finite.all(axis=0)  # a NaN or inf pixel is nodata (0.1% of NaN pixels gave 0 objects, silently)
        if not ok.all():
            arr = np.where(finite, arr, 0.0).astype(np.float32)
        data[:, r0 - row:r1 - row, c0 - col:c1 - col] = arr
        if src.nodata is not None:
            ok &= ~(arr == src.nodata).all(axis=0)
        alpha = alpha_band(src)
        if alpha is not None:
            ok &= src.read(alpha, window=Window(c0, r0, c1 - c0, r1 - r0)) > 0
        valid[r0 - row:r1 - row, c0 - col:c1 - col] = ok
    return data, valid


class NormalisedImage:
    """An image file read window by window when asked, normalised per band; nodata and outside pixels are 0.

    Training cuts its tiles from these, so memory holds the tiles of a batch, not the scenes. Each process
    (a DataLoader worker included) opens the file once, on its first read.

    Args:
        path: image file.
        mean, std: per-band normalisation.
        bands: read as this many bands (a grey image among colour ones); None: the file's own.
    """

    def __init__(self, path: str, mean: list[float], std: list[float], bands: int | None = None) -> None:
        self.path, self.bands = str(path), bands
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        with open_image(self.path) as src:
            self.shape = (len(band_indexes(src, bands)), src.height, src.width)
        self._src, self._pid = None, None

    def read(self, col: int, row: int, width: int, height: int) -> np.ndarray:
        """The normalised float32 (C, height, width) window at (col, row), zero where it leaves the image."""
        import os

        if self._src is None or self._pid != os.getpid():
            from geocamat.data.chunks import bound_gdal_cache

            bound_gdal_cache()  # GDAL's block cache would otherwise grow with the scene (in each worker too)
            self._src, self._pid = open_image(self.path), os.getpid()
        data, valid = _read_window(self._src, (col, row, width, height), self.bands)
        x = (data - self.mean) / self.std
        x[:, ~valid] = 0
        return x

    @property
    def nbytes(self) -> int:
        """Size of the whole image normalised (float32)."""
        c, h, w = self.shape
        return 4 * c * h * w

    def load(self, rows: int = 512) -> ArrayImage:
        """The whole image normalised in memory, read ``rows`` rows at a time (peak: the image + one strip)."""
        c, h, w = self.shape
        out = np.empty(self.shape, np.float32)
        for r in range(0, h, rows):
            out[:, r:r + rows] = self.read(0, r, w, min(rows, h - r))
        self._src = None  # the file is not read again
        return ArrayImage(out)

    def __getstate__(self) -> dict:  # an open file does not travel to worker processes: each opens its own
        return {**self.__dict__, "_src": None, "_pid": None}


class ArrayImage:
    """An in-memory normalised (C, H, W) array with :class:`NormalisedImage`'s ``read`` (tests, small data)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape
        self.nbytes = array.nbytes

    def read(self, col: int, row: int, width: int, height: int) -> np.ndarray:
        c, h, w = self.shape
        x = np.zeros((c, height, width), np.float32)
        c0, r0, c1, r1 = max(col, 0), max(row, 0), min(col + width, w), min(row + height, h)
        if c1 > c0 and r1 > r0:
            x[:, r0 - row:r1 - row, c0 - col:c1 - col] = self.array[:, r0:r1, c0:c1]
        return x


def _decimated(src, max_side: int, bands: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(float64 (C, h, w) pixels, bool (h, w) validity) of an open image read at most ``max_side`` a side."""
    scale = max(1.0, max(src.width, src.height) / max_side)
    indexes = band_indexes(src, bands)
    shape = (len(indexes), max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    arr = src.read(indexes, out_shape=shape).astype(np.float64)
    valid = ~(arr == src.nodata).all(axis=0) if src.nodata is not None else np.ones(shape[1:], bool)
    finite = np.isfinite(arr)
    if not finite.all():  # NaN/inf pixels are no statistics (a NaN mean normalised every pixel to NaN)
        valid &= finite.all(axis=0)
        arr = np.where(finite, arr, 0.0)
    alpha = alpha_band(src)
    if alpha is not None:
        valid &= src.read(alpha, out_shape=shape[1:]) > 0
    return arr, valid


def image_band_stats(path: str, max_side: int = 1024, bands: int | None = None) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation of one image's valid pixels, from a read of at most ``max_side``.

    The read is decimated (nearest) so that any image, however large, costs at most ``max_side``^2 pixels a
    band; training and prediction call this same function, so an image gets the same statistics in both.
    """
    with open_image(path) as src:
        arr, valid = _decimated(src, max_side, bands)
    px = arr[:, valid]
    if px.shape[1] == 0:
        raise InvalidRasterError(f"{path} holds no valid pixel")
    return px.mean(1).tolist(), np.maximum(px.std(1), 1e-6).tolist()


def normalisation(path: str, mode: str, mean: list[float], std: list[float],
                  bands: int | None = None) -> tuple[list[float], list[float]]:
    """The (mean, std) that normalise ``path`` (read as ``bands`` bands): the model's own (``dataset``) or the
    image's (``image``)."""
    if mode == "image":
        return image_band_stats(path, bands=bands)
    if mode != "dataset":
        raise ValueError(f"unknown normalisation {mode!r}: use dataset or image")
    return mean, std


def band_stats(paths: list[str], max_side: int = 1024, bands: int | None = None) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over the valid pixels of the images.

    Each image is read decimated to at most ``max_side`` a side (memory does not grow with it) and weighs by
    its full pixel count, so a large image counts as much as its area, as when every pixel is read.
    """
    sums, empty = None, []
    for path in paths:
        with open_image(path) as src:
            arr, valid = _decimated(src, max_side, bands)
            full = src.width * src.height
        px = arr[:, valid]
        if px.shape[1] == 0:
            empty.append(str(path))
            continue
        weight = full * (px.shape[1] / valid.size)  # the image's valid pixels, estimated from the read
        s = np.stack([px.mean(1) * weight, (px ** 2).mean(1) * weight, np.full(px.shape[0], weight)])
        if sums is not None and sums.shape != s.shape:
            raise InvalidRasterError(f"{path} has {arr.shape[0]} bands, unlike the other images")
        sums = s if sums is None else sums + s
    if sums is None or sums[2, 0] == 0:
        raise InvalidRasterError(f"no valid pixels in {', '.join(empty)}: every pixel is nodata; check the file's "
                                 "nodata value (gdalinfo) or give other images")
    mean = sums[0] / sums[2]
    std = np.sqrt(np.maximum(sums[1] / sums[2] - mean ** 2, 1e-12))
    return mean.tolist(), np.maximum(std, 1e-6).tolist()
