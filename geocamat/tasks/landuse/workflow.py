"""``geocamat train`` for land use: stack + labels -> tiles on disjoint blocks -> Lightning -> bundle + metrics."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from geocamat.bundle import Bundle
from geocamat.errors import InvalidLabelsError
from geocamat.outputs.staging import staged_output
from geocamat.settings import dump
from geocamat.tasks.landuse.config import LandUseConfig
from geocamat.tasks.training import build_regulariser_from, build_trainer, quiet_lightning, set_zero_fill


def _classes(config: LandUseConfig, labels) -> list:
    from geocamat.data.classes import build_classes

    names, colours = dict(labels.names), dict(labels.colours)
    for code, spec in config.classes.items():
        code = int(code)
        if isinstance(spec, dict):
            if "name" in spec:
                names[code] = str(spec["name"])
            if "color" in spec:
                colours[code] = str(spec["color"])
        else:
            names[code] = str(spec)
    return build_classes(labels.class_ids, names, colours)


# smallest per-pixel agreement gain (on training tiles) for which an offset of the labels is reported, and
# the fewest labelled pixels the check needs
REGISTRATION_MIN_GAIN = 0.005
REGISTRATION_MIN_PIXELS = 5000


def train_landuse(config: LandUseConfig, out_dir: Path, *, overwrite: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print) -> dict:
    """Train a land-use model and write the run folder.

    Writes ``model.geocamat``, ``metrics.json`` (map-level OA, kappa, per-class P/R/F1 on the validation
    blocks, plus tile-level accuracy), ``confusion.png``, ``training.png``, ``config.yaml``.

    Returns:
        The metrics dict.
    """
    import lightning as L
    from torch.utils.data import DataLoader

    from geocamat.data.labels import grid_of_dataset, labels_on_grid
    from geocamat.data.stack import open_stack
    from geocamat.data.tiles import TileOptions, band_statistics, extract_tiles, normalise
    from geocamat.outputs.plots import plot_confusion, plot_history
    from geocamat.tasks.landuse.module import EpochHistory, LandUseTask, TileDataset

    started = time.perf_counter()
    quiet_lightning(progress)
    L.seed_everything(config.seed, verbose=False)
    with staged_output(Path(out_dir), overwrite) as stage:
        work = stage / "work"
        stack = open_stack(config.images, work, bands=config.bands)
        grid = grid_of_dataset(stack.dataset())
        labels = labels_on_grid(config.labels, grid, work, config.label_field)
        if len(labels.class_ids) < 2:
            only = labels.names.get(labels.class_ids[0], labels.class_ids[0])  # labels_on_grid found at least one
            raise InvalidLabelsError(f"the labels hold a single class ({only}): a land-use model needs at least two; "
                                     "label the other land covers too (for objects, use --task detection)")
        opts = TileOptions(tile_size=config.tile_size, stride=config.stride or max(1, config.tile_size // 4),
                           purity=config.purity, min_labelled=config.min_labelled, min_valid=config.min_valid,
                           blocks=config.blocks, val_parity=config.val_parity, max_tiles=config.max_tiles,
                           seed=config.seed, footprint=float(config.footprint))
        train, val = extract_tiles(stack, labels, opts)
        classes = _classes(config, labels)
        counts = torch.bincount(train.labels, minlength=len(classes)).tolist()
        log(f"{len(train)} training and {len(val)} validation tiles of {opts.tile_size} px; "
            f"training tiles per class: " + ", ".join(f"{c.name} {n}" for c, n in zip(classes, counts, strict=True)))
        untrained = [c.name for c, n in zip(classes, counts, strict=True) if n == 0]
        if untrained:
            them = "it" if len(untrained) == 1 else "them"
            log(f"warning: no training tile of {', '.join(untrained)}: the model cannot learn to map {them}; label "
                f"more of {them} in the training blocks, or lower --purity / --set min_labelled=0.2")
        if len(val) < 10:
            log(f"warning: only {len(val)} validation tile{'s' if len(val) != 1 else ''}: the scores will say "
                "little; label more in the validation blocks (or change --blocks)")
        mean, std = band_statistics(train)
        x_train, x_val = normalise(train.images, mean, std), normalise(val.images, mean, std)
        registration = _check_registration(config, x_train, train.masks, len(classes), log)
        model_spec = {"name": "camnet", "in_channels": stack.num_bands, "num_classes": len(classes),
                      "tile_size": opts.tile_size, "arch": config.arch, "output": config.output}
        weights = None
        if config.class_weighting:
            freq = torch.tensor(counts, dtype=torch.float).clamp_min(1)
            weights = (freq.sum() / (len(counts) * freq)).clamp(max=10).tolist()
        regulariser = build_regulariser_from(config)
        set_zero_fill(regulariser, mean, std)
        overlap = config.predict_overlap
        if overlap is None:  # window maps need dense windows around small footprints; dense CAM maps do not
            dense_window = opts.footprint < 1 and config.output == "window"
            overlap = min(0.875, 1.0 - opts.footprint / 2.0) if dense_window else 0.5
        task = LandUseTask(model_spec, regulariser, lr=config.lr, weight_decay=config.weight_decay,
                           label_smoothing=config.label_smoothing, class_weights=weights,
                           pixel_loss=float(config.pixel_loss), ema_decay=float(config.ema_decay),
                           cutmix=float(config.cutmix), footprint=opts.footprint)
        generator = torch.Generator().manual_seed(config.seed)
        masks = train.masks if config.pixel_loss > 0 else None
        train_loader = DataLoader(TileDataset(x_train, train.labels, masks), batch_size=config.batch_size,
                                  shuffle=True,
                                  drop_last=len(train) > config.batch_size, generator=generator,
                                  num_workers=config.num_workers)
        val_loader = DataLoader(TileDataset(x_val, val.labels), batch_size=256, num_workers=config.num_workers)
        # The bundle takes the last epoch's weights: choosing an epoch by the validation blocks' loss would
        # tune to the blocks the map is then scored on.
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=stage / "checkpoints", filename="last",
                                                         monitor=None, save_last=False)
        history = EpochHistory()
        trainer = build_trainer(config, stage, [checkpoint, history], progress,
                                logger=L.pytorch.loggers.CSVLogger(stage, name="logs"),
                                log_every_n_steps=max(1, min(10, len(train_loader))))
        trainer.fit(task, train_loader, val_loader)
        if not trainer.is_global_zero:
            raise SystemExit(0)
        last = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        prefix = "ema_model." if config.ema_decay > 0 else "model."  # the weight average, when kept
        state = {k.removeprefix(prefix): v for k, v in last.items() if k.startswith(prefix)}
        t = grid.transform
        bundle = Bundle(task="landuse", model=model_spec, state_dict=state, bands=stack.band_names, mean=mean,
                        std=std, classes=classes, tile_size=opts.tile_size, resolution=(t.a, -t.e), crs=grid.crs,
                        regulariser=regulariser.settings(),
                        extra={"overlap": overlap, "tta": bool(config.predict_tta), "footprint": opts.footprint,
                               "band_selection": config.bands, "training_tiles": len(train),
                               "validation_tiles": len(val), "label_offset": registration["applied"]})
        bundle.save(stage / "model.geocamat")
        offset = registration["applied"]
        metrics = {"validation_map": _validation_map_metrics(bundle, stage, stack, labels, config, offset,
                                                                 progress, log),
                   "validation_tiles": {"n": len(val), "accuracy": _tile_accuracy(bundle, x_val, val.labels)},
                   "weights_epoch": config.epochs - 1, "lowest_validation_loss_epoch": history.best_epoch(),
                   "train_seconds": round(time.perf_counter() - started, 1),
                   "training_tiles": len(train), "regulariser": regulariser.settings(),
                   "label_registration": registration}
        if offset:  # the same map scored without the offset, for comparison
            metrics["validation_map_image_frame"] = {
                k: v for k, v in _score(bundle, stage, labels, config, None).items() if k != "confusion_matrix"}
        bundle.metrics = metrics
        bundle.save(stage / "model.geocamat")
        (stage / "metrics.json").write_text(json.dumps(metrics, indent=2))
        vm = metrics["validation_map"]
        plot_confusion(vm["confusion_matrix"], [c.name for c in classes], stage / "confusion.png",
                       title=f"validation blocks: OA {vm['overall_accuracy']}, kappa {vm['kappa']}")
        plot_history(history.rows, stage / "training.png")
        dump(config, stage / "config.yaml")
        for leftover in ("work", "checkpoints", "logs"):
            shutil.rmtree(stage / leftover, ignore_errors=True)
    return metrics


def _tile_accuracy(bundle: Bundle, x: torch.Tensor, y: torch.Tensor) -> float:
    model = bundle.build_model()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 512]).argmax(dim=1) for i in range(0, len(x), 512)])
    return round(float((pred == y).float().mean()), 4)


def _validation_map_metrics(bundle: Bundle, stage: Path, stack, labels, config: LandUseConfig,
                            offset: list[int] | None, progress: bool, log) -> dict:
    """Map the labelled part of the validation blocks with the trained bundle and score it there."""
    from geocamat.inference.landuse import predict_landuse
    from geocamat.inference.ranks import Ranks
    from geocamat.tasks.landuse.scoring import scored_bounds

    bbox = scored_bounds(labels.path, config.blocks, config.val_parity, margin=2 * bundle.tile_size)
    log("mapping the validation blocks to score the run" + (" (the box around their labels)" if bbox else ""))
    map_dir = stage / "work" / "validation_map"
    predict_landuse(bundle, [str(p) for p in stack.sources], map_dir, bbox=bbox, overlap=bundle.extra["overlap"],
                    tta=bundle.extra["tta"], vectorise=False, progress=progress, overwrite=True,
                    ranks=Ranks())  # this process alone, even under a launcher (DDP training)
    return _score(bundle, stage, labels, config, offset)


def _score(bundle: Bundle, stage: Path, labels, config: LandUseConfig, offset: list[int] | None) -> dict:
    from geocamat.tasks.landuse.scoring import score_map

    return score_map(stage / "work" / "validation_map" / "landuse.tif", labels.path, bundle.class_ids,
                     [c.name for c in bundle.classes], blocks=config.blocks, parity=config.val_parity,
                     offset=tuple(offset) if offset else None)


def _check_registration(config: LandUseConfig, x: torch.Tensor, masks: torch.Tensor, num_classes: int, log) -> dict:
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
