"""Land-use prediction over a region: the request behind ``geocamat predict`` (checks, inputs, regions, grids).

Data flow (DESIGN.md, "Predict"): the images become one mosaic through the TorchGeo index; the output
grid covers the region (one grid per region value with ``region_field``); for each grid an
:class:`geocamat.inference.engine.Engine` streams the unit plan (:mod:`~geocamat.inference.plan`) through a
per-tile head (:mod:`~geocamat.inference.heads`), blends (:mod:`~geocamat.inference.blend`), writes units as they
finish (:mod:`~geocamat.inference.writer`, resumable: :mod:`~geocamat.inference.manifest`), and assembles COGs and a
GeoPackage (:mod:`~geocamat.inference.assemble`) with a report (:mod:`~geocamat.inference.report`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from geocamat.bundle import Bundle
from geocamat.devices import resolve_device
from geocamat.errors import BundleError, ConfigError, OutputExistsError
from geocamat.inference.engine import RESULT_FILES, Engine
from geocamat.inference.grid import bbox_geometry, crs_wkt, load_region, on_lattice, snap_grid
from geocamat.inference.heads import PixelHead, head_for
from geocamat.inference.manifest import PARTIAL, refuse_interrupted
from geocamat.inference.plan import UnitSizes, tile_stride
from geocamat.inference.ranks import Ranks, rank_device
from geocamat.inference.tta import DEFAULT_TTA_VIEWS, TTA_VIEWS
from geocamat.inference.tta import resolve as resolve_tta
from geocamat.outputs.jsonfile import write_json

__all__ = ["DENSE_OVERLAP", "PARTIAL", "RESULT_FILES", "WINDOW_OVERLAP", "default_overlap", "predict_landuse",
           "weights_sha256"]

# default overlap of --window maps: zero padding only reaches ~half the receptive field into a window
WINDOW_OVERLAP = 0.125
#: Least default overlap of dense-output maps. A model's per-pixel output depends on where the pixel sits in
#: the tile (border pixels see less context); at overlap 0.5 every pixel is covered by two tiles per axis, at
#: positions fixed by its offset in the stride, so confidence and CAM repeated every stride (NC sample: mean
#: CAM by (row, col) mod 8 ranged 0.699-0.744, confidence 0.676-0.696). At 0.75 every pixel is also seen
#: near a tile centre: 0.732-0.735 and 0.687-0.692, OA 0.7195 -> 0.7201, at 4x the tiles (docs/inference.md).
DENSE_OVERLAP = 0.75


def default_overlap(bundle: Bundle, window: int | None = None) -> float:
    """The overlap of a land-use map when none is given: 0.125 for --window maps; the model's, raised to
    :data:`DENSE_OVERLAP` for dense-output models (no lattice of the stride); else the model's (0.5)."""
    if window:
        return WINDOW_OVERLAP
    overlap = float(bundle.extra.get("overlap", 0.5))
    if bundle.model.get("output") == "dense":
        return max(overlap, DENSE_OVERLAP)
    return overlap


def weights_sha256(bundle: Bundle) -> str:
    """SHA-256 of the model weights (independent of how the bundle file was written)."""
    digest = hashlib.sha256()
    for key in sorted(bundle.state_dict):
        digest.update(key.encode())
        digest.update(bundle.state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _safe_name(value: str) -> str:
    name = re.sub(r"[^\w.-]+", "_", value).strip("._")
    return name or "region"


def region_folders(names: list[str]) -> dict[str, str]:
    """A folder name for each region value: its safe spelling, numbered (``_2``, ``_3``...) where two values
    spell the same (``Nord/Est`` and ``Nord_Est``) or differ only in case (one folder on macOS and Windows)."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        base = _safe_name(name)
        folder, k = base, 1
        while folder.lower() in taken:
            k += 1
            folder = f"{base}_{k}"
        folders[name] = folder
        taken.add(folder.lower())
    return folders


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
    overlap: float | None = None,
    tta: bool = False,
    tta_views: str = DEFAULT_TTA_VIEWS,
    window: int | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    resume: bool = False,
    write_probabilities: bool = False,
    vectorise: bool = True,
    min_polygon_pixels: int = 0,
    min_area_ha: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    model_path: str | os.PathLike | None = None,
    on_unit: Callable[[dict], None] | None = None,
    require_all_bands: bool = False,
    nodata: float | None = None,
    head: PixelHead | None = None,
    units: UnitSizes | None = None,
    blend: str | None = None,
    devices: int | None = None,
    num_nodes: int | None = None,
    ranks: Ranks | None = None,
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
        overlap: fraction of a tile shared with its neighbours (0 <= overlap < 1); default:
            :func:`default_overlap`.
        tta: average each pixel over the eight flips/quarter turns of the tiles.
        tta_views: with ``tta``: ``spread`` (each tile through one view, spread over the overlapping tiles so
            that every pixel gets all 8: the model cost of no TTA; needs overlap >= 0.75, else ``all``) or
            ``all`` (every tile through all 8 views: 8x the model cost). See :mod:`geocamat.inference.tta`.
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
        min_area_ha: the same unit in hectares (replaces ``min_polygon_pixels``; see
            :mod:`geocamat.inference.mapping_unit`).
        overwrite: replace results already in ``out_dir``.
        progress: show a progress bar (tiles/s and ETA) on stderr.
        model_path: the bundle's file, for its SHA-256 in the report (weights are hashed in any case).
        on_unit: called with a dict after each finished unit (progress hook; raising from it aborts the run,
            which can then be resumed).
        require_all_bands: map pixels where some (not all) bands are nodata as nodata (default: classify
            them with the missing bands filled with their mean; either way they are counted in
            ``report["pixels"]["partial_bands"]``).
        nodata: the images' fill value, replacing what the files declare (default: the model's
            ``image_nodata``, else the files' own).
        head: what the model computes per tile (default: the bundle's CamNet head,
            :func:`geocamat.inference.heads.head_for`); it must give one probability per class of the bundle.
        units: unit sizes (default: :class:`geocamat.inference.plan.UnitSizes`, the module constants).
        blend: blending mode ``blocks``, ``scatter`` or ``tiles`` (default: chosen for the device; all give the
            same sums).
        devices: processes on this machine sharing the run (default: a launcher's, else 1); without a launcher
            (torchrun, srun) they are started here, CPU processes or one GPU each (``cuda:{local rank}``).
            The map is identical to a one-process run's; ``head`` and ``on_unit`` must then be picklable.
        num_nodes: machines sharing the run (> 1 needs a launcher on each).
        ranks: this process's rank (see :mod:`geocamat.inference.ranks`); default: from ``devices``/``num_nodes``
            and the launcher. ``Ranks()`` maps in this process alone whatever the environment (internal maps,
            e.g. the validation map of a DDP training run, where the other ranks do not call this).

    Returns:
        the report (also written as ``report.json``); with ``region_field``, ``{"regions": [...]}``.

    Raises:
        geocamat.errors.GeocamatError: bad inputs or settings, or existing results without overwrite/resume.
    """
    call = dict(locals())  # every argument, to run the same call on each rank
    from geocamat.data.crs import same_crs as crs_equal
    from geocamat.inference import launch as rank_tools

    if ranks is None:
        launch = rank_tools.resolve(devices, num_nodes)
        if launch.spawn:
            dev = resolve_device(device)
            rest = {k: v for k, v in call.items() if k not in ("bundle", "images", "out_dir", "ranks")}
            rank_tools.spawn(predict_landuse, launch.spawn, (bundle, list(images), Path(out_dir)), rest,
                             cuda=dev.type == "cuda")
            return json.loads((Path(out_dir) / "report.json").read_text())
        try:
            return predict_landuse(**{**call, "ranks": launch.ranks})
        finally:
            rank_tools.close(launch)
    if bundle.task != "landuse":
        raise BundleError(f"the model is a {bundle.task!r} model: predict_landuse needs a land-use model")
    if overlap is None:
        overlap = default_overlap(bundle, window)
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if tta_views not in TTA_VIEWS:
        raise ConfigError(f"unknown --tta-views {tta_views!r}: choose one of {', '.join(TTA_VIEWS)}")
    if window is not None:
        if bundle.model.get("output") != "dense":
            raise ConfigError("--window needs a model trained with output: dense (its map comes from per-pixel "
                              "CAM logits); this model classifies whole tiles: leave --window out")
        if window < int(bundle.tile_size):
            raise ConfigError(f"--window must be at least the model's tile size ({bundle.tile_size} px), "
                              f"got {window}")
    if res is not None and res <= 0:
        raise ConfigError(f"resolution must be > 0, got {res}")
    dev = rank_device(resolve_device(device), device, ranks)
    out_dir = Path(out_dir)
    from geocamat.leftovers import run_tempdir

    stack_dir = run_tempdir("geocamat-stack-")  # a killed run's one is removed by the next run
    try:
        if nodata is None:
            nodata = bundle.extra.get("image_nodata")
        stack = model_stack(bundle, images, stack_dir, nodata)
        out_crs = crs_wkt(crs) if crs else stack.crs
        dataset = _dataset(stack, out_crs)
        index = dataset.index
        same_crs = crs is None or crs_equal(out_crs, stack.crs)
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
        if min_area_ha is not None:  # hectares -> pixels of this map (at its centre on a lon/lat grid)
            from geocamat.inference.mapping_unit import unit_pixels

            min_polygon_pixels = unit_pixels(min_area_ha, out_crs, out_res, footprint.centroid.y)
        aois: list[tuple[str | None, object]] = [(None, None)]
        not_read = 0  # the region layer's features that miss the images (not read)
        if region is not None:
            # only the features near the images are read (a national layer costs its part over the scene)
            aois = load_region(region, out_crs, region_field, within=(tuple(index.total_bounds), out_crs))
            not_read = aois.not_read
            if not_read and region_field is not None:
                import warnings

                from geocamat.errors import GeocamatWarning

                warnings.warn(f"{not_read} features of {region} do not meet the images: not mapped "
                              "(regions_not_read in report.json)", GeocamatWarning, stacklevel=2)
        elif region_field is not None:
            raise ConfigError("region_field needs a region file (--region)")
        if bbox is not None:
            # the bbox is in the images' CRS unless --bbox-crs says otherwise (also when --crs reprojects the map)
            box = bbox_geometry(tuple(bbox), bbox_crs if bbox_crs or same_crs else stack.crs, out_crs)
            aois = [(name, box if geom is None else geom.intersection(box)) for name, geom in aois]
        jobs = []
        folders = region_folders([name for name, _ in aois if name is not None])
        tile = int(window or bundle.tile_size)
        whole = snap_grid(footprint.bounds, out_res, out_crs, origin)  # the whole scene's map: where tiles start
        for name, geom in aois:
            if geom is not None and (geom.is_empty or not geom.intersects(footprint)):
                if region_field is None:
                    what = f"region {region}" if region else f"bbox {tuple(bbox)}"
                    raise ConfigError(f"{what} does not overlap the images (image bounds "
                                      f"{tuple(round(float(v), 3) for v in index.total_bounds)} in the output CRS)")
                continue
            area = footprint if geom is None else geom.intersection(footprint)
            if region is not None and geom is not None:  # a tile's margin of context around a region (nodata in
                area = area.buffer(tile * max(out_res)).intersection(footprint)  # its map): its edges are the whole
            grid = on_lattice(snap_grid(area.bounds, out_res, out_crs, origin), whole, tile_stride(tile, overlap))
            if region is None and geom is not None:  # a bbox: every pixel it touches is mapped, none left nodata
                geom = grid.box(0, 0, grid.height, grid.width)
            target = out_dir if name is None else out_dir / folders[name]
            jobs.append((name, geom, grid, target))
        if not jobs:
            raise ConfigError(f"no feature of region {region} overlaps the images")
        largest = max(g.width * g.height for _, _, g, _ in jobs)
        if min_polygon_pixels > largest:  # every region of the map is under the unit: landuse.gpkg came out empty
            raise ConfigError(f"the minimum mapping unit ({min_polygon_pixels} px"
                              + (f", {min_area_ha:g} ha" if min_area_ha is not None else "")
                              + f") is larger than the map ({largest} px): give a smaller --min-area or "
                              "--min-polygon-pixels")
        for _, _, _, target in jobs:
            if _has_results(target) and not overwrite and not resume:
                raise OutputExistsError(f"{target} already holds results: use --overwrite to replace them or "
                                        "--resume to continue an interrupted run")
            if not overwrite and not resume:
                refuse_interrupted(target)
        tta_mode = resolve_tta(tta, tta_views, tile, tile_stride(tile, overlap))
        settings = dict(overlap=overlap, tta=tta, tta_views=tta_mode if tta else None, window=window,
                        batch_size=batch_size, device=str(dev),
                        write_probabilities=write_probabilities, vectorise=vectorise,
                        min_polygon_pixels=min_polygon_pixels, min_area_ha=min_area_ha,
                        region=str(region) if region else None,
                        region_field=region_field, bbox=list(bbox) if bbox else None, bbox_crs=bbox_crs, crs=crs,
                        res=res, require_all_bands=require_all_bands, nodata=nodata)
        model_info = {"spec": bundle.model, "weights_sha256": weights_sha256(bundle),
                      "sha256": _file_sha(model_path), "path": str(model_path) if model_path else None,
                      "bands": bundle.bands, "tile_size": bundle.tile_size}
        inputs = {"images": [str(p) for p in stack.sources], "bands": stack.band_names,
                  "crs": stack.crs, "res": list(stack.res)}
        # windows: as many pixels per forward pass as batch_size tiles of the training size
        run_batch = max(1, batch_size * int(bundle.tile_size) ** 2 // window**2) if window else batch_size
        reports = []
        for name, geom, grid, target in jobs:
            run_head = head or head_for(bundle, tta=tta_mode == "all", window=window)
            engine = Engine(run_head, bundle, stack, index, grid, geom, target, dev=dev, overlap=overlap,
                            tta=tta_mode, tile=tile, batch_size=run_batch,
                            workers=workers or max(1, min(8, (os.cpu_count() or 1) // ranks.local_world)),
                            write_probabilities=write_probabilities,
                            vectorise=vectorise, min_polygon_pixels=min_polygon_pixels, resume=resume,
                            progress=progress and ranks.main, on_unit=on_unit,
                            weights_hash=model_info["weights_sha256"], require_all_bands=require_all_bands,
                            units=units, blend=blend, ranks=ranks)
            report = engine.run(dict(settings=settings, model=model_info, inputs=inputs, notes=stack.notes,
                                     region={"name": name, "field": region_field,
                                             "folder": target.name if name is not None else None,
                                             "bounds": list(geom.bounds) if geom is not None else None}))
            reports.append(report)
        if region_field is None:
            return reports[0]
        summary = {"regions": reports, "skipped_regions": [n for n, g in aois if n not in {j[0] for j in jobs}],
                   "regions_not_read": not_read}
        if ranks.main:
            summary["outputs"] = [write_region_table(out_dir / "regions.csv", reports)]
            write_json(out_dir / "report.json", summary)
        return summary
    finally:
        shutil.rmtree(stack_dir, ignore_errors=True)


def write_region_table(path: Path, reports: list[dict]) -> str:
    """``regions.csv`` (and its ``.csvt``): a row per region and class, the pixels and hectares the region's map
    gives it, for a spreadsheet or a join to the region layer (the per-region figures were only in report.json)."""
    import csv

    from geocamat.outputs.csv_types import write_csvt

    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["region", "folder", "class_id", "class_name", "pixels", "area_ha"])
        for report in reports:
            region = report.get("region") or {}
            for entry in report.get("classes", []):
                area = entry.get("area_ha")
                out.writerow([region.get("name"), region.get("folder"), entry["id"], entry["name"], entry["pixels"],
                              "" if area is None else round(float(area), 6)])
    write_csvt(path, ["String", "String", "Integer", "String", "Integer", "Real"])
    os.replace(tmp, path)
    return str(path)


def model_stack(bundle, images, workdir: Path, nodata: float | None = None):
    """The images as a land-use model needs them: its band selection and fill value (``nodata`` overrides the
    model's), its bands found by name (:func:`geocamat.data.stack.match_bands`), and a warning in ``notes`` when
    their values look scaled unlike the training imagery's (:mod:`geocamat.data.value_check`)."""
    from geocamat.data.stack import BandNotFoundError, match_bands, open_stack
    from geocamat.data.value_check import range_notes, scaling_notes

    if nodata is None:
        nodata = bundle.extra.get("image_nodata")
    try:
        stack = open_stack(images, workdir, bands=bundle.extra.get("band_selection"), nodata=nodata)
    except BandNotFoundError:  # other imagery than training's (another date's file names, a stack of the bands
        # picked): its bands are matched to the model's by name, or used in order when their count is the model's
        stack = open_stack(images, workdir, nodata=nodata)
    stack = match_bands(stack, bundle.bands, workdir)
    scaled = scaling_notes(stack.paths, stack.band_names, bundle.mean, bundle.std)
    stack.notes += scaled or range_notes(stack.paths, stack.band_names, bundle.extra.get("band_range"))
    return stack


def _file_sha(path) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    from geocamat.bundle import file_sha256

    return file_sha256(path)


def _dataset(stack, out_crs: str):
    """The TorchGeo dataset (and its R-tree index) over the stack, in the output CRS."""
    import contextlib
    import io

    from pyproj import CRS

    with contextlib.redirect_stdout(io.StringIO()):
        return stack.dataset(crs=CRS.from_wkt(out_crs))


