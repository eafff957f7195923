"""Detection workflows the CLI calls: train, predict, evaluate.

``config``/``options`` are plain dicts (YAML merged with ``--set key=value`` and flags); see docs/detection.md
for every key. User mistakes raise :mod:`geocamat.errors` exceptions with one-line messages.
"""

from __future__ import annotations

import platform
import random
import time
from pathlib import Path

import numpy as np

from geocamat.bundle import Bundle, file_sha256
from geocamat.data.classes import build_classes
from geocamat.errors import BundleError, ConfigError, InvalidLabelsError, InvalidRasterError
from geocamat.outputs.jsonfile import write_json
from geocamat.tasks.detection.config import DetectionConfig, EvaluateOptions, PredictOptions
from geocamat.tasks.training import build_regulariser_from, build_trainer, set_zero_fill, use_threads


def _load_labelled(images: list[str], labels: list[str], label_field: str, classes: list[str] | None):
    from geocamat.data.boxes import load_boxes
    from geocamat.data.detection_images import image_info

    infos = [image_info(p) for p in images]
    return infos, *load_boxes([Path(p) for p in labels], infos, label_field, classes)


def _accelerator(name: str | None) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "gpu":
        return "cuda"
    return name


def _start_spec(cfg: DetectionConfig, init) -> dict:
    """Model settings that follow the starting weights when the user did not set them (None), then the
    fallbacks of :data:`DetectionConfig.MODEL_FALLBACKS`.

    The backbone becomes the weights' own (and the stem theirs); from a detector bundle, also its detector,
    pyramid width and anchors, so the whole detector can be taken.
    """
    stem = {}
    if init is not None:
        from geocamat.models.weights import detector_backbone

        if cfg.backbone is None:
            cfg.backbone = detector_backbone(init)
        spec = init.source_spec or {}
        if spec.get("name") == "detector":
            for key, source in (("detector", "arch"), ("fpn_channels", "fpn_channels"),
                                ("anchor_sizes", "anchor_sizes")):
                if getattr(cfg, key) is None and source in spec:
                    setattr(cfg, key, spec[source])
        stem = {"stem_kernel": init.stem_kernel}
    cfg.fill_model_fallbacks()
    return stem


def _default_threshold(cfg: DetectionConfig, metrics: dict) -> tuple[float, str, dict | None]:
    """Predict's default score threshold: the one given, else the validation split's best-F1 one, else the
    fallback (0.3).

    Returns:
        (threshold, where it comes from, the validation best-F1 record or None).
    """
    best = metrics.get("best_f1")
    if cfg.score_threshold is not None:
        return float(cfg.score_threshold), "configured", best
    if best and best.get("threshold") is not None:
        return round(float(best["threshold"]), 4), "validation best F1", best
    fallback = float(cfg.MODEL_FALLBACKS["score_threshold"])
    return fallback, "default (no validation detection was right)" if best else "default (no validation split)", best


def occlusion_line(name: str) -> str:
    """The line a detection run prints about its training-time occlusion (detection's default is none)."""
    if name == "none":
        return ("occlusion: none (detection's default; --camat trains with object-aware CAMAT, which costs mAP on "
                "sites never trained on today: docs/detection.md)")
    what = "object-aware CAMAT" if name == "camat" else "object-aware Random Erasing"
    return f"occlusion: {what} (measured below none on sites never trained on: docs/bench_detection.md)"


def scenes_line(sources: list, cache_mb: float) -> str:
    """The line a run prints about where its training tiles come from: memory or the files."""
    from geocamat.data.detection_images import NormalisedImage

    mb = sum(s.nbytes for s in sources) / 2**20
    if any(isinstance(s, NormalisedImage) for s in sources):
        return (f"training images: {mb:,.0f} MB normalised, more than scene_cache_mb ({cache_mb:g}): tiles are read "
                "from the files as they are drawn (memory does not grow with the images)")
    return f"training images: {mb:,.0f} MB normalised, read once into memory (scene_cache_mb {cache_mb:g})"


def train_detection(cfg: DetectionConfig, out_dir: Path, progress: bool = True, log=print,
                    checkpoint: Path | None = None, shown: Path | None = None) -> dict:
    """Train a detector (object-aware CAMAT or a baseline, or none) and write ``model.geocamat`` + ``metrics.json``.

    Every epoch ends with ``out_dir/checkpoints/last.ckpt`` (removed when the run succeeds), which
    ``train --resume`` continues from.

    Args:
        cfg: the settings (see :class:`geocamat.tasks.detection.config.DetectionConfig`, docs/detection.md).
        out_dir: output folder (created; the run's stage).
        progress: show Lightning's progress bar.
        checkpoint: continue the killed run that saved this checkpoint (its starting weights are in it).
        shown: the run folder as the user named it (in messages).

    Returns:
        The metrics dict (validation mAP etc., training step time, counts).
    """
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from geocamat.data.boxes import expand_label_paths
    from geocamat.data.chunks import bound_gdal_cache
    from geocamat.data.detection_images import band_stats, expand_paths
    from geocamat.data.detection_tiles import (
        DetectionTiles,
        Tile,
        anchor_sizes_from_boxes,
        collate,
        grid_offsets,
        open_normalised,
        plan_tiles,
        validation_plan,
    )
    from geocamat.data.samplers import WindowSampler
    from geocamat.tasks.detection.module import DetectionTask
    from geocamat.tasks.training import atomic_checkpoints, last_checkpoint

    t_start = time.perf_counter()
    bound_gdal_cache()  # from the statistics on: GDAL's block cache would otherwise grow with the scene
    from geocamat.allocator import fix_mmap_threshold

    fix_mmap_threshold()  # thousands of tiles read and freed would otherwise fragment the heap
    from geocamat.models.weights import load_init

    init = load_init(cfg.weights, cfg.init_from, progress)
    stem = _start_spec(cfg, init)
    use_threads(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = expand_paths(cfg.images, "image")
    labels = expand_label_paths(cfg.labels, "labels")
    from geocamat.preflight import check_inputs

    check_inputs(images)  # a truncated image fails here, not after an epoch
    infos, boxes, classes = _load_labelled(images, labels, cfg.label_field, cfg.classes)
    counts = [len(b.boxes) for b in boxes]
    if sum(counts) == 0:
        raise InvalidLabelsError("no box falls on the training images; check the label files and image names")
    bands = _training_bands(images, log)
    mean, std = band_stats(images, bands=len(bands))
    seed = int(cfg.seed)
    L.seed_everything(seed, workers=True, verbose=False)
    random.seed(seed)
    ts = int(cfg.tile_size)
    class_index = {c: i for i, c in enumerate(classes)}

    anchors_from = "configured" if cfg.anchor_sizes is not None else None
    if cfg.anchor_sizes is None:
        cfg.anchor_sizes = anchor_sizes_from_boxes(boxes)
        anchors_from = "training boxes"
        log(f"anchor sizes {' '.join(map(str, cfg.anchor_sizes))} px, from the training boxes (quantiles "
            f"5/35/65/95% of sqrt(w*h)); set anchor_sizes to change them")
    elif init is not None and (init.source_spec or {}).get("name") == "detector" and \
            cfg.anchor_sizes == (init.source_spec or {}).get("anchor_sizes"):
        anchors_from = "starting detector"
    sources = open_normalised(images, mean, std, cfg.normalise, cfg.scene_cache_mb, len(bands))
    col_limits = None
    val_ds = None
    split_kind = "val_images"
    if cfg.val_images:
        v_images = expand_paths(cfg.val_images, "validation image")
        v_labels = expand_label_paths(cfg.val_labels or cfg.labels, "validation labels")
        _, v_boxes, _ = _load_labelled(v_images, v_labels, cfg.label_field, classes)
        v_tiles = [Tile(i, c, r) for i, b in enumerate(v_boxes) for c in grid_offsets(b.width, ts, ts)
                   for r in grid_offsets(b.height, ts, ts)]
        v_sources = open_normalised(v_images, mean, std, cfg.normalise, cfg.scene_cache_mb, len(bands))
        val_ds = DetectionTiles(v_sources, v_boxes, class_index, v_tiles, ts)
        train_tiles, _ = plan_tiles(boxes, ts, val_fraction=0.0, empty_ratio=float(cfg.empty_ratio),
                                    max_tiles=cfg.max_tiles, seed=seed)
    else:
        train_tiles, val_tiles = plan_tiles(boxes, ts, val_fraction=float(cfg.val_fraction),
                                            empty_ratio=float(cfg.empty_ratio), max_tiles=cfg.max_tiles,
                                            seed=seed)
        plan = validation_plan(boxes, ts, float(cfg.val_fraction))
        col_limits, split_kind = plan.splits, plan.kind
        log(plan.note)
        if val_tiles:
            val_ds = DetectionTiles(sources, boxes, class_index, val_tiles, ts)
    if not train_tiles:
        raise InvalidLabelsError("no training tile holds a box; use a smaller tile_size or check the labels")
    train_ds = DetectionTiles(sources, boxes, class_index, train_tiles, ts, augment=True,
                              scale_jitter=float(cfg.scale_jitter), colour_jitter=float(cfg.colour_jitter),
                              col_limits=col_limits, grey=float(cfg.grey))
    # a new order every epoch from (seed, epoch): a resumed run draws the epochs the killed one would have; under
    # DDP each rank takes its own shard of it (and validates every tile, so that rank 0 scores them all)
    order = WindowSampler(np.arange(len(train_ds)), np.zeros(len(train_ds), int), group=len(train_ds), seed=seed)
    workers = int(cfg.num_workers)  # each worker opens the image files itself and reads its tiles
    train_dl = DataLoader(train_ds, batch_size=int(cfg.batch_size), sampler=order, collate_fn=collate,
                          drop_last=len(train_ds) > int(cfg.batch_size), num_workers=workers,
                          persistent_workers=workers > 0)  # workers' seeds: from the global (checkpointed) RNG
    val_dl = DataLoader(val_ds, batch_size=int(cfg.batch_size), collate_fn=collate) if val_ds else None

    model_kwargs = {"arch": cfg.detector, "in_channels": len(bands), "num_classes": len(classes),
                    "tile_size": ts, "backbone": cfg.backbone, "fpn_channels": int(cfg.fpn_channels),
                    "anchor_sizes": [int(a) for a in cfg.anchor_sizes], **stem}
    from geocamat.camat.detection import build_object_regulariser

    regulariser = build_regulariser_from(cfg, build_object_regulariser)
    set_zero_fill(regulariser, mean, std)
    validation_threshold = cfg.score_threshold if cfg.score_threshold is not None else \
        cfg.MODEL_FALLBACKS["score_threshold"]
    task = DetectionTask(model_kwargs, regulariser, lr=float(cfg.lr), weight_decay=float(cfg.weight_decay),
                         cam_weight=float(cfg.cam_weight), score_threshold=float(validation_threshold),
                         lr_warmup=float(cfg.lr_warmup), ema_decay=cfg.ema_decay)
    if init is not None and checkpoint is None:  # a resumed run has them in its checkpoint
        from geocamat.models.weights import apply_weights, init_message

        task.init_record = apply_weights(task.model, init, list(classes))
        if task.ema_model is not None:  # the average starts from the starting weights too
            task.ema_model.load_state_dict(task.model.state_dict())
        log(init_message(task.init_record))
    log(occlusion_line(regulariser.name))
    log(scenes_line(sources, cfg.scene_cache_mb))
    accel = _accelerator(cfg.accelerator)
    epochs = int(cfg.epochs)
    # validation runs after the last epoch only, so the checkpoint is saved at the end of every training epoch
    saver = last_checkpoint(out_dir, save_on_train_epoch_end=True)
    trainer = build_trainer(cfg, None, [saver], progress, logger=False, plugins=[atomic_checkpoints()],
                            num_sanity_val_steps=0, check_val_every_n_epoch=epochs, log_every_n_steps=10,
                            use_distributed_sampler=False)
    from geocamat.preflight import check_checkpoint

    check_checkpoint(out_dir / "checkpoints", task, shown=shown)  # a full or read-only disk fails now
    resumed_from = None
    if checkpoint is not None:  # the first epoch this run trains (0-based)
        resumed_from = int(torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]) + 1
        log(f"resuming at epoch {resumed_from + 1} of {epochs}")
    t_fit = time.perf_counter()
    trainer.fit(task, train_dl, val_dl, ckpt_path=str(checkpoint) if checkpoint is not None else None)
    fit_s = time.perf_counter() - t_fit
    if not trainer.is_global_zero:
        raise SystemExit(0)
    steps = task.step_times[1:] or task.step_times  # first step includes warm-up allocations
    metrics = {k: v for k, v in task.val_metrics.items()}
    metrics.update({
        "val_tiles": len(val_ds) if val_ds else 0, "validation_split": split_kind,
        "train_tiles": len(train_ds), "train_boxes": int(sum(counts)),
        "epochs": epochs, "steps": len(task.step_times), "step_time_s": float(np.mean(steps)) if steps else None,
        "occluded_pixel_fraction": float(np.mean(task.occluded_fraction)) if task.occluded_fraction else 0.0,
        "fit_seconds": fit_s, "total_seconds": time.perf_counter() - t_start, "device": accel,
        "regulariser": regulariser.name, "seed": seed, "numeric_precision": str(trainer.precision),
        "ema_decay": float(task.ema_decay) if task.ema_model is not None else 0.0,
        "anchor_sizes": [int(a) for a in cfg.anchor_sizes], "anchor_sizes_from": anchors_from,
        "world_size": trainer.world_size,
    })
    if resumed_from is not None:
        metrics["resumed_from_epoch"] = resumed_from
    threshold, threshold_from, best = _default_threshold(cfg, metrics)
    crs = next((i.crs for i in infos if i.crs is not None), None)
    tr = next((i.transform for i in infos if i.crs is not None), None)
    bundle = Bundle(
        task="detection", model={"name": "detector", **model_kwargs},
        state_dict={k: v.detach().cpu() for k, v in task.final_model().state_dict().items()}, bands=bands, mean=mean,
        std=std, classes=build_classes(list(range(len(classes))), dict(enumerate(classes))),
        tile_size=ts, resolution=(abs(tr.a), abs(tr.e)) if tr is not None else None,
        crs=crs.to_wkt() if crs is not None else None, regulariser=regulariser.settings(),
        metrics=metrics,
        extra={"score_threshold": threshold, "score_threshold_from": threshold_from,
               "validation_best_f1": best, "nms_iou": float(cfg.nms_iou),
               "overlap": float(cfg.overlap), "detector": cfg.detector, "backbone": cfg.backbone,
               "training_images": [str(p) for p in images], "labels": [str(p) for p in labels],
               "label_field": cfg.label_field, "init": task.init_record,
               "weights": "ema" if task.ema_model is not None else "last", "normalise": cfg.normalise,
               "anchor_sizes_from": anchors_from},
    )
    bundle.save(out_dir / "model.geocamat")
    write_json(out_dir / "metrics.json", metrics)
    import shutil

    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the run is complete: nothing to resume
    return metrics


def _check_bundle(bundle: Bundle) -> None:
    if bundle.task != "detection":
        raise BundleError(f"this model was trained for {bundle.task!r}, not detection; use a detection model")


def _training_bands(images: list[str], log) -> list[str]:
    """The band names of the training images: one count for all, or grey images among colour ones (read as 3
    equal bands, said in one line); any other mix is refused."""
    from geocamat.data.detection_images import band_names
    from geocamat.data.grey import fits, grey_for_colour

    names = [band_names(p) for p in images]
    counts = [len(n) for n in names]
    if not all(fits(c, max(counts)) for c in counts):
        raise InvalidRasterError(f"the training images have different band counts ({sorted(set(counts))}); use one "
                                 "stack")
    grey = sum(grey_for_colour(c, max(counts)) for c in counts)
    if grey:
        log(f"note: {grey} grey image{'s' if grey > 1 else ''} among colour ones, read as 3 equal bands")
    return max(names, key=len)


def _check_bands(bundle: Bundle, path: str) -> bool:
    """Refuse an image without the model's band count; True when it is a grey image a colour model reads as 3
    equal bands."""
    from geocamat.data.detection_images import band_names
    from geocamat.data.grey import fits, grey_for_colour

    n, want = len(band_names(path)), len(bundle.bands)
    if not fits(n, want):
        raise InvalidRasterError(f"{path} has {n} bands but the model expects {want} "
                                 f"({', '.join(bundle.bands)}); give imagery with the training bands")
    return grey_for_colour(n, want)


def _normalisation(bundle: Bundle, path) -> tuple[list[float], list[float]]:
    """The band mean/std that normalise ``path`` for this model (its own, or the image's; a mosaic's images
    pooled, as one image)."""
    from geocamat.data.detection_images import band_stats, normalisation
    from geocamat.data.image_mosaic import ImageMosaic

    mode = bundle.extra.get("normalise", "dataset")
    if isinstance(path, ImageMosaic) and mode == "image":
        return band_stats(path.paths, bands=len(bundle.bands))
    return normalisation(path, mode, bundle.mean, bundle.std, len(bundle.bands))


def _detection_units(paths: list[str], infos: list) -> list:
    """What detection runs over: each image alone, or a mosaic of images that tile one pixel grid and touch
    (:mod:`geocamat.data.image_mosaic`), so that objects on their edges are seen whole."""
    from geocamat.data.image_mosaic import build_mosaic, mosaic_groups

    return [paths[g[0]] if len(g) == 1 else build_mosaic([infos[i] for i in g]) for g in mosaic_groups(infos)]


def _evaluation_units(paths: list[str], infos: list, label_paths: list[str]) -> tuple[list, list, list[str]]:
    """What evaluation scores over, their :class:`ImageInfo` (what the reference boxes are read for) and a
    note: mosaics as in predict when every reference is in map coordinates (a vector layer: each object's box
    whole in the mosaic); with pixel boxes (each image's own) image by image, said in the note."""
    from geocamat.data.box_formats import is_coco
    from geocamat.data.boxes import PIXEL_SUFFIXES

    units = _detection_units(paths, infos)
    by_path = dict(zip(paths, infos, strict=True))
    if all(isinstance(u, str) for u in units):
        return units, infos, []
    if any(Path(p).suffix.lower() in PIXEL_SUFFIXES or is_coco(Path(p)) for p in label_paths):
        return paths, infos, ["note: the images tile one pixel grid, but the reference boxes are in each image's "
                              "pixels: scored image by image, so objects on image edges count as pieces in both "
                              "(a vector reference scores the mosaic, as predict detects it)"]
    mosaics = [u for u in units if not isinstance(u, str)]
    return units, [by_path[u] if isinstance(u, str) else u.info for u in units], [
        f"note: {sum(len(m.sheets) for m in mosaics)} images tile one pixel grid and touch: scored as {len(mosaics)} "
        f"mosaic{'s' if len(mosaics) > 1 else ''}, as predict detects them, each reference object whole"]


def _area_of_interest(opts: dict, crs, georef: list[bool]):
    """The AOI (``region`` and/or ``bbox``: their intersection) as a geometry in ``crs``; None: none given."""
    from geocamat.inference.grid import bbox_geometry, load_region

    if opts.get("region") is None and opts.get("bbox") is None:
        return None
    if not all(georef):
        raise ConfigError("--region and --bbox need georeferenced images (GeoTIFFs with a CRS); these are plain "
                          "images: crop them instead")
    geom = load_region(opts["region"], crs)[0][1] if opts.get("region") is not None else None
    if opts.get("bbox") is not None:
        box = bbox_geometry(tuple(opts["bbox"]), opts.get("bbox_crs"), crs)
        geom = box if geom is None else geom.intersection(box)
    return geom


def _aoi_in_pixels(aoi, aoi_crs, info):
    """The AOI in an image's (or mosaic's) pixel grid: (window filter for detect_image, centre filter)."""
    import geopandas as gpd
    import shapely
    from shapely import affinity

    geom = aoi if info.crs == aoi_crs else gpd.GeoSeries([aoi], crs=aoi_crs).to_crs(info.crs).iloc[0]
    inv = ~info.transform
    px = affinity.affine_transform(geom, [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff])
    shapely.prepare(px)

    def window(size: int):
        return lambda col, row: bool(px.intersects(shapely.box(col, row, col + size, row + size)))

    def centres(boxes: np.ndarray) -> np.ndarray:
        return shapely.intersects_xy(px, (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2)

    return window, centres


def _unit_name(unit) -> str:
    """An image's file name, or a mosaic's description."""
    return Path(unit).name if isinstance(unit, str) else unit.name


def _detect_fn(model, opts: dict, with_cam: bool = True):
    """The model as a DetectFn, under test-time augmentation when ``opts["tta"]``."""
    from geocamat.inference.detect import model_detect_fn

    fn = model_detect_fn(model, with_cam=with_cam)
    if opts.get("tta"):
        from geocamat.inference.detect_tta import tta_detect_fn

        fn = tta_detect_fn(fn)
    return fn


def _device(options: dict, ranks=None) -> str:
    """The device of this process: the one asked for, or with several ranks on a machine each rank's GPU."""
    from geocamat.devices import resolve_device

    dev = resolve_device(options.get("device") or "auto")
    if ranks is not None:
        from geocamat.inference.landuse import _rank_device

        dev = _rank_device(dev, options.get("device") or "auto", ranks)
    return str(dev)


def _detect_raw(bundle, model, path, opts, device, score_threshold, progress: bool = False, what: str = "detect",
                within=None, ranks=None, store=None, unit: int = 0):
    """The windows of one image (or mosaic) that are this rank's (every one with no ``ranks``), detected but not
    merged: (info, windows planned, :class:`RawDetections` or None when they went to ``store``, seconds).

    With a :class:`geocamat.inference.detect_store.WindowStore`, windows already in it are skipped and each
    chunk of finished windows is saved there. ``progress`` shows a bar of the windows on a terminal (none in
    logs and pipes)."""
    import sys

    from geocamat.inference.detect import detect_windows, image_windows
    from geocamat.inference.detect_store import CHUNK_BATCHES, chunks
    from geocamat.inference.telemetry import progress_bar

    t0 = time.perf_counter()
    mean, std = _normalisation(bundle, path)
    info, windows, read = image_windows(path, bundle.tile_size, float(opts["overlap"]), len(bundle.bands), within)
    batch = int(opts["batch_size"])
    mine = list(range(len(windows))) if ranks is None else _share(len(windows), batch, ranks)
    if store is not None:
        done = store.done(unit)
        mine = [i for i in mine if i not in done]
    bar = progress_bar(total=len(mine), unit="window", desc=f"{what} {_unit_name(path)}", file=sys.stderr,
                       disable=None if progress else True, smoothing=0.1, dynamic_ncols=True, leave=False)
    run = dict(tile_size=bundle.tile_size, mean=mean, std=std, batch_size=batch, score_threshold=score_threshold,
               device=device)
    raw = None
    try:
        if store is None:
            raw = detect_windows(read, info, windows, _detect_fn(model, opts), indices=mine,
                                 progress=lambda done, total: bar.update(done - bar.n), **run)
        else:
            for piece in chunks(mine, batch * CHUNK_BATCHES):  # whole batches: see _share
                start = bar.n
                found = detect_windows(read, info, windows, _detect_fn(model, opts), indices=piece,
                                       progress=lambda done, total, start=start: bar.update(start + done - bar.n),
                                       **run)
                store.save(unit, piece, found)
    finally:
        bar.close()
    return info, len(windows), raw, time.perf_counter() - t0, len(mine)


def _run_identity(bundle: Bundle, model_path, paths: list[str], opts: dict) -> dict:
    """What a detection run's windows depend on: a resumed run must have the same (the batch size and device may
    change; the objects are then the same up to float rounding)."""
    from geocamat.inference.landuse import weights_sha256

    files = []
    for p in paths:
        st = Path(p).stat()
        files.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return {"model": file_sha256(model_path) if model_path else weights_sha256(bundle), "images": files,
            "settings": {k: opts.get(k) for k in ("score_threshold", "overlap", "tta", "region", "bbox", "bbox_crs")}}


def _share(windows: int, batch_size: int, ranks) -> list[int]:
    """The windows of a rank: every W-th batch of the one-process plan, so that each batch holds the windows it
    holds in one process and the detector's numbers are the same to the bit (on one kind of device)."""
    return [i for i in range(windows) if (i // batch_size) % ranks.world == ranks.rank]


def _merged(raw, info, windows: int, opts: dict):
    """The raw detections of all of an image's windows merged into objects."""
    from geocamat.inference.detect import merge_raw

    return merge_raw(raw, info, windows, nms_iou=float(opts["nms_iou"]), match_iou=float(opts["match_iou"]),
                     duplicate_iou=float(opts["duplicate_iou"]), duplicate_merge=str(opts["duplicate_merge"]))


def _scene(bundle, model, path, opts, device, score_threshold, progress: bool = False, what: str = "detect",
           within=None):
    """Detections of one whole image (sliding windows, merged), in this process."""
    info, windows, raw, seconds, _ = _detect_raw(bundle, model, path, opts, device, score_threshold, progress, what,
                                                 within)
    det = _merged(raw, info, windows, opts)
    det.seconds = seconds
    return det


def _resolve(bundle: Bundle, options: PredictOptions) -> dict:
    """The options as a dict, with the model's own settings where the user gave none."""
    from dataclasses import asdict

    opts = asdict(options)
    for key in ("score_threshold", "nms_iou", "overlap"):
        if opts[key] is None:
            opts[key] = bundle.extra[key]
    if not 0 <= float(opts["overlap"]) < 0.9:
        raise ConfigError(f"invalid overlap={opts['overlap']!r}: use a fraction of the tile in [0, 0.9)")
    from geocamat.inference.duplicates import METHODS

    if opts["duplicate_merge"] not in METHODS or not 0 < float(opts["duplicate_iou"]) <= 1:
        raise ConfigError(f"invalid duplicate_merge={opts['duplicate_merge']!r} / duplicate_iou="
                          f"{opts['duplicate_iou']!r}: use {', '.join(METHODS)} and an IoU in (0, 1]")
    return opts


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
    from geocamat.outputs.detections import box_polygons, polygon_areas_m2, write_detections

    t0 = time.perf_counter()
    bound_gdal_cache()  # GDAL's block cache (5% of the machine's memory by default) would grow with the scene
    _check_bundle(bundle)
    opts = _resolve(bundle, options)
    paths = expand_paths(images, "image")
    infos = [image_info(p) for p in paths]
    georef = [i.crs is not None for i in infos]
    if any(georef) and not all(georef):
        raise InvalidRasterError("some images are georeferenced and some are not; predict them in separate runs")
    grey = [Path(p).name for p in paths if _check_bands(bundle, p)]
    from geocamat.inference.ranks import Ranks

    ranks = ranks or Ranks()
    device = _device(opts, ranks)
    model = bundle.build_model().to(device)
    out_dir = Path(out_dir)
    if ranks.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    out_crs = infos[0].crs if all(georef) else None
    if opts.get("crs") is not None:
        if not all(georef):
            raise ConfigError("--crs needs georeferenced images (GeoTIFFs with a CRS); plain images give pixel "
                              "coordinates")
        from rasterio.crs import CRS as RasterioCRS

        from geocamat.inference.grid import crs_wkt

        out_crs = RasterioCRS.from_wkt(crs_wkt(opts["crs"]))
    aoi_crs = infos[0].crs  # a bbox without --bbox-crs is in the images' CRS, whatever --crs the output takes
    aoi = _area_of_interest(opts, aoi_crs, georef)
    units = _detection_units(paths, infos)
    by_path = dict(zip(paths, infos, strict=True))
    unit_infos = [by_path[u] if isinstance(u, str) else u.info for u in units]
    filters = [(None, None)] * len(units)
    if aoi is not None:
        filters = [_aoi_in_pixels(aoi, aoi_crs, info) for info in unit_infos]
        # a window as large as the image at its origin: whether the AOI meets the image at all
        if not any(f[0](max(i.width, i.height))(0, 0) for f, i in zip(filters, unit_infos, strict=True)):
            what = f"region {opts['region']}" if opts.get("region") is not None else f"bbox {tuple(opts['bbox'])}"
            raise ConfigError(f"{what} does not overlap the images; check its coordinates and CRS (--bbox-crs)")
    from geocamat.inference.detect_store import WindowStore

    store = WindowStore(final_dir if final_dir is not None else out_dir)
    if ranks.main:
        kept = store.prepare(_run_identity(bundle, model_path, paths, opts), resume=bool(opts.get("resume")),
                             fresh=fresh)
        if kept and progress:
            print(f"resuming: {kept} chunks of windows done by the interrupted run are kept")
    ranks.barrier()
    runs = []
    with torch.inference_mode():
        for k, (unit, (window, _)) in enumerate(zip(units, filters, strict=True)):
            within = window(bundle.tile_size) if window is not None else None
            runs.append(_detect_raw(bundle, model, unit, opts, device, float(opts["score_threshold"]),
                                    progress and ranks.main, within=within, ranks=ranks if ranks.world > 1 else None,
                                    store=store, unit=k))
    ranks.barrier()
    if not ranks.main:  # what the CLI's line says of the other ranks
        return {"rank": ranks.rank, "world": ranks.world, "tiles_processed": sum(r[4] for r in runs)}
    raws = [(info, n, store.load(k), seconds) for k, (info, n, _, seconds, _) in enumerate(runs)]
    frames, per_image, mosaics = [], [], []
    for unit, (_, inside), (info, n_windows, raw, seconds) in zip(units, filters, raws, strict=True):
        det = _merged(raw, info, n_windows, opts)
        det.seconds = seconds
        if inside is not None and len(det.boxes):
            keep = inside(det.boxes)
            det.boxes, det.scores = det.boxes[keep], det.scores[keep]
            det.labels, det.cam_evidence = det.labels[keep], det.cam_evidence[keep]
        mosaic = unit if not isinstance(unit, str) else None
        polys = box_polygons(det.boxes, info.transform if info.crs is not None else None)
        if mosaic:  # each object is listed under the image that holds its centre
            centre = (det.boxes[:, :2] + det.boxes[:, 2:]) / 2
            sheet = mosaic.sheet_of(centre[:, 0], centre[:, 1])
            names = [Path(mosaic.sheets[k].path).name for k in sheet]
        else:
            names = Path(unit).name
        import geopandas as gpd

        g = gpd.GeoDataFrame({
            "image": names, "class_id": [bundle.classes[int(k)].id for k in det.labels],
            "class_name": [bundle.classes[int(k)].name for k in det.labels],
            "score": det.scores.astype(float), "cam_evidence": det.cam_evidence.astype(float),
            "xmin": det.boxes[:, 0].astype(float), "ymin": det.boxes[:, 1].astype(float),
            "xmax": det.boxes[:, 2].astype(float), "ymax": det.boxes[:, 3].astype(float),
        }, geometry=polys, crs=info.crs)
        g.insert(4, "area", polygon_areas_m2(g.geometry.values, info.crs))  # in the image's own CRS
        if out_crs is not None and info.crs != out_crs:
            g = g.to_crs(out_crs)
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
            print(f"{_unit_name(unit)}: {len(det.boxes)} objects in {det.windows} windows ({det.seconds:.1f} s)")
    frame = pd.concat(frames, ignore_index=True)
    files = write_detections(out_dir / "detections.gpkg", frame, bundle.classes, out_crs)
    home = Path(final_dir if final_dir is not None else out_dir).resolve()
    files = {k: str(home / Path(v).name) if isinstance(v, str) else v for k, v in files.items()}
    model_path = Path(model_path).resolve() if model_path else None
    counts = {c.name: int((frame["class_name"] == c.name).sum()) for c in bundle.classes}
    report = {
        "task": "detection",
        "inputs": per_image,
        "model": {"path": str(Path(model_path).resolve()) if model_path else None,
                  "sha256": file_sha256(model_path) if model_path else None,
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
        "notes": threshold_notes(bundle, float(opts["score_threshold"]), int(len(frame))) + grey_notes(grey)
        + mosaic_notes(mosaics),
        "timings": {"seconds": round(time.perf_counter() - t0, 3)},
        "machine": platform.node(),
    }
    write_json(out_dir / "report.json", report)
    store.remove()  # the windows are in the outputs now
    return report


def mosaic_notes(mosaics: list[dict]) -> list[str]:
    """One line when images were detected as mosaics."""
    if not mosaics:
        return []
    n = sum(len(m["images"]) for m in mosaics)
    return [f"note: {n} images tile one pixel grid and touch: detected as {len(mosaics)} mosaic"
            f"{'s' if len(mosaics) > 1 else ''} (normalised together), so that objects on their edges are found "
            f"once; each object is listed under the image that holds its centre"]


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
    _check_bundle(bundle)
    if options.region is not None or options.bbox is not None:
        raise ConfigError("evaluate scores whole images against their reference; an AOI (region, bbox) is for "
                          "predict")
    agnostic, label_field = options.class_agnostic, options.reference_field
    opts = _resolve(bundle, options)
    paths = expand_paths(images, "image")
    label_paths = expand_label_paths(options.reference, "reference boxes")
    names = [c.name for c in bundle.classes]
    infos = [image_info(p) for p in paths]
    units, unit_infos, notes = _evaluation_units(paths, infos, label_paths)
    try:
        boxes, _ = load_boxes([Path(p) for p in label_paths], unit_infos, label_field, None if agnostic else names)
    except InvalidLabelsError as exc:
        if "class" not in str(exc):
            raise
        raise InvalidLabelsError(f"{exc} (or evaluate with --class-agnostic)") from None
    index = {c: i for i, c in enumerate(names)}
    device = _device(opts)
    model = bundle.build_model().to(device)
    thr = float(opts["score_threshold"])
    low = min(0.05, thr)
    k = 1 if agnostic else len(names)

    def lab(arr):
        return np.zeros(len(arr), np.int64) if agnostic else np.asarray(arr, np.int64)

    scene_p, scene_t, tile_p, tile_t = [], [], [], []
    ts = bundle.tile_size
    tile_fn = _detect_fn(model, opts, with_cam=False)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for unit, ib in zip(units, boxes, strict=True):
            mosaic = unit if not isinstance(unit, str) else None
            for path in mosaic.paths if mosaic else [unit]:
                _check_bands(bundle, path)
            mean, std = _normalisation(bundle, unit)
            m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
            gt_l = lab([index.get(n, 0) for n in ib.names])
            det = _scene(bundle, model, unit, opts, device, low, progress, "evaluate")
            scene_p.append({"boxes": det.boxes, "scores": det.scores, "labels": lab(det.labels)})
            scene_t.append({"boxes": ib.boxes, "labels": gt_l})
            tiles = [(c, r) for c in grid_offsets(ib.width, ts, ts) for r in grid_offsets(ib.height, ts, ts)
                     if mosaic is None or mosaic.covers(c, r, ts, ts)]
            bar = progress_bar(total=len(tiles), unit="tile", desc=f"evaluate tiles {_unit_name(unit)}",
                               file=sys.stderr, disable=None if progress else True, dynamic_ncols=True, leave=False)
            for col, row in tiles:
                data, valid = (mosaic.read((col, row, ts, ts), len(bundle.bands)) if mosaic else
                               read_image(unit, (col, row, ts, ts), len(bundle.bands)))
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
    }


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

    _check_bundle(bundle)
    opts = _resolve(bundle, options or PredictOptions())
    _check_bands(bundle, image)
    model = bundle.build_model().to(_device(opts))
    det = _scene(bundle, model, image, opts, _device(opts), float(opts["score_threshold"]))
    data, _ = read_image(image, bands=len(bundle.bands))
    rgb = data[:3].transpose(1, 2, 0) if data.shape[0] >= 3 else np.repeat(data[:1].transpose(1, 2, 0), 3, axis=2)
    lo, hi = np.percentile(rgb, 2), np.percentile(rgb, 98)
    rgb = np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)
    truth = None
    if labels:
        _, (ib,), _ = _load_labelled([image], labels, "label", None)
        truth = ib.boxes
    info = image_info(image)
    title = title or f"{Path(image).name}: {len(det.boxes)} detections (score >= {opts['score_threshold']})"
    plot_detections(rgb, det.boxes, det.labels, bundle.classes, out_png, truth=truth, title=title)
    return {"detections": len(det.boxes), "png": str(out_png), "size": (info.width, info.height)}
