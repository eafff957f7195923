"""Detection training: tiles from the labelled images, the detector trained by Lightning, the bundle.

``config`` is a :class:`DetectionConfig` (YAML merged with ``--set key=value`` and flags); see docs/detection.md for
every key. User mistakes raise :mod:`geocamat.errors` exceptions with one-line messages.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from geocamat.bundle import Bundle
from geocamat.data.classes import build_classes
from geocamat.errors import InvalidLabelsError, InvalidRasterError
from geocamat.outputs.jsonfile import write_json
from geocamat.tasks.detection.config import DetectionConfig
from geocamat.tasks.detection.inputs import labelled_units, load_labelled
from geocamat.tasks.training import build_regulariser_from, build_trainer, fit, set_zero_fill, use_threads


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
    units, infos, boxes, classes = labelled_units(images, labels, cfg.label_field, cfg.classes)
    mosaics = [u for u in units if not isinstance(u, str)]
    if mosaics:
        log(f"note: {sum(len(m.sheets) for m in mosaics)} images tile one pixel grid and touch: trained as "
            f"{len(mosaics)} mosaic{'s' if len(mosaics) > 1 else ''} (tiles across their edges, objects on them "
            "whole)")
    areas = None
    if cfg.labelled_area:  # a partly labelled image: train only where every object is labelled
        from geocamat.data.labelled_area import area_in_pixels, keep_inside

        areas = area_in_pixels(cfg.labelled_area, infos)
        boxes = [keep_inside(b, a) for b, a in zip(boxes, areas, strict=True)]
    counts = [len(b.boxes) for b in boxes]
    if sum(counts) == 0:
        raise InvalidLabelsError("no box falls on the training images" + (" inside labelled_area" if areas else "") +
                                 "; check the label files and image names")
    bands, read = _training_bands(images, cfg.bands, log)
    mean, std = band_stats(images, bands=read)
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
    sources = open_normalised(units, mean, std, cfg.normalise, cfg.scene_cache_mb, read)
    if areas is not None:
        from geocamat.data.labelled_area import MaskedImage

        sources = [MaskedImage(src, a) for src, a in zip(sources, areas, strict=True)]
    col_limits = None
    val_ds = None
    split_kind = "val_images"
    if cfg.val_images:
        v_images = expand_paths(cfg.val_images, "validation image")
        v_labels = expand_label_paths(cfg.val_labels or cfg.labels, "validation labels")
        _, v_boxes, _ = load_labelled(v_images, v_labels, cfg.label_field, classes)
        v_tiles = [Tile(i, c, r) for i, b in enumerate(v_boxes) for c in grid_offsets(b.width, ts, ts)
                   for r in grid_offsets(b.height, ts, ts)]
        v_sources = open_normalised(v_images, mean, std, cfg.normalise, cfg.scene_cache_mb, read)
        val_ds = DetectionTiles(v_sources, v_boxes, class_index, v_tiles, ts)
        train_tiles, _ = plan_tiles(boxes, ts, val_fraction=0.0, empty_ratio=float(cfg.empty_ratio),
                                    max_tiles=cfg.max_tiles, seed=seed)
    else:
        plan = validation_plan(boxes, ts, float(cfg.val_fraction))
        train_tiles, val_tiles = plan_tiles(boxes, ts, val_fraction=float(cfg.val_fraction),
                                            empty_ratio=float(cfg.empty_ratio), max_tiles=cfg.max_tiles,
                                            seed=seed, plan=plan)
        col_limits, split_kind = plan.splits, plan.kind
        log(plan.note)
        if areas is not None:
            train_tiles, val_tiles = _inside(train_tiles, areas, ts, log, "training"), \
                _inside(val_tiles, areas, ts, log, "validation")
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
        log(f"resuming at epoch {resumed_from + 1} of {epochs}" if resumed_from < epochs else
            f"resuming after the last epoch ({epochs}): the training is done; finishing the run")
    t_fit = time.perf_counter()
    fit(trainer, task, train_dl, val_dl, ckpt_path=str(checkpoint) if checkpoint is not None else None)
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
               "anchor_sizes_from": anchors_from,
               "band_selection": list(read) if isinstance(read, tuple) else None},
    )
    bundle.save(out_dir / "model.geocamat")
    write_json(out_dir / "metrics.json", metrics)
    import shutil

    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the run is complete: nothing to resume
    return metrics


def _inside(tiles: list, areas: list, tile_size: int, log, what: str) -> list:
    """The tiles with at least :data:`~geocamat.data.labelled_area.MIN_INSIDE` of their area in the labelled area,
    said in one line (a warning when none is left)."""
    from geocamat.data.labelled_area import MIN_INSIDE, inside_share

    by_image: dict[int, list[int]] = {}
    for i, t in enumerate(tiles):
        by_image.setdefault(t.image, []).append(i)
    keep = np.zeros(len(tiles), bool)
    for k, idx in by_image.items():
        keep[idx] = inside_share(areas[k], [(tiles[i].col, tiles[i].row, tile_size) for i in idx]) >= MIN_INSIDE
    kept = [t for t, k in zip(tiles, keep, strict=True) if k]
    line = f"labelled area: {len(kept)} of {len(tiles)} {what} tiles are at least {MIN_INSIDE:.0%} inside it"
    log(line if kept or not tiles else f"warning: {line}; give larger labelled areas, a smaller --tile-size"
        + (" or val_images" if what == "validation" else ""))
    return kept


def _training_bands(images: list[str], selection: list | None, log) -> tuple[list[str], int | tuple[int, ...]]:
    """The band names the model trains on and how the images' bands are read: all of them (their count; one
    count for all, or grey images among colour ones, read as 3 equal bands, said in one line; any other mix is
    refused), or the ``selection`` (names or 1-based numbers, in the model's order: a 1-based tuple)."""
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
    full = max(names, key=len)
    if not selection:
        return full, len(full)
    from geocamat.data.stack import band_indexes

    picked = band_indexes(full, [str(b).strip() for b in selection])
    log(f"bands: {', '.join(full[i] for i in picked)} (bands {', '.join(str(i + 1) for i in picked)} of "
        f"{len(full)}), in this order")
    return [full[i] for i in picked], tuple(i + 1 for i in picked)
