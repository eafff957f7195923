"""Scene classification from a folder per class (RSSCN7 / UC Merced layout), with robustness evaluation."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from geocamat.bundle import Bundle
from geocamat.outputs.staging import TRAIN_RESULTS, staged_output
from geocamat.settings import dump
from geocamat.tasks.scenes.config import SceneConfig
from geocamat.tasks.training import (
    absolute_paths,
    build_regulariser_from,
    build_trainer,
    camnet_spec,
    fit,
    quiet_lightning,
    set_zero_fill,
    start_task,
    use_threads,
)


def _bands_of(items, bands: int | None, source: str) -> tuple[int, int, dict]:
    """(the band count to serve, how many grey images are repeated into it, the images' size: ``source_side``
    their median side in pixels and ``source_metres`` their median pixel side in metres), from their headers.
    The band count is ``bands`` or the most common count; a grey image among colour ones is repeated, any other
    count refused in one line."""
    import statistics

    from geocamat.data.grey import fits, grey_for_colour
    from geocamat.data.scenes import band_count_error, scene_header
    from geocamat.tasks.scenes.ground import median_metres

    headers = [scene_header(p) for p, _ in items]
    counts = [h[0] for h in headers]
    target = bands or max(set(counts), key=lambda c: (counts.count(c), c))
    for (path, _), c in zip(items, counts, strict=True):
        if not fits(c, target):
            raise band_count_error(path, c, target, source if bands else "the others have")
    size = {"source_side": round(statistics.median((h.width * h.height) ** 0.5 for h in headers)),
            "source_metres": median_metres(headers)}
    return target, sum(grey_for_colour(c, target) for c in counts), size


def _ground(sizes: dict, pixel_metres: float | None, log: Callable[[str], None]) -> dict:
    """The training images' size with the user's ``pixel_metres`` as their ground size when given (said in one
    line when the images' own georeference disagrees by more than 10%)."""
    found = sizes["source_metres"]
    if pixel_metres is None:
        return sizes
    if found and abs(found / pixel_metres - 1) > 0.1:
        log(f"note: pixel_metres {pixel_metres:g} recorded; the images' georeference says {found:.3g} m")
    return sizes | {"source_metres": float(pixel_metres)}


def _data(items, size: int, cache_mb: float, mean=None, std=None, log: Callable[[str], None] | None = None,
          source: str = "the model expects", together: int | None = None, part: str = ""):
    """The scenes as a dataset of normalised samples, with the normalisation (computed when not given).

    When ``together`` images (default: these; e.g. the training and held-out ones, which are in memory at the
    same time) decoded fit in ``cache_mb`` (4 bytes a band and pixel), these are decoded once into memory;
    otherwise they are decoded when drawn (:class:`geocamat.data.scenes.SceneFiles`), statistics from 2,000 of
    them, so memory does not grow with the dataset. Returns (dataset, mean, std, streamed, the images' size as
    :func:`_bands_of` gives it).
    """
    from geocamat.data.scenes import SceneDataset, SceneFiles, sampled_band_stats
    from geocamat.tasks.landuse.module import TileDataset

    bands, greys, sizes = _bands_of(items, None if mean is None else len(mean), source)
    if greys and log is not None:
        log(f"note: {greys} grey {part + ' ' if part else ''}scene image{'s' if greys != 1 else ''} repeated into "
            "the 3 bands of the others")
    if (together or len(items)) * bands * size * size * 4 > cache_mb * 2**20:
        if mean is None:
            mean, std = sampled_band_stats(items, size, bands)
        return SceneFiles(items, size, mean, std, bands), [float(v) for v in mean], [float(v) for v in std], True, sizes
    ds = SceneDataset(items, size, bands=bands, source=source)
    if mean is None:
        mean, std = ds.band_stats()
    mean_t, std_t = torch.as_tensor(mean).view(1, -1, 1, 1), torch.as_tensor(std).view(1, -1, 1, 1)
    images = ds.images.sub_(mean_t).div_(std_t)  # in place: no second copy of the dataset
    return TileDataset(images, ds.labels), [float(v) for v in mean], [float(v) for v in std], False, sizes


def train_scenes(config: SceneConfig, out_dir: Path, *, overwrite: bool = False, progress: bool = True,
                 log: Callable[[str], None] = print) -> dict:
    """Train a scene classifier on a stratified split of ``config.scenes``; score the held-out part.

    Writes ``model.geocamat`` (task ``scenes``), ``metrics.json`` (held-out accuracy, per class, and under
    test-time occlusions), ``confusion.png``, ``training.png`` and ``config.yaml``.
    """
    import lightning as L
    from torch.utils.data import DataLoader

    from geocamat.allocator import fix_mmap_threshold
    from geocamat.camat.robustness import robustness_report
    from geocamat.data.classes import build_classes
    from geocamat.data.scenes import split_scenes
    from geocamat.metrics import confusion_matrix, summarise
    from geocamat.outputs.plots import plot_confusion, plot_history
    from geocamat.tasks.landuse.module import EpochHistory, LandUseTask

    fix_mmap_threshold()  # decoded full-size images freed by the thousand would otherwise fragment the heap and grow
    started = time.perf_counter()
    quiet_lightning(progress)
    use_threads(config)
    L.seed_everything(config.seed, verbose=False)
    from geocamat.models.weights import load_init

    init = load_init(config.weights, config.init_from, progress)
    split = split_scenes(config.scenes, config.train_fraction, config.seed)
    size = int(config.image_size)
    with staged_output(Path(out_dir), overwrite, TRAIN_RESULTS) as stage:
        both = len(split.train) + len(split.test)
        train_ds, mean, std, streamed, sizes = _data(split.train, size, config.cache_mb, log=log, together=both,
                                                     part="training")
        test_ds, _, _, _, _ = _data(split.test, size, config.cache_mb, mean, std, log=log, part="held-out",
                                    source="the training images have", together=both)
        sizes = _ground(sizes, config.pixel_metres, log)
        log(f"{len(train_ds)} training and {len(test_ds)} held-out scenes of {size} px, {len(split.classes)} classes"
            + (f"; decoded as they are drawn (more than cache_mb {config.cache_mb:g} MB decoded)" if streamed else ""))
        classes = build_classes(list(range(len(split.classes))), dict(enumerate(split.classes)))
        spec = {"name": "camnet", "in_channels": len(mean), "num_classes": len(classes), "tile_size": size,
                "arch": config.arch, "output": "window"}
        config.arch = camnet_spec(spec, init)
        regulariser = build_regulariser_from(config)
        set_zero_fill(regulariser, mean, std)
        task = LandUseTask(spec, regulariser, lr=config.lr, weight_decay=config.weight_decay,
                           label_smoothing=config.label_smoothing)
        init_record = start_task(task, init, classes, log)
        generator = torch.Generator().manual_seed(config.seed)
        workers = int(config.num_workers)
        train_loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True,
                                  drop_last=len(train_ds) > config.batch_size, generator=generator,
                                  num_workers=workers, persistent_workers=workers > 0)
        val_loader = DataLoader(test_ds, batch_size=256, num_workers=workers)
        history = EpochHistory()
        trainer = build_trainer(config, stage, [history], progress, logger=False, enable_checkpointing=False)
        from geocamat.preflight import check_checkpoint

        check_checkpoint(stage, task, shown=Path(out_dir))  # a full or read-only disk fails now, not at the end
        fit(trainer, task, train_loader, val_loader)
        if not trainer.is_global_zero:
            raise SystemExit(0)
        model = task.model.cpu().eval()
        bundle = Bundle(task="scenes", model=spec, state_dict=model.state_dict(),
                        bands=[f"band{i + 1}" for i in range(len(mean))], mean=mean, std=std, classes=classes,
                        tile_size=size, regulariser=regulariser.settings(),
                        extra={"train_fraction": config.train_fraction, "seed": config.seed,
                               "scenes": str(config.scenes), "init": init_record, **sizes,
                               "training_scenes": sorted(scene_key(p, split.classes[k]) for p, k in split.train)})
        with torch.no_grad():
            pairs = [(model(b["image"]).argmax(1), b["label"]) for b in val_loader]
        pred, truth = torch.cat([p for p, _ in pairs]), torch.cat([t for _, t in pairs])
        ids = list(range(len(classes)))
        held_out = summarise(confusion_matrix(truth.numpy(), pred.numpy(), ids), ids, split.classes)
        robust = robustness_report(model, DataLoader(test_ds, batch_size=64, num_workers=workers), seed=config.seed,
                                   auc_samples=64)
        metrics = {"held_out": held_out, "robustness": robust, "best_epoch": history.best_epoch(),
                   "train_seconds": round(time.perf_counter() - started, 1), "regulariser": regulariser.settings()}
        bundle.metrics = metrics
        bundle.save(stage / "model.geocamat")
        (stage / "metrics.json").write_text(json.dumps(metrics, indent=2))
        plot_confusion(held_out["confusion_matrix"], split.classes, stage / "confusion.png",
                       title=f"held-out scenes: OA {held_out['overall_accuracy']}")
        plot_history(history.rows, stage / "training.png")
        dump(absolute_paths(config), stage / "config.yaml")  # `geocamat train RUN/config.yaml` runs it again
    return metrics


def scored_scenes(bundle: Bundle, scenes: str | Path, whole: bool = False) -> tuple[list[tuple[Path, int]], str]:
    """The (image, model class index) pairs to score in ``scenes`` and what they are.

    By default the images the model did not train on (the bundle lists its training images; a model from before
    that list: its split made again, same fraction and seed); ``whole``: every image (a test set of its own).
    Labels are the model's class indices by folder name, so a folder with fewer classes is scored right.

    Raises:
        InvalidLabelsError: a class folder the model does not know.
    """
    import unicodedata

    from geocamat.data.scenes import list_scenes, split_scenes
    from geocamat.errors import InvalidLabelsError

    names = [unicodedata.normalize("NFC", c.name) for c in bundle.classes]
    classes, items = list_scenes(scenes)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise InvalidLabelsError(f"class folder(s) {', '.join(unknown[:5])} in {scenes} are not classes of the "
                                 f"model ({', '.join(names)}); remove them or rename them to the model's classes")
    trained = bundle.extra.get("training_scenes")
    if whole:
        what = "every image of the folder"
    elif trained is not None:  # the model lists the images it trained on: every other image is held out
        seen = set(trained)
        kept = [(p, k) for p, k in items if scene_key(p, classes[k]) not in seen]
        what = (f"the images the model did not train on ({len(kept)} of {len(items)}; --all-images scores every "
                "image of a test folder)")
        items = kept
        if not items:
            raise InvalidLabelsError(f"every image of {scenes} is one the model trained on: nothing held out to "
                                     "score; give a test folder with --all-images")
    else:  # a model from before training_scenes: its split made again (same fraction and seed)
        fraction = bundle.extra.get("train_fraction", 0.5)
        items = split_scenes(scenes, fraction, bundle.extra.get("seed", 0)).test
        what = (f"the held-out part ({1 - fraction:.0%} of each class, the model's split; --all-images scores every "
                "image of a test folder)")
    return [(p, names.index(classes[k])) for p, k in items], what


def scene_key(path: Path, class_name: str) -> str:
    """How a model lists an image it trained on: ``class/file name`` (the same wherever the folder is copied)."""
    import unicodedata

    return f"{class_name}/{unicodedata.normalize('NFC', Path(path).name)}"


def evaluate_scenes(bundle: Bundle, scenes: str | Path, *, whole: bool = False, device: str | None = None,
                    auc_samples: int = 64, cache_mb: float = 2048) -> dict:
    """Accuracy of a scene bundle on a scene folder (see :func:`scored_scenes`), clean and under occlusions."""
    from torch.utils.data import DataLoader

    from geocamat.allocator import fix_mmap_threshold
    from geocamat.camat.robustness import robustness_report

    fix_mmap_threshold()  # as in training
    items, what = scored_scenes(bundle, scenes, whole)
    data, _, _, _, _ = _data(items, bundle.tile_size, cache_mb, bundle.mean, bundle.std)
    model = bundle.build_model()
    return robustness_report(model, DataLoader(data, batch_size=64), device=device,
                             auc_samples=auc_samples) | {"scored": what}
