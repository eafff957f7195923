"""``geocamat predict`` with a detection model: objects over whole images (or mosaics of sheets), written as
``detections.gpkg`` (+ ``.qml``) and ``report.json``; across ranks and resumable."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from geocamat.bundle import Bundle, file_sha256
from geocamat.errors import ConfigError, InvalidRasterError
from geocamat.outputs.jsonfile import write_json
from geocamat.tasks.detection.config import PredictOptions
from geocamat.tasks.detection.inputs import (
    aoi_in_pixels,
    check_bands,
    check_bundle,
    check_map_options,
    detection_units,
    regions_of_interest,
    unit_name,
)
from geocamat.tasks.detection.running import detect_raw, device_for, merge_windows, resolve_options, run_identity


def predict_detection(bundle: Bundle, images: list[str], out_dir: Path, options: PredictOptions,
                      progress: bool = True, model_path: str | None = None, final_dir: Path | None = None,
                      ranks=None, fresh: bool = False) -> dict:
    """Detect objects over whole images and write ``detections.gpkg`` (+ ``.qml``) and ``report.json``.

    Args:
        bundle: a detection model bundle.
        images: image paths/globs (GeoTIFFs or PNG/JPG; all georeferenced or all plain).
        out_dir: output folder (created).
        options: score threshold, overlap, batch size, device, NMS IoU.
        progress: a bar of each image's windows, then one line per image.
        final_dir: where ``out_dir`` will be renamed to when it is a temporary stage; the report records
            the outputs' final absolute paths.
        ranks: this process's share of a run over several processes (:class:`geocamat.inference.ranks.Ranks`):
            each rank detects every W-th batch of windows of each image, rank 0 merges them all (the objects of
            one process) and writes the outputs; the other ranks write nothing but their detections, in a folder
            beside ``final_dir`` that every rank sees.
        fresh: discard the windows of an interrupted run into ``final_dir`` (``--overwrite``); else they are
            refused, or continued with ``options.resume`` (:mod:`geocamat.inference.detect_store`).

    Returns:
        The report dict (also written to ``report.json``); on ranks other than 0, a short one.
    """
    import pandas as pd
    import torch
    from pyproj import CRS

    from geocamat.data.chunks import bound_gdal_cache
    from geocamat.data.detection_images import expand_paths, image_info
    from geocamat.outputs.detections import write_detections

    t0 = time.perf_counter()
    bound_gdal_cache()  # GDAL's block cache (5% of the machine's memory by default) would grow with the scene
    check_bundle(bundle)
    opts = resolve_options(bundle, options)
    paths = expand_paths(images, "image")
    infos = [image_info(p) for p in paths]
    georef = [i.crs is not None for i in infos]
    if any(georef) and not all(georef):
        raise InvalidRasterError("some images are georeferenced and some are not; predict them in separate runs")
    grey = [Path(p).name for p in paths if check_bands(bundle, p)]
    from geocamat.inference.ranks import Ranks

    ranks = ranks or Ranks()
    device = device_for(opts, ranks)
    model = bundle.build_model().to(device)
    out_dir = Path(out_dir)
    if ranks.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    out_crs = _output_crs(opts.get("crs"), infos)
    aoi_crs = infos[0].crs  # a bbox without --bbox-crs is in the images' CRS, whatever --crs the output takes
    aoi, regions = regions_of_interest(opts, aoi_crs, infos)
    units, unit_infos = detection_units(paths, infos)
    filters = [(None, None, True)] * len(units)
    if aoi is not None:
        filters = [aoi_in_pixels(aoi, aoi_crs, info) for info in unit_infos]
        if not any(meets for _, _, meets in filters):
            what = f"region {opts['region']}" if opts.get("region") is not None else f"bbox {tuple(opts['bbox'])}"
            raise ConfigError(f"{what} does not overlap the images; check its coordinates and CRS (--bbox-crs)")
    from geocamat.inference.detect_store import WindowStore

    store = WindowStore(final_dir if final_dir is not None else out_dir)
    model_sha = file_sha256(model_path) if model_path else None
    if ranks.main:
        kept = store.prepare(run_identity(bundle, model_sha, paths, opts), resume=bool(opts.get("resume")),
                             fresh=fresh)
        if kept and progress:
            print(f"resuming: {kept} chunks of windows done by the interrupted run are kept")
    ranks.barrier()
    done = store.done()
    runs = []
    with torch.inference_mode():
        for k, (unit, (window, _, _)) in enumerate(zip(units, filters, strict=True)):
            within = window(bundle.tile_size) if window is not None else None
            runs.append(detect_raw(bundle, model, unit, opts, device, float(opts["score_threshold"]),
                                    progress and ranks.main, within=within, ranks=ranks if ranks.world > 1 else None,
                                    store=store, unit=k, done=done.get(k, frozenset())))
    ranks.barrier()
    if not ranks.main:  # what the CLI's line says of the other ranks
        return {"rank": ranks.rank, "world": ranks.world, "tiles_processed": sum(r[4] for r in runs)}
    raws = [(info, n, raw, seconds) for (info, n, _, seconds, _), raw in zip(runs, store.load(len(units)),
                                                                             strict=True)]
    frames, per_image, mosaics = [], [], []
    tree = region_tree(regions.parts) if regions is not None else None
    for unit, (_, inside, _), (info, n_windows, raw, seconds) in zip(units, filters, raws, strict=True):
        det = merge_windows(raw, info, n_windows, opts)
        det.seconds = seconds
        if inside is not None and len(det.boxes):
            keep = inside(det.boxes)
            det.boxes, det.scores = det.boxes[keep], det.scores[keep]
            det.labels, det.cam_evidence = det.labels[keep], det.cam_evidence[keep]
        mosaic = unit if not isinstance(unit, str) else None
        g, sheet = _objects(bundle, unit, info, det, out_crs)
        if regions is not None:
            g.insert(1, "region", region_of(det.boxes, info, regions.parts, aoi_crs, tree))
        frames.append(g)
        run = {"detections": len(det.boxes), "windows": det.windows, "raw_detections": det.raw_detections,
               "seconds": round(det.seconds, 3)}
        if mosaic:
            counts_in = np.bincount(sheet, minlength=len(mosaic.sheets))
            per_image.extend({"image": str(Path(s.path).resolve()), "detections": int(n), "mosaic": len(mosaics)}
                             for s, n in zip(mosaic.sheets, counts_in, strict=True))
            mosaics.append({"images": [str(Path(p).resolve()) for p in mosaic.paths],
                            "width": mosaic.width, "height": mosaic.height, **run})
        else:
            per_image.append({"image": str(Path(unit).resolve()), **run})
        if progress:
            print(f"{unit_name(unit)}: {len(det.boxes)} objects in {det.windows} windows ({det.seconds:.1f} s)")
    frame = pd.concat(frames, ignore_index=True)
    files = write_detections(out_dir / "detections.gpkg", frame, bundle.classes, out_crs)
    by_region = None
    if regions is not None:
        by_region = region_counts(frame, regions, aoi_crs, [c.name for c in bundle.classes])
        by_region.to_csv(out_dir / "counts.csv", index=False)
        from geocamat.outputs.csv_types import types_of, write_csvt

        write_csvt(out_dir / "counts.csv", types_of(by_region))  # QGIS reads the counts as numbers
        files["counts"] = str(out_dir / "counts.csv")
        from geocamat.outputs.region_counts import write_region_counts

        layer = write_region_counts(out_dir / "regions.gpkg", by_region, regions.parts, aoi_crs, out_crs)
        files.update(regions_gpkg=layer["gpkg"], regions_qml=layer["qml"])
    home = Path(final_dir if final_dir is not None else out_dir).resolve()
    files = {k: str(home / Path(v).name) if isinstance(v, str) else v for k, v in files.items()}
    counts = {c.name: int((frame["class_name"] == c.name).sum()) for c in bundle.classes}
    report = {
        "task": "detection",
        "inputs": per_image,
        "model": {"path": str(Path(model_path).resolve()) if model_path else None, "sha256": model_sha,
                  "spec": bundle.model, "classes": [c.name for c in bundle.classes],
                  "regulariser": bundle.regulariser},
        "settings": {k: opts[k] for k in ("score_threshold", "overlap", "nms_iou", "batch_size", "match_iou",
                                          "duplicate_iou", "duplicate_merge", "tta", "region", "bbox", "bbox_crs",
                                          "crs")}
        | {"device": device, "tile_size": bundle.tile_size},
        "crs": CRS.from_user_input(out_crs).to_string() if out_crs is not None else None,
        "coordinates": "image CRS" if out_crs is not None else "pixels (x = column, y = -row)",
        "counts": counts, "total": int(len(frame)), "outputs": files,
        "mosaics": mosaics,
        "counts_by_region": None if by_region is None else {
            str(r): {"objects": int(g["objects"].sum()), "area_ha": float(g["area_ha"].iloc[0]),
                     "imaged_pct": float(g["imaged_pct"].iloc[0]),
                     **{c: int(n) for c, n in zip(g["class_name"], g["objects"], strict=True)}}
            for r, g in by_region.groupby("region", sort=False)},
        "skipped_regions": None if regions is None else regions.skipped,
        "regions_not_read": None if regions is None else regions.not_read,
        "notes": threshold_notes(bundle, float(opts["score_threshold"]), int(len(frame))) + grey_notes(grey)
        + mosaic_notes(mosaics) + stacked_notes(infos) + region_notes(regions) + value_notes(bundle, paths),
        "timings": {"seconds": round(time.perf_counter() - t0, 3)},
        "machine": platform.node(),
    }
    write_json(out_dir / "report.json", report)
    store.remove()  # the windows are in the outputs now
    return report


def _output_crs(crs: str | None, infos: list):
    """The CRS of detections.gpkg: ``--crs``, else the first image's; None for plain images (pixels)."""
    georef = [i.crs is not None for i in infos]
    if crs is None:
        return infos[0].crs if all(georef) else None
    check_map_options({"crs": crs}, georef)
    from rasterio.crs import CRS

    from geocamat.inference.grid import crs_wkt

    return CRS.from_wkt(crs_wkt(crs))


def _objects(bundle: Bundle, unit, info, det, out_crs):
    """The objects of one image (or mosaic) as rows of detections.gpkg in ``out_crs`` (areas in m² from the
    image's own CRS), and for a mosaic the sheet of each (the one holding its centre; None for an image)."""
    import geopandas as gpd

    from geocamat.outputs.detections import box_polygons, polygon_areas_m2

    polys = box_polygons(det.boxes, info.transform if info.crs is not None else None)
    sheet = None
    if isinstance(unit, str):
        names = Path(unit).name
    else:
        centre = (det.boxes[:, :2] + det.boxes[:, 2:]) / 2
        sheet = unit.sheet_of(centre[:, 0], centre[:, 1])
        names = [Path(unit.sheets[k].path).name for k in sheet]
    g = gpd.GeoDataFrame({
        "image": names, "class_id": [bundle.classes[int(k)].id for k in det.labels],
        "class_name": [bundle.classes[int(k)].name for k in det.labels],
        "score": det.scores.astype(float), "cam_evidence": det.cam_evidence.astype(float),
        "xmin": det.boxes[:, 0].astype(float), "ymin": det.boxes[:, 1].astype(float),
        "xmax": det.boxes[:, 2].astype(float), "ymax": det.boxes[:, 3].astype(float),
    }, geometry=polys, crs=info.crs)
    g.insert(4, "area", polygon_areas_m2(g.geometry.values, info.crs))
    if out_crs is not None and info.crs != out_crs:
        g = g.to_crs(out_crs)
    return g, sheet


def region_tree(regions: list):
    """An R-tree of the regions' geometries, built once for every :func:`region_of` of a run."""
    import shapely

    return shapely.STRtree([g for _, g in regions])


def region_of(boxes: np.ndarray, info, regions: list, regions_crs, tree) -> list:
    """The region (a ``--region-field`` value) holding each box's centre (the first one, on a shared edge);
    ``tree``: :func:`region_tree` of ``regions``."""
    import shapely

    if len(boxes) == 0:
        return []
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    t = info.transform
    x, y = t.a * centre[:, 0] + t.b * centre[:, 1] + t.c, t.d * centre[:, 0] + t.e * centre[:, 1] + t.f
    if info.crs != regions_crs:
        from pyproj import Transformer

        x, y = Transformer.from_crs(info.crs, regions_crs, always_xy=True).transform(x, y)
    obj, part = tree.query(shapely.points(np.asarray(x), np.asarray(y)), predicate="intersects")
    first = np.full(len(boxes), len(regions))
    np.minimum.at(first, obj, part)
    return [regions[k][0] if k < len(regions) else None for k in first]


def region_counts(frame, regions, regions_crs, classes: list[str]):
    """Objects of each class in each region the images cover (zeros included), the area of its covered part, the
    share of the region that part is (``imaged_pct``) and the objects per hectare of it (``regions``: the
    :class:`~geocamat.tasks.detection.inputs.CountRegions`)."""
    import pandas as pd

    from geocamat.outputs.detections import polygon_areas_m2

    area_ha = polygon_areas_m2([g for _, g in regions.parts], regions_crs) / 1e4
    counted = frame.groupby(["region", "class_name"]).size()
    rows = [{"region": value, "class_name": c, "objects": int(counted.get((value, c), 0)),
             "area_ha": round(float(a), 6), "imaged_pct": round(100 * share, 1)}
            for (value, _), a, share in zip(regions.parts, area_ha, regions.imaged_share, strict=True)
            for c in classes]
    table = pd.DataFrame(rows, columns=["region", "class_name", "objects", "area_ha", "imaged_pct"])
    table["objects_per_ha"] = (table["objects"] / table["area_ha"].where(table["area_ha"] > 0)).round(3)
    return table


def region_notes(regions) -> list[str]:
    """Lines on regions the images cover only in part, or miss (``regions``: CountRegions or None)."""
    if regions is None:
        return []
    notes = []
    partial = [v for (v, _), share in zip(regions.parts, regions.imaged_share, strict=True) if share < 0.995]
    if partial:
        shown = ", ".join(map(str, partial[:3])) + (f" and {len(partial) - 3} more" if len(partial) > 3 else "")
        notes.append(f"note: {len(partial)} of {len(regions.parts)} regions are only partly covered by the images "
                     f"({shown}): their counts, area_ha and objects_per_ha are of the covered part (imaged_pct)")
    if regions.skipped:
        notes.append(f"note: {len(regions.skipped)} regions near the images do not meet them (no count given; "
                     "skipped_regions in report.json)")
    if regions.not_read:
        notes.append(f"note: {regions.not_read} features of the region layer do not meet the images: not counted "
                     "(regions_not_read in report.json)")
    return notes


def mosaic_notes(mosaics: list[dict]) -> list[str]:
    """One line when images were detected as mosaics."""
    if not mosaics:
        return []
    n = sum(len(m["images"]) for m in mosaics)
    return [f"note: {n} images tile one pixel grid and touch: detected as {len(mosaics)} mosaic"
            f"{'s' if len(mosaics) > 1 else ''} (normalised together), so that objects on their edges are found "
            f"once; each object is listed under the image that holds its centre"]


def stacked_notes(infos: list) -> list[str]:
    """One line when images cover the same ground (two dates of one place): each was detected alone."""
    from geocamat.data.image_mosaic import stacked_images

    stacked = stacked_images(infos)
    if not stacked:
        return []
    names = ", ".join(Path(infos[i].path).name for i in stacked[:3]) + (" ..." if len(stacked) > 3 else "")
    return [f"note: {len(stacked)} images cover the same ground as another ({names}): each detected alone, not in "
            "a mosaic, where one would hide the other"]


def value_notes(bundle: Bundle, paths: list) -> list[str]:
    """Warnings on the images' values (a sample of the files): images of one value in every band (white, a fill:
    a detector "found" 462 objects in one), and, for a model normalised by its training statistics, values a
    scaling away from them (:mod:`geocamat.data.value_check`)."""
    from geocamat.data.detection_images import image_band_stats
    from geocamat.data.fill_check import sample_files
    from geocamat.data.value_check import scaling_notes
    from geocamat.errors import InvalidRasterError

    flat = []
    for path in sample_files(paths):
        try:
            mean, std = image_band_stats(str(path), max_side=256)
        except InvalidRasterError:  # no valid pixel: said where it is read
            continue
        if max(std) <= 1e-6:  # (the statistics floor a constant band's std at 1e-6)
            flat.append(f"{Path(path).name} ({', '.join(f'{v:g}' for v in mean)})")
    notes = []
    if flat:
        notes.append(f"warning: {len(flat)} image{'s hold' if len(flat) > 1 else ' holds'} one value in every band "
                     f"({'; '.join(flat[:3])}): there is nothing to detect there, whatever is reported")
    if bundle.extra.get("normalise", "dataset") == "dataset":
        notes += scaling_notes([Path(p) for p in paths], bundle.bands, bundle.mean, bundle.std)
    return notes


def grey_notes(names: list[str]) -> list[str]:
    """The note that grey images were read as 3 equal bands for a colour model (none when there are none)."""
    if not names:
        return []
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return [f"note: {shown}: grey, read as 3 equal bands for the model's colour bands"]


def threshold_notes(bundle: Bundle, threshold: float, found: int, labelled: int | None = None,
                    reference_best: dict | None = None) -> list[str]:
    """One-line notes when a score threshold returns almost nothing (or far fewer objects than labelled).

    Args:
        bundle: the detection model (its validation best-F1 threshold, when training recorded one).
        threshold: the score threshold used.
        found: objects kept at ``threshold``.
        labelled: objects in the reference (evaluation), else None (prediction).
        reference_best: best-F1 record on the reference (evaluation).
    """
    best = (bundle.extra.get("validation_best_f1") or {}).get("threshold")
    few = found == 0 or (labelled is not None and found < 0.5 * labelled)
    above = best is not None and threshold > best + 1e-9
    if not (few or (labelled is None and above and found < 10)):
        return []
    counted = f"{found} object{'s' if found != 1 else ''} at score >= {threshold:g}"
    if labelled is not None:
        counted += f" for {labelled} labelled"
    parts = [counted]
    if best is not None:
        parts.append(f"the validation split's best-F1 threshold is {best:.3g}" + (
            f" (--score-threshold {best:.3g})" if above else ""))
    if reference_best and reference_best.get("threshold") is not None:
        parts.append(f"on this reference the best F1 ({reference_best['f1']:.3f}) is at score >= "
                     f"{reference_best['threshold']:.3g}")
    if best is None and not reference_best:
        parts.append("lower --score-threshold to see weaker detections")
    return ["note: " + "; ".join(parts)]
