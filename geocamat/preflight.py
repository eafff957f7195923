"""Checks before long work: the output location, every input's blocks, the model's resolution, checkpoints.

Each check costs milliseconds to a second and raises the :mod:`geocamat.errors` exception a user would
otherwise meet after an epoch or half a map: a read-only or full output disk, a truncated GeoTIFF (its
first and last blocks are read), an image on a pixel size far from the model's, a checkpoint folder that
cannot take a checkpoint.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

from geocamat.errors import (
    ConfigError,
    CorruptInputError,
    GeocamatWarning,
    InvalidRasterError,
    OutputLocationError,
)
from geocamat.failures import FULL_DISK_BYTES, is_gdal, one_line

#: Beyond this ratio between an image's pixel size and the model's training pixel size, predict refuses
#: (without --force): the model sees objects 4x larger or smaller than it learnt them.
MAX_RESOLUTION_RATIO = 4.0
#: Free space asked for beyond the estimate (temporary pieces, overviews, polygons).
SPACE_MARGIN = 1.5
MB = 1024 * 1024


def _size(n: int) -> str:
    """Bytes in words: 12 kB, 340 MB, 1.5 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(out_dir: str | os.PathLike, need_bytes: int = 0) -> None:
    """Raise unless a file can be created where ``out_dir`` is (or will be) and its disk has ``need_bytes`` free.

    Raises:
        OutputLocationError: read-only, no permission, not a folder, or not enough free space.
    """
    out_dir = Path(out_dir)
    base = _existing_ancestor(out_dir)
    if not base.is_dir():
        raise OutputLocationError(f"{base} is a file, so {out_dir} cannot be created: choose another --out")
    try:
        fd, probe = tempfile.mkstemp(prefix=".geocamat-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputLocationError(f"cannot write in {base} ({exc.strerror}): choose an --out folder you can "
                                  "write") from exc
    free = shutil.disk_usage(base).free
    need = int(need_bytes * SPACE_MARGIN)
    if need > free:
        raise OutputLocationError(f"not enough free space for {out_dir}: about {_size(need)} needed, "
                                  f"{_size(free)} free on its disk: free some space or choose another --out")


def _missing_source(path) -> str | None:
    """The first source file a VRT names that does not exist (None: not a VRT, or all there)."""
    import xml.etree.ElementTree as ET

    if Path(path).suffix.lower() != ".vrt":
        return None
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None
    for element in root.iter("SourceFilename"):
        name = (element.text or "").strip()
        source = Path(path).parent / name if element.get("relativeToVRT") == "1" else Path(name)
        if name and not name.startswith("/vsi") and not source.exists():
            return str(source)
    return None


def refuse_bandless(src, path) -> None:
    """A file GDAL opens without raster bands (a netCDF or HDF container of subdatasets) in one line."""
    if src.count:
        return
    subs = list(src.subdatasets)
    if subs:
        shown = ", ".join(subs[:3]) + (f" and {len(subs) - 3} more" if len(subs) > 3 else "")
        raise InvalidRasterError(f"{path} holds no raster bands but {len(subs)} subdatasets ({shown}): convert the "
                                 f"ones to use to a GeoTIFF (gdal_translate '{subs[0]}' out.tif) and give that")
    raise InvalidRasterError(f"{path} holds no raster bands: give a raster image (GeoTIFF, VRT, ...)")


def check_blocks(path: str | os.PathLike) -> None:
    """Open a raster and read its first and last blocks (all bands): catches truncated and corrupt files.

    Raises:
        CorruptInputError: GDAL cannot open the file or read one of the two blocks.
    """
    import rasterio

    try:
        with rasterio.open(path) as src:
            refuse_bandless(src, path)
            bh, bw = src.block_shapes[0]
            last = src.block_window(1, math.ceil(src.height / bh) - 1, math.ceil(src.width / bw) - 1)
            src.read(window=src.block_window(1, 0, 0))
            src.read(window=last)
    except Exception as exc:
        if not is_gdal(exc):
            raise
        cause = exc.__cause__ or exc
        missing = _missing_source(path)
        if missing:  # a VRT (or a file with sidecar sources) that points at a file that is not there
            raise CorruptInputError(f"{path} refers to {missing}, which does not exist: move it back, or rebuild "
                                    f"{Path(path).name} (gdalbuildvrt) from the files where they are now") from exc
        raise CorruptInputError(f"{path} is broken: GDAL cannot read its blocks ({one_line(str(cause), 200)}); "
                                "the file is truncated or corrupt: "
                                "re-download or re-export it") from exc


def check_inputs(paths: Iterable[str | os.PathLike]) -> None:
    """:func:`check_blocks` on every file, and no complex values (a SAR SLC was mapped from its real part)."""
    import rasterio

    for path in paths:
        check_blocks(path)
        try:
            with rasterio.open(path) as src:
                dtype = src.dtypes[0] if src.count else ""
        except rasterio.errors.RasterioIOError:
            continue  # not a raster: said where it is read
        if dtype.startswith("complex"):
            raise InvalidRasterError(f"{path} holds complex values ({dtype}, e.g. a SAR SLC): geocamat reads real "
                                     "bands; write the amplitude first (gdal_translate -ot Float32 in.tif out.tif "
                                     "keeps the real part; gdal_calc.py --calc 'abs(A)' the amplitude)")


def pixel_metres(crs, res: tuple[float, float], bounds=None) -> float | None:
    """The mean pixel side in metres of a grid (``crs``: anything rasterio takes; None when it has none).

    Geographic CRSs are converted at the latitude of ``bounds`` (in that CRS), or at the equator.
    """
    if crs is None or res is None:
        return None
    from rasterio.crs import CRS

    crs = CRS.from_user_input(crs)
    side = (abs(res[0]) + abs(res[1])) / 2
    if crs.is_geographic:
        lat = (bounds[1] + bounds[3]) / 2 if bounds is not None else 0.0
        return side * 111_320 * math.sqrt(max(math.cos(math.radians(lat)), 0.05))  # mean of x and y scale
    from geocamat.data.crs import metres_per_unit

    factor = metres_per_unit(crs)
    return side * (factor if factor is not None else 1.0)


def check_resolution(bundle, path: str | os.PathLike, res: float | None = None, force: bool = False,
                     res_option: bool = True, res_crs=None) -> float | None:
    """Compare an image's pixel size (or the output ``res``, in ``res_crs``'s units: the output CRS, by default
    the image's) with the model's; refuse beyond 4x unless ``force`` (``res_option``: the command can resample
    with ``--res``, so the message offers it).

    Returns:
        The ratio image / model (None when either has no georeference).

    Raises:
        ConfigError: the ratio is beyond :data:`MAX_RESOLUTION_RATIO` (either way) and ``force`` is false.
    """
    import rasterio

    if not bundle.resolution or not bundle.crs:
        return None
    with rasterio.open(path) as src:
        if src.crs is None:
            return None
        bounds = src.bounds
        image_m = output_pixel_metres(src, res, res_crs) if res else pixel_metres(src.crs, src.res, bounds)
        model_m = pixel_metres(bundle.crs, tuple(bundle.resolution), _bounds_in(bundle.crs, src.crs, bounds))
    if not image_m or not model_m:
        return None
    ratio = image_m / model_m
    if max(ratio, 1 / ratio) <= MAX_RESOLUTION_RATIO:
        return ratio
    how = f"{ratio:.1f}x coarser" if ratio > 1 else f"{1 / ratio:.1f}x finer"
    what = f"--res {res:g} gives" if res else f"{path} has"
    message = (f"{what} {image_m:.3g} m pixels, {how} than the model's training imagery ({model_m:.3g} m): "
               "the model would see objects at a scale it never learnt")
    if not force:
        fix = ("give a --res nearer the model's" if res else "resample the imagery (gdalwarp -tr)"
               + (" or give --res" if res_option else ""))
        raise ConfigError(f"{message}; {fix}, or pass --force to map anyway")
    warnings.warn(message, GeocamatWarning, stacklevel=2)
    return ratio


def output_pixel_metres(src, res: float, res_crs=None) -> float | None:
    """The side in metres of an output pixel of ``res`` units of ``res_crs`` (default: the open image's CRS)
    over the image ``src``."""
    from geocamat.inference.grid import crs_wkt

    crs = crs_wkt(res_crs) if res_crs else src.crs
    return pixel_metres(crs, (res, res), _bounds_in(crs, src.crs, src.bounds) if res_crs else src.bounds)


def _bounds_in(dst_crs, src_crs, bounds):
    from rasterio.warp import transform_bounds

    try:
        return transform_bounds(src_crs, dst_crs, *bounds)
    except Exception:  # noqa: BLE001 - only used to pick a latitude
        return None


def refuse_unrectified(src, path) -> None:
    """An image georeferenced by ground control points or RPCs (a raw satellite or scanned product), not by a
    geotransform, in one line that says how to orthorectify it."""
    from geocamat.data.crs import crs_label

    gcps, gcp_crs = src.gcps
    name = Path(str(path)).name
    if src.rpcs is not None:
        raise InvalidRasterError(f"{path} is georeferenced by RPCs, not by a geotransform: orthorectify it first "
                                 f"(gdalwarp -rpc -t_srs EPSG:XXXX -tr RES RES {name} ortho.tif; with a DEM: -to "
                                 "RPC_DEM=dem.tif) and give that")
    if gcps:
        crs = f" in {crs_label(gcp_crs)}" if gcp_crs is not None else ""
        raise InvalidRasterError(f"{path} is georeferenced by {len(gcps)} ground control points{crs}, not by a "
                                 f"geotransform: warp it first (gdalwarp -t_srs EPSG:XXXX -tr RES RES {name} "
                                 "warped.tif) and give that")


def check_georeferenced(paths: Iterable[str | os.PathLike], force: bool = False) -> None:
    """Refuse GeoTIFFs without georeference (they would be mapped in pixel coordinates) unless ``force``.

    Plain PNG/JPEG images carry no georeference by nature and are accepted, with one warning that the
    outputs are in pixel coordinates.
    """
    import rasterio

    plain = []
    for path in paths:
        with rasterio.open(path) as src:
            if src.crs is not None:
                continue
            refuse_unrectified(src, path)
            if src.driver != "GTiff":
                plain.append(str(path))
                continue
        message = f"{path} has no georeference (no CRS): the outputs would be in pixel coordinates"
        if not force:
            raise InvalidRasterError(f"{message}; assign one (gdal_edit.py -a_srs EPSG:XXXX -a_ullr ...) or pass "
                                     "--force to map it in pixel coordinates")
        warnings.warn(message, GeocamatWarning, stacklevel=2)
    if plain:
        more = f" and {len(plain) - 1} more" if len(plain) > 1 else ""
        warnings.warn(f"{plain[0]}{more} {'have' if more else 'has'} no georeference: the outputs are in pixel "
                      "coordinates "
                      "(x = column, y = -row)", GeocamatWarning, stacklevel=2)


def check_window(paths: Iterable[str | os.PathLike], window: int) -> None:
    """Refuse a ``--window`` larger than the mosaic of the inputs (it would only pad, at a cost of window squared).

    Raises:
        ConfigError: the window exceeds the width and height of the inputs' union (in the first one's pixels).
    """
    import rasterio

    side, box, first = 0, None, None
    for path in paths:
        with rasterio.open(path) as src:
            side = max(side, src.width, src.height)
            if first is None:
                first = (src.crs, src.res)
            if src.crs == first[0]:
                b = src.bounds
                box = b if box is None else (min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]),
                                             max(box[3], b[3]))
    if box is not None:
        side = max(side, int((box[2] - box[0]) / first[1][0]), int((box[3] - box[1]) / first[1][1]))
    if window > side:
        raise ConfigError(f"--window {window} is larger than the scene (at most {side} px a side): use --window "
                          f"{side} or less, or leave it out")


def raster_pixels(paths: Iterable[str | os.PathLike]) -> int:
    """Pixels of all the rasters together (width x height each)."""
    import rasterio

    total = 0
    for path in paths:
        with rasterio.open(path) as src:
            total += src.width * src.height
    return total


def map_bytes(pixels: int, n_classes: int, probabilities: bool = False) -> int:
    """A generous size of a land-use map's outputs: class map, confidence, CAM (+ probabilities), uncompressed."""
    per_pixel = 2 + 4 + 4 + (4 * n_classes if probabilities else 0) + 1  # + polygons and pieces, roughly
    return int(pixels * per_pixel)


def check_checkpoint(folder: str | os.PathLike, module, shown: str | os.PathLike | None = None) -> None:
    """Save ``module``'s state into ``folder`` once (then delete it), and ask for 3x its size free.

    Args:
        folder: where checkpoints will go (created).
        module: the model (anything with ``state_dict()``).
        shown: the folder to name in messages (the run's ``--out`` rather than its hidden stage).

    Raises:
        OutputLocationError: the folder cannot take a checkpoint (read-only, no permission, disk full).
    """
    import torch

    folder = Path(folder)
    probe = folder / ".geocamat-checkpoint-probe.pt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(module.state_dict(), probe)
        size = probe.stat().st_size
    except (OSError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(str(exc), 120)
        free = shutil.disk_usage(_existing_ancestor(folder)).free
        if free < FULL_DISK_BYTES or "unexpected pos" in str(exc):  # torch's zip writer on a short write
            reason = f"the disk is full: {_size(free)} free"
        raise OutputLocationError(f"cannot save a checkpoint for {shown or folder} ({reason}): choose an --out on "
                                  "a disk with room that you can write") from exc
    finally:
        probe.unlink(missing_ok=True)
    free = shutil.disk_usage(folder).free
    if 3 * size > free:
        raise OutputLocationError(f"not enough free space for checkpoints of {shown or folder}: about "
                                  f"{_size(3 * size)} needed, {_size(free)} free: free some space or choose another "
                                  "--out")


def before_predict(bundle, images, out_dir: str | os.PathLike, *, res: float | None = None, force: bool = False,
                   probabilities: bool = False, window: int | None = None, res_crs=None) -> list[Path]:
    """Every check ``geocamat predict`` makes before mapping: inputs readable, georeferenced, at the model's
    pixel size (within 4x, unless ``force``; ``res`` in ``res_crs``'s units, the output CRS), and room for the
    outputs.

    Returns:
        The image files.
    """
    if bundle.task == "detection":
        from geocamat.data.detection_images import expand_paths

        paths = [Path(p) for p in expand_paths(list(images), "image")]
    else:
        from geocamat.data.stack import resolve_inputs

        paths = resolve_inputs(list(images))
    check_inputs(paths)
    if window:
        check_window(paths, window)
    check_georeferenced(paths, force=force)
    for path in paths if bundle.task == "detection" else paths[:1]:  # detection runs each image on its own grid
        check_resolution(bundle, path, res=res, force=force, res_option=bundle.task != "detection", res_crs=res_crs)
    need = 0
    if bundle.task != "detection":
        pixels = raster_pixels(paths)
        if res:
            import rasterio

            with rasterio.open(paths[0]) as src:
                scale = pixel_metres(src.crs, src.res, src.bounds) / (output_pixel_metres(src, res, res_crs)
                                                                      or 1.0) if src.crs else 1.0
            pixels = int(pixels * scale**2)
        need = map_bytes(pixels, len(bundle.classes), probabilities)
    check_writable(out_dir, need)
    return paths


def check_class_map(path: Path) -> None:
    """A ``--map`` to score or sample holds class codes (an image or confidence.tif was "scored": OA None on 0
    pixels)."""
    import numpy as np
    import rasterio

    from geocamat.data.labels import check_class_bands

    try:
        with rasterio.open(path) as src:
            dtype = src.dtypes[0]
            if not np.issubdtype(np.dtype(dtype), np.integer):
                raise InvalidRasterError(f"{path} holds {dtype} values, not class codes: give a class map "
                                         "(landuse.tif from geocamat predict)")
            check_class_bands(src, path, "map")  # an RGB image or a rendering is not a class map
    except rasterio.errors.RasterioIOError:
        return  # not a raster: check_inputs says so in its words


def before_evaluate(images, map_path, reference, mask, bundle=None, force: bool = False) -> None:
    """Every check ``geocamat evaluate`` makes first: each input raster opened and its first/last blocks read;
    images to map at a pixel size within 4x of the ``bundle``'s (unless ``force``)."""
    from geocamat.data.stack import RASTER_SUFFIXES, resolve_inputs

    if images and map_path:  # the images were silently ignored
        raise ConfigError("give IMAGES to map and score, or --map to score an existing map, not both")
    paths: list[Path] = resolve_inputs(list(images)) if images and not map_path else []
    for path in (map_path, reference, mask):  # other files get their own messages where they are read
        if path and Path(path).is_file() and Path(path).suffix.lower() in RASTER_SUFFIXES:
            paths.append(Path(path))
    check_inputs(paths)
    if map_path and Path(map_path).is_file():  # (after check_inputs: a truncated map is said to be truncated)
        check_class_map(Path(map_path))
    if bundle is not None and images and not map_path:
        for path in paths if bundle.task == "detection" else paths[:1]:
            check_resolution(bundle, path, force=force, res_option=False)  # evaluate has no --res
