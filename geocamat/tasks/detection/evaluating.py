"""``geocamat evaluate`` with a detection model (mAP, precision and recall against reference boxes), and an
overlay picture of a model's detections."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from geocamat.bundle import Bundle
from geocamat.errors import ConfigError, InvalidLabelsError
from geocamat.tasks.detection.config import EvaluateOptions, PredictOptions
from geocamat.tasks.detection.inputs import (
    check_bands,
    check_bundle,
    evaluation_units,
    load_labelled,
    normalisation_for,
    read_bands,
    unit_name,
)
from geocamat.tasks.detection.predicting import threshold_notes
from geocamat.tasks.detection.running import detect_scene, detector_fn, device_for, resolve_options


def evaluate_detection(bundle: Bundle, images: list[str], options: EvaluateOptions, progress: bool = False) -> dict:
    """Score a detection model on labelled images, per tile and on the stitched scene output.

    Args:
        bundle: a detection model bundle.
        images: image paths/globs.
        options: predict options plus the reference boxes (any supported format), their class field and
            ``class_agnostic`` (all classes count as one, e.g. to score a ``Tree`` model on ``Dead``/``Alive``).
        progress: bars of the windows and tiles of each image (on a terminal's stderr).

    Returns:
        ``{"scene": metrics, "tiles": metrics, "backend": ..., ...}`` with ``map_50``, ``map`` (0.5:0.95),
        ``map_75``, ``precision``, ``recall``, ``f1`` at the score threshold.
    """
    import sys

    import torch

    from geocamat.data.boxes import expand_label_paths, load_boxes
    from geocamat.data.chunks import bound_gdal_cache
    from geocamat.data.detection_images import expand_paths, image_info, read_image
    from geocamat.data.detection_tiles import grid_offsets, window_boxes
    from geocamat.inference.telemetry import progress_bar
    from geocamat.metrics.detection import best_f1_threshold, detection_metrics, precision_recall

    bound_gdal_cache()
    check_bundle(bundle)
    if options.bbox is not None or (options.region is not None and options.region_field is None):
        raise ConfigError("evaluate scores whole images against their reference; an AOI is for predict (with "
                          "--region, give --region-field to compare the counts per region)")
    agnostic, label_field = options.class_agnostic, options.reference_field
    opts = resolve_options(bundle, options)
    paths = expand_paths(images, "image")
    from geocamat.preflight import check_resolution

    for path in paths:  # each image is detected on its own grid
        check_resolution(bundle, path, force=options.force, res_option=False)
    label_paths = expand_label_paths(options.reference, "reference boxes")
    names = [c.name for c in bundle.classes]
    infos = [image_info(p) for p in paths]
    units, unit_infos, notes = evaluation_units(paths, infos, label_paths)
    try:
        boxes, _ = load_boxes([Path(p) for p in label_paths], unit_infos, label_field, None if agnostic else names)
    except InvalidLabelsError as exc:
        if "class" not in str(exc):
            raise
        raise InvalidLabelsError(f"{exc} (or evaluate with --class-agnostic)") from None
    index = {c: i for i, c in enumerate(names)}
    device = device_for(opts)
    model = bundle.build_model().to(device)
    thr = float(opts["score_threshold"])
    low = min(0.05, thr)
    k = 1 if agnostic else len(names)

    def lab(arr):
        return np.zeros(len(arr), np.int64) if agnostic else np.asarray(arr, np.int64)

    regions = None
    if options.region_field is not None:
        from geocamat.tasks.detection.inputs import regions_of_interest

        _, regions = regions_of_interest(opts, infos[0].crs, infos)
    scene_p, scene_t, tile_p, tile_t = [], [], [], []
    ts = bundle.tile_size
    tile_fn = detector_fn(model, opts, with_cam=False)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for unit, ib in zip(units, boxes, strict=True):
            mosaic = unit if not isinstance(unit, str) else None
            for path in mosaic.paths if mosaic else [unit]:
                check_bands(bundle, path)
            mean, std = normalisation_for(bundle, unit)
            m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
            gt_l = lab([index.get(n, 0) for n in ib.names])
            det = detect_scene(bundle, model, unit, opts, device, low, progress, "evaluate")
            scene_p.append({"boxes": det.boxes, "scores": det.scores, "labels": lab(det.labels)})
            scene_t.append({"boxes": ib.boxes, "labels": gt_l})
            tiles = [(c, r) for c in grid_offsets(ib.width, ts, ts) for r in grid_offsets(ib.height, ts, ts)
                     if mosaic is None or mosaic.covers(c, r, ts, ts)]
            bar = progress_bar(total=len(tiles), unit="tile", desc=f"evaluate tiles {unit_name(unit)}",
                               file=sys.stderr, disable=None if progress else True, dynamic_ncols=True, leave=False)
            for col, row in tiles:
                data, valid = (mosaic.read((col, row, ts, ts), read_bands(bundle)) if mosaic else
                               read_image(unit, (col, row, ts, ts), read_bands(bundle)))
                x = (torch.from_numpy(data) - m) / s
                x[:, ~torch.from_numpy(valid)] = 0
                d = tile_fn(x[None].to(device))[0][0]
                keep = (d["scores"] >= low).cpu().numpy()
                tile_p.append({"boxes": d["boxes"].cpu().numpy()[keep], "scores": d["scores"].cpu().numpy()[keep],
                               "labels": lab(d["labels"].cpu().numpy()[keep])})
                tb, idx = window_boxes(ib, col, row, ts)
                tile_t.append({"boxes": tb, "labels": gt_l[idx]})
                bar.update(1)
            bar.close()
    counts = None
    if regions is not None:
        counts = region_count_errors(scene_p, scene_t, unit_infos, regions.parts, infos[0].crs, thr)
    scene = detection_metrics(scene_p, scene_t, k, thr)
    scene["iou_40"] = precision_recall(scene_p, scene_t, thr, iou=0.4)
    scene["found"] = int(sum((np.asarray(p["scores"]) >= thr).sum() for p in scene_p))
    scene["labelled"] = int(sum(len(t["boxes"]) for t in scene_t))
    scene["best_f1"] = best_f1_threshold(scene_p, scene_t, k)
    return {
        "scene": scene,
        "tiles": detection_metrics(tile_p, tile_t, k, thr),
        "notes": threshold_notes(bundle, thr, scene["found"], scene["labelled"], scene["best_f1"]) + notes,
        "backend": "geocamat COCO-style AP (101-point, IoU .50:.05:.95, no cap on detections per image)",
        "class_agnostic": agnostic, "score_threshold": thr, "images": [str(p) for p in paths],
        "seconds": round(time.perf_counter() - t0, 3),
    } | ({"counts_by_region": counts} if counts is not None else {})


def region_count_errors(preds: list[dict], truths: list[dict], infos: list, regions: list, crs, threshold: float
                        ) -> dict:
    """Objects found (score >= ``threshold``) vs labelled in each region, by box centre, and the errors of the
    counts over the regions that hold a labelled object or a found one: mean absolute error, its share of the
    mean labelled count, root mean square error and bias (found - labelled)."""
    from geocamat.tasks.detection.predicting import region_of, region_tree

    tree = region_tree(regions)
    names = [v for v, _ in regions]
    found, labelled = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for p, t, info in zip(preds, truths, infos, strict=True):
        keep = np.asarray(p["scores"]) >= threshold
        for counts, boxes in ((found, np.asarray(p["boxes"])[keep]), (labelled, np.asarray(t["boxes"]))):
            for value in region_of(boxes.reshape(-1, 4), info, regions, crs, tree):
                if value is not None:
                    counts[value] += 1
    rows = [{"region": v, "labelled": labelled[v], "found": found[v], "error": found[v] - labelled[v]}
            for v in names if labelled[v] or found[v]]
    err = np.array([r["error"] for r in rows], float)
    mean_labelled = float(np.mean([r["labelled"] for r in rows])) if rows else 0.0
    mae = float(np.abs(err).mean()) if rows else None
    return {"regions": rows, "mae": mae, "rmse": float(np.sqrt((err ** 2).mean())) if rows else None,
            "bias": float(err.mean()) if rows else None,
            "relative_mae": round(mae / mean_labelled, 4) if rows and mean_labelled else None}


def render_overlay(bundle: Bundle, image: str, out_png: Path, options: PredictOptions | None = None,
                   labels: list[str] | None = None, title: str | None = None) -> dict:
    """Draw a model's detections (class colours) and optional ground truth (dashed) over an RGB image to PNG.

    Args:
        bundle: a detection model bundle.
        image: the image (first 3 bands shown, stretched 2-98%).
        out_png: output PNG.
        options: predict options (score_threshold, overlap, nms_iou, device ...).
        labels: optional label files of the image, drawn dashed white.
        title: optional title; default names the image, the count and the threshold.

    Returns:
        ``{"detections": count, "png": path}``.
    """
    from geocamat.data.detection_images import image_info, read_image
    from geocamat.outputs.detections import plot_detections

    check_bundle(bundle)
    opts = resolve_options(bundle, options or PredictOptions())
    check_bands(bundle, image)
    model = bundle.build_model().to(device_for(opts))
    det = detect_scene(bundle, model, image, opts, device_for(opts), float(opts["score_threshold"]))
    data, _ = read_image(image, bands=read_bands(bundle))
    rgb = data[:3].transpose(1, 2, 0) if data.shape[0] >= 3 else np.repeat(data[:1].transpose(1, 2, 0), 3, axis=2)
    lo, hi = np.percentile(rgb, 2), np.percentile(rgb, 98)
    rgb = np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)
    truth = None
    if labels:
        _, (ib,), _ = load_labelled([image], labels, "label", None)
        truth = ib.boxes
    info = image_info(image)
    title = title or f"{Path(image).name}: {len(det.boxes)} detections (score >= {opts['score_threshold']})"
    plot_detections(rgb, det.boxes, det.labels, bundle.classes, out_png, truth=truth, title=title)
    return {"detections": len(det.boxes), "png": str(out_png), "size": (info.width, info.height)}
