"""``geocamat train`` for land use: stack + labels -> windows of disjoint blocks (streamed, or in memory) ->
Lightning -> bundle + metrics."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geocamat.bundle import Bundle
from geocamat.data.value_check import band_range
from geocamat.errors import ConfigError, InvalidLabelsError
from geocamat.settings import as_list, dump, field_map
from geocamat.tasks.landuse.config import LandUseConfig
from geocamat.tasks.landuse.options import MIN_MAPPING_UNIT
from geocamat.tasks.training import (
    absolute_paths,
    atomic_checkpoints,
    build_regulariser_from,
    build_trainer,
    camnet_spec,
    fit,
    last_checkpoint,
    quiet_lightning,
    run_folder,
    set_zero_fill,
    start_task,
    use_threads,
)


def _classes(config: LandUseConfig, labels) -> list:
    from geocamat.data.classes import build_classes

    names, colours = dict(labels.names), dict(labels.colours)
    for code, spec in (config.classes or {}).items():
        code = int(code)
        if isinstance(spec, dict):
            if "name" in spec:
                names[code] = str(spec["name"])
            if "color" in spec:
                colours[code] = str(spec["color"])
        else:
            names[code] = str(spec)
    return build_classes(labels.class_ids, names, colours)


#: pixels of an image grid from which training says what it reads before its first window (a 10x scene: 105 s)
LARGE_GRID = 4_000_000

# smallest per-pixel agreement gain (on training tiles) for which an offset of the labels is reported, and
# the fewest labelled pixels the check needs
REGISTRATION_MIN_GAIN = 0.005
REGISTRATION_MIN_PIXELS = 5000


@dataclass
class LandUseData:
    """The training and validation data of a run, from either pipeline.

    Attributes:
        train_loader: training batches.
        val_loader: validation batches (fixed windows).
        counts: training windows per class.
        n_train: training windows (all of them; an epoch may draw fewer or more, see ``samples_per_epoch``).
        n_val: validation windows.
        mean: per-band mean of the normalisation.
        std: per-band standard deviation of the normalisation.
        sample_images: normalised training windows for the registration check (all, or a bounded sample).
        sample_masks: their per-pixel class indices.
        val_images: the validation windows in memory (memory pipeline only; None when streamed).
        val_labels: their classes.
    """

    train_loader: object
    val_loader: object
    counts: list[int]
    n_train: int
    n_val: int
    mean: list[float]
    std: list[float]
    sample_images: torch.Tensor
    sample_masks: torch.Tensor
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None


def tile_options(config: LandUseConfig):
    """The window options of a run's settings."""
    from geocamat.data.tiles import TileOptions

    return TileOptions(tile_size=config.tile_size, stride=config.stride or max(1, config.tile_size // 4),
                       purity=config.purity, min_labelled=config.min_labelled, min_valid=config.min_valid,
                       blocks=config.blocks, val_parity=config.val_parity, max_tiles=config.max_tiles,
                       seed=config.seed, footprint=float(config.footprint))


def _loader_kwargs(config: LandUseConfig) -> dict:
    """Streamed loaders: workers kept between epochs (their chunk caches with them), their own files and cache,
    and their own random generator (the global one is left to training, so that a resumed run continues it)."""
    from geocamat.data.window_dataset import worker_init

    workers = config.num_workers
    return {"num_workers": workers, "persistent_workers": workers > 0, "worker_init_fn": worker_init,
            "generator": torch.Generator().manual_seed(config.seed)}


def prepare_data(config: LandUseConfig, stack, labels, num_classes: int,
                 log: Callable[[str], None] = print) -> LandUseData:
    """Windows, normalisation and loaders of a run: streamed from the stack (default) or cut into memory.

    ``data_pipeline: stream`` indexes every labelled window of the training blocks and reads them by chunks
    every epoch (bounded memory, no cap); ``memory`` cuts the tiles once into memory (at most ``max_tiles``).
    """
    from torch.utils.data import DataLoader

    opts = tile_options(config)
    pixel_masks = config.pixel_loss > 0
    if config.data_pipeline == "memory":
        from geocamat.data.tiles import band_statistics, extract_tiles, normalise
        from geocamat.tasks.landuse.module import TileDataset

        train, val = extract_tiles(stack, labels, opts)
        mean, std = band_statistics(train)
        x_train, x_val = normalise(train.images, mean, std), normalise(val.images, mean, std)
        generator = torch.Generator().manual_seed(config.seed)
        train_loader = DataLoader(TileDataset(x_train, train.labels, train.masks if pixel_masks else None),
                                  batch_size=config.batch_size, shuffle=True,
                                  drop_last=len(train) > config.batch_size, generator=generator,
                                  num_workers=config.num_workers)
        val_loader = DataLoader(TileDataset(x_val, val.labels), batch_size=256, num_workers=config.num_workers)
        counts = torch.bincount(train.labels, minlength=num_classes).tolist()
        return LandUseData(train_loader, val_loader, counts, len(train), len(val), mean, std, x_train, train.masks,
                           x_val, val.labels)
    from geocamat.data.samplers import WindowSampler
    from geocamat.data.window_dataset import WindowDataset, streaming_data

    data = streaming_data(stack, labels, opts, cache_mb=float(config.window_cache_mb), log=log)
    train_ds = WindowDataset(data.reader, data.train, masks=pixel_masks)
    val_ds = WindowDataset(data.reader, data.val)
    # chunks mixed together in an epoch: half of what one process's cache holds
    group = max(1, data.reader.capacity(stack.num_bands) // 2)
    per_epoch = config.samples_per_epoch
    train_sampler = WindowSampler(train_ds.chunks(), data.train.labels, num_samples=per_epoch,
                                  class_balance=float(config.class_balance), group=group, seed=config.seed)
    val_sampler = WindowSampler(val_ds.chunks(), data.val.labels, shuffle=False, num_samples=config.val_samples,
                                seed=config.seed)
    drawn = per_epoch or len(data.train)
    train_loader = DataLoader(train_ds, batch_size=config.batch_size, sampler=train_sampler,
                              drop_last=drawn > config.batch_size, **_loader_kwargs(config))
    val_loader = DataLoader(val_ds, batch_size=256, sampler=val_sampler, **_loader_kwargs(config))
    counts = np.bincount(data.train.labels, minlength=num_classes).tolist()
    return LandUseData(train_loader, val_loader, counts, len(data.train), len(data.val), data.mean, data.std,
                       data.sample_images, data.sample_masks)


def build_task(config: LandUseConfig, model_spec: dict, counts: list[int], regulariser):
    """The Lightning module of a run."""
    from geocamat.tasks.landuse.module import LandUseTask

    weights = None
    if config.class_weighting:
        freq = torch.tensor(counts, dtype=torch.float).clamp_min(1)
        weights = (freq.sum() / (len(counts) * freq)).clamp(max=10).tolist()
    return LandUseTask(model_spec, regulariser, lr=config.lr, weight_decay=config.weight_decay,
                       label_smoothing=config.label_smoothing, class_weights=weights,
                       pixel_loss=float(config.pixel_loss), ema_decay=float(config.ema_decay),
                       cutmix=float(config.cutmix), footprint=float(config.footprint))


def train_landuse(config: LandUseConfig, out_dir: Path, *, overwrite: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print, resume: bool = False) -> dict:
    """Train a land-use model and write the run folder.

    Writes ``model.geocamat``, ``metrics.json`` (map-level OA, kappa, per-class P/R/F1 on the validation
    blocks, plus tile-level accuracy), ``confusion.png``, ``training.png``, ``config.yaml``.

    Args:
        config: the run's settings.
        out_dir: the run folder.
        overwrite: replace an existing run folder.
        progress: show progress bars and Lightning's messages.
        log: where messages go.
        resume: continue the interrupted run of ``out_dir`` from its last checkpoint (its staged folder is
            reused; ``config`` should be the settings it saved).

    Returns:
        The metrics dict.
    """
    import lightning as L

    from geocamat.data.labels import grid_of_dataset, labels_on_grid
    from geocamat.data.stack import open_stack
    from geocamat.data.vector_layers import is_vector
    from geocamat.models.weights import load_init
    from geocamat.outputs.plots import plot_confusion, plot_history
    from geocamat.preflight import check_checkpoint, check_inputs
    from geocamat.tasks.landuse.module import EpochHistory

    started = time.perf_counter()
    quiet_lightning(progress)
    use_threads(config)
    L.seed_everything(config.seed, verbose=False)
    if config.data_pipeline == "stream":
        from geocamat.data.chunks import bound_gdal_cache

        bound_gdal_cache()  # from the labels on: GDAL's own cache would otherwise grow with the scene
    with run_folder(Path(out_dir), overwrite, resume) as (stage, checkpoint_path):
        work = stage / "work"
        # early, with absolute paths: `train --resume` reads it from a killed run
        dump(absolute_paths(config), stage / "config.yaml")
        init = load_init(config.weights, config.init_from, progress)
        stack = open_stack(config.images, work, bands=config.bands, nodata=config.nodata)
        for note in stack.notes:
            log(note)
        check_inputs(stack.sources)  # a truncated file fails here, not after an epoch
        rasters = [p for p in as_list(config.labels) if not is_vector(p) and Path(p).is_file()]
        if rasters:
            check_inputs(rasters)
        grid = grid_of_dataset(stack.dataset())
        if grid.shape[0] * grid.shape[1] >= LARGE_GRID:  # minutes of reading before the first other line
            log(f"placing the labels on the images' {grid.shape[1]} x {grid.shape[0]} px grid and listing the "
                "training windows ...")
        labels = labels_on_grid(config.labels, grid, work, config.label_field, config.label_nodata)
        for note in labels.notes:
            log(note)
        if len(labels.class_ids) < 2:
            only = labels.names.get(labels.class_ids[0], labels.class_ids[0])  # labels_on_grid found at least one
            raise InvalidLabelsError(f"the labels hold a single class ({only}): a land-use model needs at least two; "
                                     "label the other land covers too (for objects, use --task detection)")
        opts = tile_options(config)
        classes = _classes(config, labels)
        if config.data_pipeline == "stream" and config.max_tiles != field_map(LandUseConfig)["max_tiles"].default:
            log("note: max_tiles caps the memory pipeline only; streamed training reads every window "
                "(set samples_per_epoch to shorten epochs)")
        data = prepare_data(config, stack, labels, len(classes), log)
        counts = data.counts
        per_epoch = config.samples_per_epoch if config.data_pipeline == "stream" else None
        val_per_epoch = config.val_samples if config.data_pipeline == "stream" else None
        sampled = [f"{per_epoch} drawn per epoch" if per_epoch else "",
                   f"{val_per_epoch} validation tiles scored" if val_per_epoch and val_per_epoch < data.n_val else ""]
        said = "; ".join(s for s in sampled if s)
        log(f"{data.n_train} training and {data.n_val} validation tiles of {opts.tile_size} px"
            + (f" ({said})" if said else "")
            + "; training tiles per class: " + ", ".join(f"{c.name} {n}" for c, n in zip(classes, counts, strict=True)))
        untrained = [c.name for c, n in zip(classes, counts, strict=True) if n == 0]
        if untrained:
            them = "it" if len(untrained) == 1 else "them"
            log(f"warning: no training tile of {', '.join(untrained)}: the model cannot learn to map {them}; label "
                f"more of {them} in the training blocks, or lower --purity / --set min_labelled=0.2")
        if data.n_val < 10:
            log(f"warning: only {data.n_val} validation tile{'s' if data.n_val != 1 else ''}: the scores will say "
                "little; label more in the validation blocks (or change --blocks)")
        mean, std = data.mean, data.std
        value_range = band_range(data.sample_images, mean, std, config.seed)  # what predict compares images with
        registration = _check_registration(config, data.sample_images, data.sample_masks, len(classes), log)
        calibration_sample = None
        if config.calibration != "none":
            from geocamat.tasks.landuse.calibration import keep_sample

            calibration_sample = keep_sample(data.sample_images, data.sample_masks, config.seed)
        data.sample_images = data.sample_masks = None  # the rest of the sample is not needed any more
        model_spec = {"name": "camnet", "in_channels": stack.num_bands, "num_classes": len(classes),
                      "tile_size": opts.tile_size, "arch": config.arch, "output": config.output}
        config.arch = model_spec["arch"] = camnet_spec(model_spec, init)
        regulariser = build_regulariser_from(config)
        set_zero_fill(regulariser, mean, std)
        overlap = config.predict_overlap
        if overlap is None:  # window maps need dense windows around small footprints; dense CAM maps do not
            dense_window = opts.footprint < 1 and config.output == "window"
            overlap = min(0.875, 1.0 - opts.footprint / 2.0) if dense_window else 0.5
        task = build_task(config, model_spec, counts, regulariser)
        init_record = None if checkpoint_path else start_task(task, init, classes, log)
        # The bundle takes the last epoch's weights: choosing an epoch by the validation blocks' loss would
        # tune to the blocks the map is then scored on.
        checkpoint = last_checkpoint(stage)
        history = EpochHistory()
        streaming = {"use_distributed_sampler": False} if config.data_pipeline == "stream" else {}
        trainer = build_trainer(config, stage, [checkpoint, history], progress, plugins=[atomic_checkpoints()],
                                logger=L.pytorch.loggers.CSVLogger(stage, name="logs"),
                                log_every_n_steps=max(1, min(10, len(data.train_loader))), **streaming)
        check_checkpoint(stage / "checkpoints", task, shown=Path(out_dir))  # a full or read-only disk fails now
        resumed_from = None
        if checkpoint_path:  # the first epoch this run trains (0-based), before the checkpoint moves on
            resumed_from = int(torch.load(checkpoint_path, map_location="cpu", weights_only=False)["epoch"]) + 1
            log(f"resuming at epoch {resumed_from + 1} of {config.epochs}" if resumed_from < config.epochs else
                f"resuming after the last epoch ({config.epochs}): the training is done; finishing the run")
        fit(trainer, task, data.train_loader, data.val_loader,
            ckpt_path=str(checkpoint_path) if checkpoint_path else None)
        if not trainer.is_global_zero:
            raise SystemExit(0)
        last = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        prefix = "ema_model." if config.ema_decay > 0 else "model."  # the weight average, when kept
        state = {k.removeprefix(prefix): v for k, v in last.items() if k.startswith(prefix)}
        calibration = _calibrate(config, model_spec, state, calibration_sample, classes, log)
        t = grid.transform
        bundle = Bundle(task="landuse", model=model_spec, state_dict=state, bands=stack.band_names, mean=mean,
                        std=std, classes=classes, tile_size=opts.tile_size, resolution=(t.a, -t.e), crs=grid.crs,
                        regulariser=regulariser.settings(),
                        extra={"overlap": overlap, "tta": bool(config.predict_tta), "footprint": opts.footprint,
                               "band_selection": config.bands, "image_nodata": config.nodata,
                               "training_tiles": data.n_train,
                               "validation_tiles": data.n_val, "label_offset": registration["applied"],
                               "init": init_record, "calibration": calibration, "band_range": value_range})
        bundle.save(stage / "model.geocamat")
        offset = registration["applied"]
        metrics = {"validation_map": _validation_map_metrics(bundle, stage, stack, labels, config, offset,
                                                                 progress, log),
                   "validation_tiles": {"n": data.n_val, "accuracy": _tile_accuracy(bundle, data)},
                   "weights_epoch": config.epochs - 1, "lowest_validation_loss_epoch": history.best_epoch(),
                   "train_seconds": round(time.perf_counter() - started, 1),
                   "training_tiles": data.n_train, "regulariser": regulariser.settings(),
                   "training_tiles_per_class": {c.name: int(n) for c, n in zip(classes, counts, strict=True)},
                   "label_registration": registration, "data_pipeline": config.data_pipeline,
                   "world_size": trainer.world_size}
        if resumed_from is not None:
            metrics["resumed_from_epoch"] = resumed_from
        if offset:  # the same map scored without the offset, for comparison
            metrics["validation_map_image_frame"] = {
                k: v for k, v in _score(bundle, stage, labels, config, None).items() if k != "confusion_matrix"}
        bundle.metrics = metrics
        bundle.save(stage / "model.geocamat")
        (stage / "metrics.json").write_text(json.dumps(metrics, indent=2))
        from geocamat.tasks.landuse import rare_class_warning

        warning = rare_class_warning(metrics)
        if warning:
            log(warning)
        vm = metrics["validation_map"]
        plot_confusion(vm["confusion_matrix"], [c.name for c in classes], stage / "confusion.png",
                       title=f"validation blocks: OA {vm['overall_accuracy']}, kappa {vm['kappa']}")
        plot_history(history.rows, stage / "training.png")
        dump(absolute_paths(config), stage / "config.yaml")  # `geocamat train RUN/config.yaml` runs it again
        for leftover in ("work", "checkpoints", "logs"):
            shutil.rmtree(stage / leftover, ignore_errors=True)
    return metrics


def _calibrate(config: LandUseConfig, model_spec: dict, state: dict, sample, classes, log) -> dict:
    """Per-class logit offsets fitted on training pixels, folded into ``state``'s classifier bias (in place)."""
    if config.calibration == "none":
        return {"method": "none"}
    if sample is None:
        log("note: no per-pixel training labels to calibrate the class offsets on; the model is left as trained")
        return {"method": "none", "note": "no per-pixel training labels"}
    from geocamat.models import build_model
    from geocamat.tasks.landuse.calibration import calibrate

    model = build_model(model_spec)
    model.load_state_dict(state)
    summary = calibrate(model, sample, [c.name for c in classes], max_oa_loss=config.calibration_max_loss, log=log)
    state["head.bias"] = model.head.bias.detach().clone()
    return {"method": config.calibration, "max_accuracy_loss": config.calibration_max_loss, **summary}


def _tile_accuracy(bundle: Bundle, data: LandUseData) -> float:
    """Accuracy of the bundle's model on the validation windows (in memory, or read again batch by batch)."""
    model = bundle.build_model()
    correct = total = 0
    with torch.no_grad():
        if data.val_images is not None:
            x, y = data.val_images, data.val_labels
            for i in range(0, len(x), 512):
                correct += int((model(x[i:i + 512]).argmax(dim=1) == y[i:i + 512]).sum())
            total = len(y)
        else:
            from torch.utils.data import DataLoader

            windows = data.val_loader.sampler.fixed_subset().tolist()  # validation's windows, not a rank's shard
            for batch in DataLoader(data.val_loader.dataset, batch_size=512, sampler=windows):
                correct += int((model(batch["image"]).argmax(dim=1) == batch["label"]).sum())
                total += len(batch["label"])
    return round(correct / max(1, total), 4)


def _validation_map_metrics(bundle: Bundle, stage: Path, stack, labels, config: LandUseConfig,
                            offset: list[int] | None, progress: bool, log) -> dict:
    """Map the labelled part of the validation blocks with the trained bundle and score it there."""
    from geocamat.inference.landuse import predict_landuse
    from geocamat.inference.ranks import Ranks
    from geocamat.tasks.landuse import map_settings
    from geocamat.tasks.landuse.scoring import scored_bounds

    bbox = scored_bounds(labels.path, config.blocks, config.val_parity, margin=2 * bundle.tile_size)
    region = _validation_blocks(labels.path, config, stage / "work") if config.blocks else None
    log("mapping the validation blocks to score the run" + (" (the box around their labels)" if bbox else ""))
    map_dir = stage / "work" / "validation_map"
    # as geocamat predict maps it; only the validation blocks that hold labels (a tile's context around them)
    def run(resume: bool) -> None:  # resume: a resumed run's stage holds the map its killed run began
        predict_landuse(bundle, [str(p) for p in stack.sources], map_dir, bbox=bbox, region=region,
                        **map_settings(bundle, None, None, None), vectorise=False, min_polygon_pixels=MIN_MAPPING_UNIT,
                        progress=progress, overwrite=True, resume=resume,
                        ranks=Ranks())  # this process alone, even under a launcher (DDP training)

    try:
        run(resume=True)  # (a fresh run's stage has no map to continue: it starts one)
    except ConfigError:  # the killed run's map was of other weights (it was killed before its last epoch)
        run(resume=False)
    return _score(bundle, stage, labels, config, offset)


def _validation_blocks(reference: Path, config: LandUseConfig, folder: Path) -> str | None:
    """A GeoPackage of the validation blocks holding labels: the region the validation map covers (None: none)."""
    import geopandas as gpd
    import rasterio
    import shapely

    from geocamat.tasks.landuse.scoring import scored_blocks

    boxes = scored_blocks(reference, config.blocks, config.val_parity)
    if not boxes:
        return None
    with rasterio.open(reference) as r:
        crs = r.crs
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "validation_blocks.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(*b) for b in boxes], crs=crs).to_file(path, driver="GPKG")
    return str(path)


def _score(bundle: Bundle, stage: Path, labels, config: LandUseConfig, offset: list[int] | None) -> dict:
    from geocamat.tasks.landuse.scoring import score_map

    return score_map(stage / "work" / "validation_map" / "landuse.tif", labels.path, bundle.class_ids,
                     [c.name for c in bundle.classes], blocks=config.blocks, parity=config.val_parity,
                     offset=tuple(offset) if offset else None, require_overlap=False, model_codes=True)


def _check_registration(config: LandUseConfig, x: torch.Tensor, masks: torch.Tensor, num_classes: int,
                        log) -> dict:
    """Estimate the labels' offset from the imagery on the training tiles; decide whether scoring uses it."""
    setting = config.label_offset
    if isinstance(setting, list):
        return {"setting": setting, "applied": list(setting) if any(setting) else None}
    if setting == "none":
        return {"setting": "none", "applied": None}
    from geocamat.data.registration import estimate_label_offset

    found = estimate_label_offset(x, masks, num_classes, seed=config.seed)
    result = {"setting": setting, **found.summary(), "applied": None}
    if found.pixels < REGISTRATION_MIN_PIXELS:  # e.g. point labels: too few pixels to compare offsets
        result["note"] = f"not checked: {found.pixels} labelled pixels (fewer than {REGISTRATION_MIN_PIXELS})"
        return result
    if found.offset != (0, 0) and found.gain >= REGISTRATION_MIN_GAIN:
        dy, dx = found.offset
        acc = found.accuracy
        log(f"labels look registered {dy:+d} px (rows), {dx:+d} px (columns) off the imagery: a per-pixel "
            f"classifier agrees with them {acc['0,0']:.3f} -> {acc[f'{dy},{dx}']:.3f} at that offset "
            "(training tiles)" + ("; the map is scored in the labels' frame" if setting == "auto" else
                                  "; set label_offset: auto to score the map in the labels' frame"))
        if setting == "auto":
            result["applied"] = [dy, dx]
    return result
