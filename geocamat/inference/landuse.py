"""Land-use prediction over a region: the streaming inference engine behind ``geocamat predict``.

Data flow (DESIGN.md, "Predict"): the images become one mosaic through the TorchGeo index; the output
grid covers the region; the grid is cut into *units* (a band of rows of a column block). For each column
block, a pool of reader threads decodes large block-aligned row chunks ahead of the device; tiles are cut
on the device (``unfold``), classified in batches (bf16 + channels_last on CUDA), and their per-pixel
probabilities and CAMs are blended with smooth (Hann) weights into an accumulator one band tall. When a
band is done its rows are final: they are written as small tiled GeoTIFF pieces and polygonised by a
writer thread, and the overlap rows that the next band still adds to (the *carry*) are saved. Memory
therefore depends on the unit size, never on the scene size. A manifest lists finished units, so an
interrupted run resumes where it stopped and gives the same result. At the end, VRT mosaics of the pieces
become Cloud-Optimised GeoTIFFs, the polygons are dissolved across unit seams into one GeoPackage layer,
and everything is renamed into place at once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocamat.bundle import Bundle
from geocamat.errors import BundleError, ConfigError, InvalidRasterError, OutputExistsError
from geocamat.inference.grid import OutputGrid, bbox_geometry, crs_wkt, load_region, snap_grid, tile_positions

#: Rows of one unit (rounded up to a multiple of the tile stride); bounds the memory of a run.
BAND_ROWS = 1024
#: Columns of one column block (rounded up to a multiple of the tile stride).
BLOCK_COLS = 4096
#: Writer threads at most (one per 4 cores). Each holds a finished unit's results and its temporaries
#: (~100 MB at the default unit size) and one more unit waits for a free writer, so this bounds the memory of
#: results in flight: with 8 writers a 4096^2 scene (4 units) never filled the pipeline and the 16384^2 one
#: peaked 1.4x higher (H200 machine, 16 cores).
MAX_WRITERS = 4
#: Row chunks read ahead of the device.
PREFETCH = 2
#: GDAL block cache (MiB) during a run, unless GDAL_CACHEMAX is set: GDAL's default (5% of RAM) would let
#: the cache of decoded input blocks grow with the scene.
GDAL_CACHE_MB = 128
#: Files a finished run leaves in the output folder.
RESULT_FILES = ("landuse.tif", "landuse.qml", "confidence.tif", "cam.tif", "probabilities.tif", "landuse.gpkg",
                "report.json")
PARTIAL = ".geocamat-partial"


@dataclass
class _Plan:
    grid: OutputGrid
    tile: int
    stride: int
    band_rows: int
    block_cols: int
    rows: np.ndarray  # tile origins (rows)
    cols: np.ndarray  # tile origins (columns)

    @property
    def halo(self) -> int:
        return self.tile - self.stride

    @property
    def n_bands(self) -> int:
        return math.ceil(self.grid.height / self.band_rows)

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.grid.width / self.block_cols)

    def block(self, j: int) -> tuple[int, int, np.ndarray]:
        """Columns [x0, x1) written by column block j and the tile columns it computes."""
        x0 = j * self.block_cols
        x1 = min(self.grid.width, x0 + self.block_cols)
        qs = self.cols[(self.cols < x1) & (self.cols + self.tile > x0)]
        return x0, x1, qs

    def band(self, i: int) -> tuple[int, int, np.ndarray]:
        """Rows [y0, y1) finished by band i and the tile rows it owns."""
        y0 = i * self.band_rows
        y1 = min(self.grid.height, y0 + self.band_rows)
        ps = self.rows[(self.rows >= y0) & (self.rows < y0 + self.band_rows)]
        return y0, y1, ps


# default overlap of --window maps: zero padding only reaches ~half the receptive field into a window
WINDOW_OVERLAP = 0.125

# CPU: tiles up to this side are gathered with one indexed copy and blended with one scatter-add per batch
# (scatter 7 us/tile at 16 px against 11 us for a per-tile add); larger tiles are copied and added one by one
# (per-tile slices are 3-5x faster than a scatter from 32 px up). Measured on the 2-vCPU dev machine.
SCATTER_MAX_TILE = 16


def blend_mode(device_type: str, tile: int, stride: int) -> str:
    """How a batch's tiles are added into the accumulator: ``blocks`` (:func:`accumulate_blocks`, on CUDA when
    the stride divides the tile), ``scatter`` (one ``index_add_``, small CPU tiles) or ``tiles`` (one by one)."""
    if device_type == "cuda":
        return "blocks" if tile % stride == 0 else "tiles"
    return "scatter" if tile <= SCATTER_MAX_TILE else "tiles"


def _gather_tiles(x, rows: np.ndarray, cols: np.ndarray, tile: int, stride: int):
    """Tiles (row, col) of the tile grid over a (C, H, W) canvas, as an (N, C, T, T) view-indexed tensor."""
    import torch

    views = x.unfold(1, tile, stride).unfold(2, tile, stride)  # (C, rows, cols, T, T), a view
    index = torch.from_numpy(rows).to(x.device), torch.from_numpy(cols).to(x.device)
    return views[:, index[0], index[1]].permute(1, 0, 2, 3)


@functools.lru_cache(maxsize=8)
def _tile_offsets(tile: int, width: int):
    """Flat offsets of a tile's pixels in a row-major canvas ``width`` pixels wide."""
    import torch

    r = torch.arange(tile, dtype=torch.int64)
    return (r[:, None] * width + r[None, :]).flatten()


def accumulate_blocks(acc, values, rows: np.ndarray, cols: np.ndarray, tile: int, stride: int) -> None:
    """``acc[:, r*s:r*s+t, c*s:c*s+t] += values[n]`` for every tile n = (rows[n], cols[n]), batched.

    Needs ``tile % stride == 0`` and ``acc``'s height and width multiples of ``stride``. Each tile is cut into
    (tile/stride)^2 blocks of stride x stride px; for one block offset the tiles of a batch land on distinct
    blocks of ``acc``, so each offset is one indexed add for the whole batch ((t/s)^2 kernels instead of three
    per tile on the GPU) and the result does not depend on scheduling (deterministic).
    """
    import torch

    m, s = tile // stride, stride
    c, h, w = acc.shape
    blocks = acc.view(c, h // s, s, w // s, s)
    v = values.view(values.shape[0], c, m, s, m, s)
    r = torch.as_tensor(rows, device=acc.device)
    q = torch.as_tensor(cols, device=acc.device)
    for dr in range(m):
        for dc in range(m):
            blocks[:, r + dr, :, q + dc, :] += v[:, :, dr, :, dc, :]


class _StageClock:
    """Seconds per stage of the streaming loop. On CUDA, stages are timed with events read at the band's
    synchronisation point, so timing adds no synchronisation of its own."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.seconds: dict[str, float] = {}
        self._events: list = []

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def add(self, stage: str, start, end) -> None:
        if self.cuda:
            self._events.append((stage, start, end))
        else:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + end - start

    def collect(self) -> None:
        """Read the CUDA events recorded so far (call after a synchronisation)."""
        for stage, start, end in self._events:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + start.elapsed_time(end) / 1000.0
        self._events.clear()


def hann_weights(tile: int, overlap: float, footprint: float = 1.0) -> np.ndarray:
    """1-D blending weights: a Hann window (never exactly 0) with overlap, flat without.

    A model whose tile label came from the central ``footprint`` of the tile (see
    :class:`geocamat.data.tiles.TileOptions`) is weighted by a Gaussian of that footprint's half width
    instead, so each window mostly paints the pixels its label describes.
    """
    if overlap <= 0:
        return np.ones(tile, np.float32)
    i = np.arange(tile, dtype=np.float64)
    if footprint < 1.0:
        sigma = max(footprint * tile / 2.0, 0.5)
        return np.maximum(np.exp(-0.5 * ((i - (tile - 1) / 2.0) / sigma) ** 2), 1e-6).astype(np.float32)
    return (np.sin(np.pi * (i + 0.5) / tile) ** 2).astype(np.float32)


def weights_sha256(bundle: Bundle) -> str:
    """SHA-256 of the model weights (independent of how the bundle file was written)."""
    digest = hashlib.sha256()
    for key in sorted(bundle.state_dict):
        digest.update(key.encode())
        digest.update(bundle.state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: use auto, cpu or cuda") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA GPU is available: use --device cpu")
    return dev


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process so far (Linux ``VmHWM``), in MiB; None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _unit_size(target: int, tile: int, stride: int, factor: int) -> int:
    """Rows (or columns) of a unit: about ``target``, a multiple of ``stride``, and of ``factor`` (the largest
    overview factor) when that keeps it under 2x ``target``."""
    step = math.lcm(stride, factor)
    if step > 2 * max(target, tile):
        step = stride
    return step * max(1, math.ceil(max(target, tile) / step))


def _safe_name(value: str) -> str:
    name = re.sub(r"[^\w.-]+", "_", value).strip("._")
    return name or "region"


def _has_results(path: Path) -> bool:
    return any((path / name).exists() for name in RESULT_FILES)


def predict_landuse(
    bundle: Bundle,
    images: Sequence[str],
    out_dir: Path,
    *,
    region: str | None = None,
    region_field: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    bbox_crs: str | None = None,
    crs: str | None = None,
    res: float | None = None,
    overlap: float = 0.5,
    tta: bool = False,
    window: int | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    resume: bool = False,
    write_probabilities: bool = False,
    vectorise: bool = True,
    min_polygon_pixels: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    model_path: str | os.PathLike | None = None,
    on_unit: Callable[[dict], None] | None = None,
) -> dict:
    """Map land use over a region with a trained model; write rasters, polygons and a report.

    Args:
        bundle: the trained land-use model (:class:`geocamat.bundle.Bundle`).
        images: files, globs or folders; one mosaic (several scenes/tiles are mosaicked, first valid wins).
        out_dir: output folder (created); with ``region_field``, one subfolder per region value.
        region: vector file of the area of interest (any CRS); windows outside it are skipped.
        region_field: attribute of ``region``; one output per distinct value instead of one merged output.
        bbox: (xmin, ymin, xmax, ymax) area of interest, in ``bbox_crs`` (default: the output CRS).
        bbox_crs: CRS of ``bbox``.
        crs: output CRS (default: the CRS of the first image).
        res: output pixel size in output CRS units (default: that of the images).
        overlap: fraction of a tile shared with its neighbours (0 <= overlap < 1).
        tta: average each tile over its eight flips/quarter turns (8x the model cost).
        window: dense-output models only: run the fully convolutional model on windows of this many pixels
            instead of tiles of the training size (each pixel then sees the context of the window, not only
            of its tile; much faster, maps differ slightly). ``batch_size`` counts training-size tiles, so
            the windows per forward pass shrink with their area.
        batch_size: tiles per forward pass.
        workers: reader threads (default: min(8, CPU count)).
        device: ``auto``, ``cpu`` or ``cuda``.
        resume: continue an interrupted run in ``out_dir`` (same inputs and settings).
        write_probabilities: also write ``probabilities.tif`` (one band per class).
        vectorise: write ``landuse.gpkg``.
        min_polygon_pixels: drop polygons smaller than this many pixels from ``landuse.gpkg``.
        overwrite: replace results already in ``out_dir``.
        progress: show a progress bar (tiles/s and ETA) on stderr.
        model_path: the bundle's file, for its SHA-256 in the report (weights are hashed in any case).
        on_unit: called with a dict after each finished unit (progress hook; raising from it aborts the run,
            which can then be resumed).

    Returns:
        the report (also written as ``report.json``); with ``region_field``, ``{"regions": [...]}``.

    Raises:
        geocamat.errors.GeocamatError: bad inputs or settings, or existing results without overwrite/resume.
    """
    from geocamat.data.stack import open_stack

    if bundle.task != "landuse":
        raise BundleError(f"the model is a {bundle.task!r} model: predict_landuse needs a land-use model")
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if window is not None:
        if bundle.model.get("output") != "dense":
            raise ConfigError("--window needs a model trained with output: dense (its map comes from per-pixel "
                              "CAM logits); this model classifies whole tiles: leave --window out")
        if window < int(bundle.tile_size):
            raise ConfigError(f"--window must be at least the model's tile size ({bundle.tile_size} px), "
                              f"got {window}")
    if res is not None and res <= 0:
        raise ConfigError(f"resolution must be > 0, got {res}")
    dev = _resolve_device(device)
    out_dir = Path(out_dir)
    from geocamat.leftovers import run_tempdir

    stack_dir = run_tempdir("geocamat-stack-")  # a killed run's one is removed by the next run
    try:
        stack = open_stack(images, stack_dir, bands=bundle.extra.get("band_selection"))
        if stack.num_bands != len(bundle.bands):
            raise BundleError(
                f"the model expects {len(bundle.bands)} bands ({', '.join(bundle.bands)}) but the images have "
                f"{stack.num_bands} ({', '.join(stack.band_names)}): give the same bands as in training")
        out_crs = crs_wkt(crs) if crs else stack.crs
        dataset = _dataset(stack, out_crs)
        index = dataset.index
        same_crs = crs is None or _same_crs(out_crs, stack.crs)
        if res is not None:
            out_res = (float(res), float(res))
        elif same_crs:
            out_res = tuple(float(v) for v in stack.res)
        else:
            out_res = tuple(float(v) for v in dataset.res)
        origin = (0.0, 0.0)
        if same_crs and np.allclose(out_res, stack.res, rtol=1e-9, atol=0):
            import rasterio

            with rasterio.open(stack.paths[0]) as first:
                origin = (first.transform.c, first.transform.f)
        import shapely

        footprint = shapely.union_all(index.geometry.values)
        aois: list[tuple[str | None, object]] = [(None, None)]
        if region is not None:
            aois = load_region(region, out_crs, region_field)
        elif region_field is not None:
            raise ConfigError("region_field needs a region file (--region)")
        if bbox is not None:
            box = bbox_geometry(tuple(bbox), bbox_crs, out_crs)
            aois = [(name, box if geom is None else geom.intersection(box)) for name, geom in aois]
        jobs = []
        for name, geom in aois:
            if geom is not None and (geom.is_empty or not geom.intersects(footprint)):
                if region_field is None:
                    what = f"region {region}" if region else f"bbox {tuple(bbox)}"
                    raise ConfigError(f"{what} does not overlap the images (image bounds "
                                      f"{tuple(round(float(v), 3) for v in index.total_bounds)} in the output CRS)")
                continue
            area = footprint if geom is None else geom.intersection(footprint)
            grid = snap_grid(area.bounds, out_res, out_crs, origin)
            target = out_dir if name is None else out_dir / _safe_name(name)
            jobs.append((name, geom, grid, target))
        if not jobs:
            raise ConfigError(f"no feature of region {region} overlaps the images")
        for _, _, _, target in jobs:
            if _has_results(target) and not overwrite and not resume:
                raise OutputExistsError(f"{target} already holds results: use --overwrite to replace them or "
                                        "--resume to continue an interrupted run")
        settings = dict(overlap=overlap, tta=tta, window=window, batch_size=batch_size, device=str(dev),
                        write_probabilities=write_probabilities, vectorise=vectorise,
                        min_polygon_pixels=min_polygon_pixels, region=str(region) if region else None,
                        region_field=region_field, bbox=list(bbox) if bbox else None, bbox_crs=bbox_crs, crs=crs,
                        res=res)
        model_info = {"spec": bundle.model, "weights_sha256": weights_sha256(bundle),
                      "sha256": _file_sha(model_path), "path": str(model_path) if model_path else None,
                      "bands": bundle.bands, "tile_size": bundle.tile_size}
        inputs = {"images": [str(p) for p in stack.sources], "bands": stack.band_names,
                  "crs": stack.crs, "res": list(stack.res)}
        reports = []
        for name, geom, grid, target in jobs:
            engine = _Engine(bundle, stack, index, grid, geom, target, dev=dev, overlap=overlap, tta=tta,
                             window=window, batch_size=batch_size,
                             workers=workers or min(8, os.cpu_count() or 1), write_probabilities=write_probabilities,
                             vectorise=vectorise, min_polygon_pixels=min_polygon_pixels, resume=resume,
                             progress=progress, on_unit=on_unit, weights_hash=model_info["weights_sha256"])
            report = engine.run(dict(settings=settings, model=model_info, inputs=inputs,
                                     region={"name": name, "field": region_field,
                                             "bounds": list(geom.bounds) if geom is not None else None}))
            reports.append(report)
        if region_field is None:
            return reports[0]
        summary = {"regions": reports, "skipped_regions": [n for n, g in aois if n not in {j[0] for j in jobs}]}
        _write_json(out_dir / "report.json", summary)
        return summary
    finally:
        shutil.rmtree(stack_dir, ignore_errors=True)


def _progress_bar(**kwargs):
    """A tqdm bar (tiles/s, ETA) on stderr; a silent stand-in if tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with lightning
        class _Silent:
            def update(self, n: int) -> None:
                pass

            def close(self) -> None:
                pass

        return _Silent()
    return tqdm(**kwargs)


def _file_sha(path) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    from geocamat.bundle import file_sha256

    return file_sha256(path)


def _same_crs(a: str, b: str) -> bool:
    from rasterio.crs import CRS

    return CRS.from_wkt(a) == CRS.from_wkt(b)


def _dataset(stack, out_crs: str):
    """The TorchGeo dataset (and its R-tree index) over the stack, in the output CRS."""
    import contextlib
    import io

    from pyproj import CRS

    with contextlib.redirect_stdout(io.StringIO()):
        return stack.dataset(crs=CRS.from_wkt(out_crs))


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class _Engine:
    """One prediction run over one output grid (one region)."""

    def __init__(self, bundle: Bundle, stack, index, grid: OutputGrid, aoi, out_dir: Path, *, dev, overlap: float,
                 tta: bool, window: int | None, batch_size: int, workers: int, write_probabilities: bool,
                 vectorise: bool,
                 min_polygon_pixels: int, resume: bool, progress: bool, on_unit, weights_hash: str) -> None:
        from geocamat.outputs.raster import ClassStyle, class_dtype_nodata

        self.bundle, self.stack, self.index, self.grid, self.aoi = bundle, stack, index, grid, aoi
        self.out_dir, self.dev, self.overlap, self.batch_size = out_dir, dev, overlap, batch_size
        self.tta = tta
        self.window = window
        if window:  # as many pixels per forward pass as batch_size tiles of the training size
            self.batch_size = max(1, batch_size * int(bundle.tile_size) ** 2 // window**2)
        self.workers, self.write_probabilities, self.vectorise = workers, write_probabilities, vectorise
        self.min_polygon_pixels, self.resume = min_polygon_pixels, resume
        self.progress, self.on_unit = progress, on_unit
        self.weights_hash = weights_hash
        self.style = ClassStyle.from_classes(bundle.classes)
        self.dtype, self.nodata = class_dtype_nodata(self.style.ids)
        tile = int(window or bundle.tile_size)
        stride = max(1, int(round(tile * (1 - overlap))))
        from geocamat.outputs.overviews import overview_factors

        # units are multiples of the stride and, where that costs at most 2x their size, of the largest overview
        # factor, so that every unit computes its own part of each overview level
        needed = overview_factors(grid.width, grid.height)
        band_rows = _unit_size(BAND_ROWS, tile, stride, needed[-1] if needed else 1)
        block_cols = _unit_size(BLOCK_COLS, tile, stride, needed[-1] if needed else 1)
        aligned = all(band_rows % f == 0 and block_cols % f == 0 for f in needed)
        #: overview levels computed per unit while streaming; [] when GDAL computes them at the end
        self.overview_factors = needed if aligned else []
        self.plan = _Plan(grid, tile, stride, band_rows, block_cols, tile_positions(grid.height, tile, stride),
                          tile_positions(grid.width, tile, stride))
        self.work = out_dir / PARTIAL
        if aoi is not None:
            import shapely

            shapely.prepare(aoi)

    # -- bookkeeping -----------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        g = self.grid
        files = [(str(p), os.path.getsize(p), int(os.path.getmtime(p))) for p in self.stack.sources]
        aoi = hashlib.sha256(self.aoi.wkb).hexdigest() if self.aoi is not None else None
        return {"images": files, "weights": self.weights_hash, "grid": [g.crs, list(g.transform)[:6],
                g.width, g.height], "tile": self.plan.tile, "stride": self.plan.stride,
                "band_rows": self.plan.band_rows, "block_cols": self.plan.block_cols,
                "probabilities": self.write_probabilities, "vectorise": self.vectorise, "aoi": aoi, "tta": self.tta,
                "overviews": self.overview_factors}

    def _unit_name(self, j: int, i: int) -> str:
        return f"u{j:04d}_{i:05d}"

    def _load_manifest(self) -> dict:
        fingerprint = json.loads(json.dumps(self.fingerprint(), default=_json_default))
        path = self.work / "manifest.json"
        if path.exists() and self.resume:
            manifest = json.loads(path.read_text())
            if manifest.get("fingerprint") != fingerprint:
                raise ConfigError(f"cannot resume in {self.out_dir}: the inputs or settings differ from the "
                                  "interrupted run; rerun with the same ones, or use --overwrite to start again")
            return manifest
        if self.work.exists():
            shutil.rmtree(self.work)
        (self.work / "units").mkdir(parents=True)
        manifest = {"fingerprint": fingerprint, "done": {}, "runs": 0}
        _write_json(path, manifest)
        return manifest

    # -- main loop ---------------------------------------------------------------------------------------
    def run(self, meta: dict) -> dict:
        from rasterio.env import get_gdal_config, set_gdal_config

        if "GDAL_CACHEMAX" in os.environ:
            return self._run(meta)
        old = get_gdal_config("GDAL_CACHEMAX")
        set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_MB)
        try:
            return self._run(meta)
        finally:
            set_gdal_config("GDAL_CACHEMAX", old)

    def _run(self, meta: dict) -> dict:
        if self.resume and not self.work.exists() and (self.out_dir / "report.json").exists():
            return json.loads((self.out_dir / "report.json").read_text())  # finished earlier: nothing to resume
        import torch

        from geocamat.inference.reader import MosaicReader

        t_start = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        manifest = self._load_manifest()
        manifest["runs"] += 1
        resumed = bool(manifest["done"])
        plan = self.plan
        model = self.bundle.build_model().to(self.dev)
        if self.dev.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        footprint = 1.0 if self.window else float(self.bundle.extra.get("footprint", 1.0))
        w1 = torch.from_numpy(hann_weights(plan.tile, self.overlap, footprint)).to(self.dev)
        self.w2 = w1[:, None] * w1[None, :]
        self.mean = torch.tensor(self.bundle.mean, dtype=torch.float32, device=self.dev).view(-1, 1, 1)
        self.std = torch.tensor(self.bundle.std, dtype=torch.float32, device=self.dev).view(-1, 1, 1)
        lut = torch.tensor(self.style.ids, dtype=torch.int64, device=self.dev)
        self.lut = lut
        total_tiles = len(plan.rows) * len(plan.cols)
        done_tiles = sum(u["tiles_planned"] for u in manifest["done"].values())
        bar = _progress_bar(total=total_tiles, initial=done_tiles, unit="tile", desc=f"predict {self.out_dir.name}",
                   file=sys.stderr, disable=not self.progress, smoothing=0.1, dynamic_ncols=True)
        reader = MosaicReader(self.index, self.grid, self.stack.num_bands, workers=self.workers)
        writers = max(1, min(MAX_WRITERS, (os.cpu_count() or 2) // 4))
        self._writer = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="geocamat-write")
        from geocamat.outputs.vector import Polygoniser

        # worker processes pay off when there are units to overlap with; a one-unit scene polygonises in-thread
        many = plan.n_bands * plan.n_blocks > 2
        self._polygoniser = Polygoniser(writers) if self.vectorise and many else None
        if self._polygoniser is not None:
            self._polygoniser.start()
        pending: deque[tuple[str, Future, dict]] = deque()
        stream_start = time.perf_counter()
        self.t_model = 0.0
        self.clock = _StageClock(self.dev.type == "cuda")
        # read buffers, each large enough for any column block, reused by every block (a pool per block shape
        # kept ~250 MB per extra shape alive; pinned allocations on CUDA cost ~1 ms per MB)
        self._buffer_pool: list[np.ndarray] = []
        widest = max(int(qs[-1] - qs[0]) + plan.tile for qs in (plan.block(j)[2] for j in range(plan.n_blocks)))
        self._buffer_elems = self.stack.num_bands * plan.band_rows * widest
        self._host_lock = threading.Lock()
        self.host = {"wait_read_s": 0.0, "finish_s": 0.0, "wait_write_s": 0.0, "write_s_all_threads": 0.0,
                     "polygonise_s_all_threads": 0.0}
        processed_now = 0
        try:
            for j in range(plan.n_blocks):
                start = self._first_band(j, manifest)
                for i, stats in self._run_block(j, start, reader):
                    future = stats.pop("future")
                    processed_now += stats["tiles_processed"]
                    pending.append((self._unit_name(j, i), future, stats))
                    bar.update(stats["tiles_planned"])
                    self._timed("wait_write_s", self._drain, pending, manifest, keep=writers + 1)
            self._timed("wait_write_s", self._drain, pending, manifest, keep=0)
        finally:
            bar.close()
            reader.close()
            self._writer.shutdown(wait=True, cancel_futures=True)
            if self._polygoniser is not None:
                self._polygoniser.close()
        stream_seconds = time.perf_counter() - stream_start
        peak_stream = peak_rss_mib()
        t_assemble = time.perf_counter()
        outputs = self._assemble(manifest)
        assemble_seconds = time.perf_counter() - t_assemble
        if not sum(int(self.counts[c]) for c in self.style.ids if c < len(self.counts)):  # an empty map: no result
            shutil.rmtree(self.work, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()  # only when empty, i.e. created by this run
            where = " within the region" if self.aoi is not None else ""
            names = ", ".join(str(p) for p in self.stack.sources[:3]) + (", ..." if len(self.stack.sources) > 3 else "")
            raise InvalidRasterError(f"no valid pixels in {names}{where}: every pixel is nodata, so there is "
                                     "nothing to map; check the nodata value (gdalinfo) or the region")
        report = self._report(meta, manifest, outputs, resumed=resumed, processed_now=processed_now,
                              timings={"total_s": time.perf_counter() - t_start, "stream_s": stream_seconds,
                                       "model_s": self.t_model, "read_s_all_threads": reader.seconds,
                                       "assemble_s": assemble_seconds,
                                       "stream_stages": {**{f"{k}_s": v for k, v in self.clock.seconds.items()},
                                                         **self.host},
                                       "assemble_stages": self.assemble_seconds},
                              memory={"peak_rss_mib_after_stream": peak_stream, "peak_rss_mib": peak_rss_mib()})
        _write_json(self.work / "report.json", report)
        for name in RESULT_FILES:  # rename everything into place at once
            src = self.work / name
            if src.exists():
                from geocamat.outputs.raster import move_raster

                move_raster(src, self.out_dir / name)
            elif (self.out_dir / name).exists():
                (self.out_dir / name).unlink()
        shutil.rmtree(self.work, ignore_errors=True)
        return report

    def _timed(self, stage: str, fn, *args, **kwargs):
        """Call ``fn`` and add its wall time to host stage ``stage`` (any thread)."""
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._host_lock:
                self.host[stage] += time.perf_counter() - start

    def _first_band(self, j: int, manifest: dict) -> int:
        """First band of column block j to compute: after the last finished one whose carry is kept."""
        i = 0
        while self._unit_name(j, i) in manifest["done"]:
            i += 1
        while 0 < i < self.plan.n_bands and not self._carry_path(j, i - 1).exists():
            i -= 1
        return i

    def _carry_path(self, j: int, i: int) -> Path:
        return self.work / "units" / f"{self._unit_name(j, i)}_carry.npy"

    def _drain(self, pending: deque, manifest: dict, keep: int) -> None:
        """Record finished units, in order, in the manifest; wait until at most ``keep`` are pending."""
        while pending and (pending[0][1].done() or len(pending) > keep):
            name, future, stats = pending.popleft()
            future.result()
            manifest["done"][name] = stats
            _write_json(self.work / "manifest.json", manifest)
            prev = stats.get("prev_carry")
            if prev and (self.work / "units" / prev).exists():
                os.remove(self.work / "units" / prev)
            if self.on_unit is not None:
                self.on_unit({"unit": name, "done": len(manifest["done"]),
                              "total": self.plan.n_bands * self.plan.n_blocks})

    def _run_block(self, j: int, start: int, reader):
        """Compute bands ``start..`` of column block ``j``; yields (band, stats) as each is handed to a writer."""
        import torch

        plan = self.plan
        if start >= plan.n_bands:  # block finished before an interruption
            return
        x0, x1, qs = plan.block(j)
        qs0 = int(qs[0])
        win = int(qs[-1] - qs0 + plan.tile)
        hb, halo = plan.band_rows, plan.halo
        c = self.stack.num_bands
        pin = self.dev.type == "cuda"
        chunks: dict[int, Future] = {}
        buffers: dict[int, np.ndarray] = {}
        pool, owner = self._buffer_pool, {}
        needed_last = plan.n_bands  # chunk index of the halo below the last band

        def new_buffer() -> np.ndarray:
            if pool:
                flat = pool.pop()
            elif pin:
                flat = torch.empty(self._buffer_elems, dtype=torch.float32, pin_memory=True).numpy()
            else:
                flat = np.empty(self._buffer_elems, np.float32)
            view = flat[: c * hb * win].reshape(c, hb, win)  # contiguous
            owner[id(view)] = flat
            return view

        def release(view: np.ndarray) -> None:
            pool.append(owner.pop(id(view)))

        def skip_piece(r0: int, c0: int, r1: int, c1: int) -> bool:
            if r0 >= self.grid.height:
                return True
            return self.aoi is not None and not self.aoi.intersects(self.grid.box(r0, c0, r1, c1))

        def submit(k: int) -> None:
            if k in chunks or k > needed_last:
                return
            buf = new_buffer()
            buffers[k] = buf
            futures = reader.submit(buf, k * hb, qs0, skip=skip_piece)
            done = Future()
            done.set_result(None)
            chunks[k] = futures or [done]

        def take(k: int):
            for f in chunks.pop(k):
                f.result()
            buf = buffers[k]
            if pin:
                tensor = torch.from_numpy(buf).to(self.dev, non_blocking=True)
            else:
                tensor = torch.from_numpy(buf)
            return buf, tensor

        k = len(self.style.ids)
        # buffers reused by every band of the block (no large allocation per band or batch)
        bufs = {"x": torch.empty((c, hb + halo, win), dtype=torch.float32, device=self.dev),
                "acc": torch.empty((k + 2, hb + halo, win), dtype=torch.float32, device=self.dev),
                "batch": torch.empty((self.batch_size, c, plan.tile, plan.tile), dtype=torch.float32, device=self.dev)
                if not pin else None}
        carry = None
        if start > 0:
            carry = torch.from_numpy(np.load(self._carry_path(j, start - 1))).to(self.dev)
        for k in range(start, min(start + PREFETCH + 2, needed_last + 1)):
            submit(k)
        cur_buf, cur = self._timed("wait_read_s", take, start)
        for i in range(start, plan.n_bands):
            for k in range(i + 1, i + PREFETCH + 2):
                submit(k)
            nxt_buf, nxt = self._timed("wait_read_s", take, i + 1) if i + 1 <= needed_last else (None, None)
            bufs["x"][:, :hb].copy_(cur)
            if halo:
                bufs["x"][:, hb:].copy_(nxt[:, :halo])
            result, carry, stats = self._band(i, bufs, carry, x0, x1, qs)
            if pin:  # the copy from the pinned buffer is over once the band's results reached the host
                torch.cuda.current_stream().synchronize()
            self.clock.collect()
            release(cur_buf)
            name = self._unit_name(j, i)
            stats["prev_carry"] = f"{self._unit_name(j, i - 1)}_carry.npy" if i > 0 else None
            stats["future"] = self._submit_write(name, result, carry, i, j)
            yield i, stats
            cur_buf, cur = nxt_buf, nxt
        if cur_buf is not None:  # the halo chunk below the last band
            release(cur_buf)

    def _band(self, i: int, bufs: dict, carry, x0: int, x1: int, qs: np.ndarray):
        """Classify the tiles owned by band i (input in ``bufs["x"]``) and finish its rows."""
        import shapely
        import torch

        from geocamat.models import camnet

        plan, dev = self.plan, self.dev
        t, s, hb, halo = plan.tile, plan.stride, plan.band_rows, plan.halo
        y0, y1, ps = plan.band(i)
        qs0 = int(qs[0])
        k = len(self.style.ids)
        x, acc = bufs["x"], bufs["acc"]
        valid_px = ~torch.isnan(x).all(dim=0)
        x.sub_(self.mean).div_(self.std).nan_to_num_(nan=0.0)  # normalised; invalid -> 0 (the band mean)
        acc.zero_()
        if carry is not None and halo:
            acc[:, :halo] = carry
        nr, nc = len(ps), len(qs)
        owned = (qs >= x0) & (qs < x1)
        stats = {"tiles_planned": int(nr * owned.sum()), "tiles_processed": 0, "skipped_outside_aoi": 0,
                 "skipped_no_data": 0, "recomputed_at_seams": 0}
        if nr:
            # which tiles touch the AOI and have valid input
            v = valid_px[: (nr - 1) * s + t].to(torch.uint8)
            tile_ok = v.unfold(0, t, s).unfold(1, t, s).amax(dim=(-1, -2)).cpu().numpy()[:nr, :nc].astype(bool)
            if self.aoi is not None:
                rr, cc = np.meshgrid(ps, qs, indexing="ij")
                g = self.grid.transform
                boxes = shapely.box(g.c + g.a * cc, g.f + g.e * (rr + t), g.c + g.a * (cc + t), g.f + g.e * rr)
                in_aoi = shapely.intersects(self.aoi, boxes)
            else:
                in_aoi = np.ones((nr, nc), bool)
            run = in_aoi & tile_ok
            stats["skipped_outside_aoi"] = int((~in_aoi & owned[None]).sum())
            stats["skipped_no_data"] = int((in_aoi & ~tile_ok & owned[None]).sum())
            stats["tiles_processed"] = int((run & owned[None]).sum())
            stats["recomputed_at_seams"] = int((run & ~owned[None]).sum())
            ti, tj = np.nonzero(run)
            start = time.perf_counter()
            threads = torch.get_num_threads()
            clock = self.clock
            blend = blend_mode(dev.type, t, s)
            # Per-tile work on the CPU runs on one thread: with several OpenMP threads on busy cores, threads
            # spinning at barriers make small ops up to 50x slower.
            for b in range(0, len(ti), self.batch_size):
                bi, bj = ti[b:b + self.batch_size], tj[b:b + self.batch_size]
                t0 = clock.mark()
                if dev.type == "cuda":  # gather on the device (the caching allocator makes this cheap)
                    batch = _gather_tiles(x, bi, bj, t, s).contiguous(memory_format=torch.channels_last)
                    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                        probs, cam = camnet.tile_probabilities(self.model, batch, self.tta)
                else:
                    torch.set_num_threads(1)
                    if t <= SCATTER_MAX_TILE:  # one indexed copy out of a strided view
                        batch = _gather_tiles(x, bi, bj, t, s).contiguous()
                    else:  # copy the tiles into a reused buffer (slice copies beat a gather for large tiles)
                        batch = bufs["batch"][: len(bi)]
                        for n, (r, q) in enumerate(zip(bi, bj, strict=True)):
                            batch[n].copy_(x[:, r * s:r * s + t, q * s:q * s + t])
                    torch.set_num_threads(threads)
                    with torch.no_grad():
                        probs, cam = camnet.tile_probabilities(self.model, batch, self.tta)
                t1 = clock.mark()
                torch.set_num_threads(1)
                if blend != "tiles":  # probabilities, CAM and weight of the whole batch, weighted
                    ones = torch.ones_like(cam[:, None], dtype=torch.float32)
                    weighted = torch.cat([probs.float(), cam.float()[:, None], ones], dim=1).mul_(self.w2)
                if blend == "scatter":  # the batch in one scatter-add (sequential on the CPU, so deterministic)
                    origin = torch.from_numpy((bi * s * acc.shape[2] + bj * s).astype(np.int64))
                    index = (origin[:, None] + _tile_offsets(t, acc.shape[2])[None]).flatten()
                    acc.view(k + 2, -1).index_add_(1, index, weighted.permute(1, 0, 2, 3).reshape(k + 2, -1))
                elif blend == "blocks":
                    accumulate_blocks(acc, weighted, bi, bj, t, s)
                else:  # tile by tile, in order
                    probs = probs.float().mul_(self.w2)
                    cam = cam.float().mul_(self.w2)
                    for n, (r, q) in enumerate(zip(bi, bj, strict=True)):
                        rows_, cols_ = slice(r * s, r * s + t), slice(q * s, q * s + t)
                        acc[:k, rows_, cols_] += probs[n]
                        acc[k, rows_, cols_] += cam[n]
                        acc[k + 1, rows_, cols_] += self.w2
                torch.set_num_threads(threads)
                clock.add("model", t0, t1)
                clock.add("blend", t1, clock.mark())
            self.t_model += time.perf_counter() - start
        # finish rows [y0, y1) of columns [x0, x1) (on CUDA, the host waits here for the band's kernels)
        t_finish = time.perf_counter()
        rows, c0, c1 = y1 - y0, x0 - qs0, x1 - qs0
        a = acc[:, :rows, c0:c1]
        wsum = a[k + 1]
        ok = (wsum > 0) & valid_px[:rows, c0:c1]
        if self.aoi is not None:
            ok &= torch.from_numpy(self._aoi_mask(y0, x0, rows, x1 - x0)).to(dev)
        inv = torch.where(ok, 1.0 / wsum.clamp_min(1e-30), torch.nan)  # NaN where there is no result
        best, arg = a[:k].max(dim=0)
        cls = torch.where(ok, self.lut[arg], self.nodata)
        floats = [best * inv, a[k] * inv]
        if self.write_probabilities:
            floats.extend(a[c] * inv for c in range(k))
        small_ids = torch.uint8 if self.dtype == "uint8" else torch.int32  # 1 byte per pixel to the host
        result = {"class": cls.to(small_ids).cpu().numpy().astype(self.dtype, copy=False)[None],
                  "float": torch.stack(floats).cpu().numpy(), "row_off": y0, "col_off": x0}
        new_carry = acc[:, hb:hb + halo].clone() if halo else None
        self.host["finish_s"] += time.perf_counter() - t_finish
        return result, new_carry, stats

    def _aoi_mask(self, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
        from rasterio.features import geometry_mask

        box = self.grid.box(row0, col0, row0 + rows, col0 + cols)
        if self.aoi.contains(box):
            return np.ones((rows, cols), bool)
        return geometry_mask([self.aoi], out_shape=(rows, cols), transform=self.grid.window_transform(row0, col0),
                             invert=True)

    def _submit_write(self, name: str, result: dict, carry, i: int, j: int) -> Future:
        carry_np = carry.cpu().numpy() if carry is not None else None
        return self._writer.submit(self._write_unit, name, result, carry_np)

    def _write_unit(self, name: str, result: dict, carry: np.ndarray | None) -> None:

        units = self.work / "units"
        self._timed("write_s_all_threads", self._write_levels, name, result)
        job = dict(piece=str(units / f"{name}_class.tif"), nodata=int(self.nodata), row_off=int(result["row_off"]),
                   col_off=int(result["col_off"]), full_shape=[self.grid.height, self.grid.width],
                   out=str(units / f"{name}_poly.npz"))
        if self._polygoniser is not None:  # in a worker process: rasterio's shapes() holds the GIL
            self._timed("polygonise_s_all_threads", self._polygoniser.run, **job)
        elif self.vectorise:
            from geocamat.outputs.vector import polygonise_piece

            self._timed("polygonise_s_all_threads", polygonise_piece, **job)
        counts = np.bincount(result["class"][0].ravel().astype(np.int64), minlength=max(self.style.ids) + 1)
        np.save(units / f"{name}_counts.npy", counts)
        if carry is not None:
            tmp = units / f"{name}_carry.part.npy"
            np.save(tmp, carry)
            os.replace(tmp, units / f"{name}_carry.npy")

    def _write_levels(self, name: str, result: dict) -> None:
        """The unit's class and float pieces, and those of each overview level."""
        from geocamat.outputs.overviews import pyramid
        from geocamat.outputs.raster import write_piece

        units = self.work / "units"
        for kind, nodata in (("class", self.nodata), ("float", float("nan"))):
            write_piece(units / f"{name}_{kind}.tif", result[kind], nodata)
            levels = pyramid(result[kind], self.overview_factors, classes=kind == "class", nodata=nodata)
            for f, level in zip(self.overview_factors, levels, strict=True):
                write_piece(units / f"{name}_{kind}_o{f}.tif", level, nodata)

    # -- final outputs -------------------------------------------------------------------------------
    def _pieces(self) -> list:
        from geocamat.outputs.raster import Piece

        plan, pieces = self.plan, []
        for j in range(plan.n_blocks):
            x0, x1, _ = plan.block(j)
            for i in range(plan.n_bands):
                y0, y1, _ = plan.band(i)
                pieces.append((self._unit_name(j, i), Piece(Path(), x0, y0, x1 - x0, y1 - y0)))
        return pieces

    def _assemble(self, manifest: dict) -> list[str]:
        from dataclasses import replace

        from affine import Affine

        from geocamat.outputs.qml import write_paletted_qml
        from geocamat.outputs.raster import Piece, mosaic_vrt, to_cog
        from geocamat.outputs.vector import write_polygons_gpkg

        g, units, work = self.grid, self.work / "units", self.work
        pieces = self._pieces()
        common = dict(width=g.width, height=g.height, crs_wkt=g.crs, transform=g.transform)
        def mosaic(name: str, kind: str, **kw) -> Path:
            """VRT of the pieces of one kind, with VRTs of its overview levels as overviews."""
            levels = []
            for f in self.overview_factors:
                level = [Piece(units / f"{n}_{kind}_o{f}.tif", p.col_off // f, p.row_off // f, -(-p.width // f),
                               -(-p.height // f)) for n, p in pieces]
                levels.append(mosaic_vrt(work / f"{name}_o{f}.vrt", level, width=-(-g.width // f),
                                         height=-(-g.height // f), crs_wkt=g.crs,
                                         transform=g.transform @ Affine.scale(f), **kw))
            full = [replace(p, path=units / f"{n}_{kind}.tif") for n, p in pieces]
            return mosaic_vrt(work / f"{name}.vrt", full, overviews=levels, **common, **kw)

        jobs = [(mosaic("landuse", "class", dtype=self.dtype, count=1, nodata=self.nodata, style=self.style,
                        descriptions=["land use class"]), "landuse.tif", "MODE", "DEFLATE")]
        write_paletted_qml(work / "landuse.qml", self.style)
        outputs = ["landuse.tif", "landuse.qml"]
        for name, bands, desc in (("confidence", [1], ["max class probability"]), ("cam", [2], ["CAM of the class"]),
                                  ("probabilities", list(range(3, 3 + len(self.style.ids))),
                                   [f"p({n})" for n in self.style.names])):
            if name == "probabilities" and not self.write_probabilities:
                continue
            vrt = mosaic(name, "float", dtype="float32", count=len(bands), nodata=float("nan"), descriptions=desc,
                         source_bands=bands)
            jobs.append((vrt, f"{name}.tif", "AVERAGE", "ZSTD"))  # float COGs: ZSTD writes ~2.5x faster
            outputs.append(f"{name}.tif")
        # on machines with cores to spare the COGs are built side by side (GDAL works without the GIL; each
        # build holds its own full-width overview buffers) while the polygons are merged here
        cpus = os.cpu_count() or 1
        side_by_side = max(1, min(len(jobs), cpus // 4))
        pool = ThreadPoolExecutor(max_workers=side_by_side, thread_name_prefix="geocamat-cog")
        self.assemble_seconds = {}

        def build(vrt, name, resampling, compress):
            start = time.perf_counter()
            to_cog(vrt, work / name, resampling=resampling, threads=max(1, cpus // side_by_side), compress=compress)
            self.assemble_seconds[f"{name}_s"] = time.perf_counter() - start

        cogs = [pool.submit(build, *job) for job in jobs]
        try:
            if self.vectorise:
                from rasterio.crs import CRS

                crs = CRS.from_wkt(g.crs)
                hectares = bool(crs.is_projected and crs.linear_units_factor[1] == 1.0)
                start = time.perf_counter()
                self.n_polygons = write_polygons_gpkg(
                    work / "landuse.gpkg", [units / f"{n}_poly.npz" for n, _ in pieces], transform=g.transform,
                    crs_wkt=g.crs, style=self.style, min_pixels=self.min_polygon_pixels, hectares=hectares)
                outputs.append("landuse.gpkg")
                self.assemble_seconds["landuse.gpkg_s"] = time.perf_counter() - start
            for cog in cogs:
                cog.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self.counts = sum(np.load(units / f"{n}_counts.npy") for n, _ in pieces)
        return outputs

    def _report(self, meta: dict, manifest: dict, outputs: list[str], *, resumed: bool, processed_now: int,
                timings: dict, memory: dict) -> dict:
        from rasterio.crs import CRS

        g = self.grid
        crs = CRS.from_wkt(g.crs)
        pixel_area = abs(g.transform.a * g.transform.e)
        metres = bool(crs.is_projected and crs.linear_units_factor[1] == 1.0)
        tiles = {key: sum(u[key] for u in manifest["done"].values())
                 for key in ("tiles_planned", "tiles_processed", "skipped_outside_aoi", "skipped_no_data",
                             "recomputed_at_seams")}
        classes = []
        for cid, name, color in zip(self.style.ids, self.style.names, self.style.colors, strict=True):
            pixels = int(self.counts[cid]) if cid < len(self.counts) else 0
            entry = {"id": cid, "name": name, "color": color, "pixels": pixels, "area": pixels * pixel_area}
            if metres:
                entry["area_ha"] = pixels * pixel_area / 1e4
            classes.append(entry)
        stream = max(timings["stream_s"], 1e-9)
        computed = processed_now
        return {
            "tool": "geocamat predict", "task": "landuse", **meta,
            "grid": {"crs": g.crs, "epsg": crs.to_epsg(), "transform": list(g.transform)[:6], "width": g.width,
                     "height": g.height, "res": list(g.res), "nodata": self.nodata, "dtype": self.dtype,
                     "area_units": "m2" if metres else "crs units squared"},
            "plan": {"tile": self.plan.tile, "stride": self.plan.stride, "band_rows": self.plan.band_rows,
                     "block_cols": self.plan.block_cols, "units": self.plan.n_bands * self.plan.n_blocks},
            "tiles": tiles,
            "classes": classes,
            "polygons": getattr(self, "n_polygons", None),
            "outputs": outputs,
            "resumed": resumed,
            "runs": manifest["runs"],
            "timings": timings,
            "memory": memory,
            "throughput": {"tiles_per_s_stream": computed / stream,
                           "tiles_per_s_total": computed / max(timings["total_s"], 1e-9),
                           "megapixels_per_s_total": g.width * g.height / 1e6 / max(timings["total_s"], 1e-9)},
        }
