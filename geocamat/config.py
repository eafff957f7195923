"""Training configuration: defaults, YAML files, ``--set key=value`` overrides, validation.

Keys are flat, except ``camat`` (a mapping of CAMAT options) and ``classes`` (names/colours per code).
Relative paths in a YAML file are resolved against the file's folder.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from geocamat.errors import ConfigError

DEFAULTS: dict = {
    "task": "landuse",           # landuse | detection
    "images": [],                # paths, globs or folders of GeoTIFFs (one multi-band file per scene, or band files)
    "scenes": None,              # instead of images + labels: a folder with one sub-folder of images per class
    "image_size": 64,            # scene folders: images resized to this side (pixels)
    "train_fraction": 0.5,       # scene folders: stratified share of each class used for training
    "bands": None,               # band selection: names (file stems / descriptions) or 1-based numbers
    "labels": None,              # classified raster or vector layer (polygons/points)
    "label_field": None,         # class field of a vector layer
    "classes": {},               # {code: {name: ..., color: "#rrggbb"}} or {code: name}
    "tile_size": 16,             # tile side in pixels
    "stride": None,              # training tile stride in pixels (default tile_size // 4)
    "footprint": 0.25,           # central share of the tile whose labels give its class (1.0: whole tile)
    "output": None,              # map from class activation logits (dense) or window probabilities (window);
                                 # default: dense when pixel_loss > 0, else window
    "purity": 0.5,               # minimum share of a tile's majority class
    "min_labelled": 0.5,         # minimum share of labelled pixels in a tile (dense labels)
    "min_valid": 0.5,            # minimum share of valid image pixels in a tile
    "blocks": 4,                 # checkerboard blocks per side for the train/validation split
    "val_parity": "odd",         # validation blocks: row block + column block odd (or even)
    "max_tiles": 50000,          # cap on training tiles of the memory pipeline (the stream has none)
    "arch": None,                # camnet-xs | camnet-s | resnet10 | resnet18; default: camnet-xs for tiles of a
                                 # GeoTIFF stack, resnet18 for scene folders
    "epochs": 30,
    "batch_size": 64,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "label_smoothing": 0.05,
    "class_weighting": False,    # weight the loss by inverse class frequency
    "label_offset": "check",     # labels vs imagery: check | auto (score in the labels' frame) | none | [dy, dx]
    "pixel_loss": None,          # weight of per-pixel supervision of the class activation logits (0: tile labels
                                 # only); default: 1.0 with labels per pixel, 0 for scene folders
    "ema_decay": 0.0,            # > 0 (e.g. 0.998): the bundle gets an exponential moving average of the weights
    "cutmix": 0.0,               # probability of CutMix per training batch (a rectangle of another tile pasted in)
    "seed": 0,
    "regulariser": "camat",      # camat | cutout | random-erasing | hide-and-seek | none
    "camat": {},                 # CAMAT options, see geocamat.camat.CamatConfig
    "accelerator": "auto",       # auto | cpu | gpu | ...  (Lightning)
    "devices": "auto",
    "strategy": "auto",          # e.g. ddp for several GPUs
    "num_nodes": 1,
    "precision": None,           # default: bf16-mixed on GPU, 32 on CPU
    "num_workers": 0,
    "data_pipeline": "stream",   # stream: windows read from the stack every epoch (bounded memory, every labelled
                                 # window reachable) | memory: tiles cut once into memory (at most max_tiles)
    "samples_per_epoch": None,   # stream: windows drawn per epoch (None: every training window once per epoch)
    "class_balanced": False,     # stream: draw every class equally often (with replacement)
    "window_cache_mb": 256,      # stream: bound of each data process's cache of decoded chunks, megabytes
    "predict_tta": False,        # maps average each tile over its 8 flips/quarter turns (8x model cost)
    "predict_overlap": None,     # window overlap of maps (default: window maps 1 - footprint / 2, at most 0.875;
                                 # dense maps and footprint 1: 0.5)
}

_PATH_KEYS = ("images", "labels", "scenes")


def _coerce(text: str):
    """Parse a --set value as YAML (numbers, booleans, lists), falling back to the string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(config: dict, assignment: str) -> None:
    """Apply one ``key=value`` (``camat.tau=0.6`` for nested keys) to ``config`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    target = config
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {key}: {part} is not a mapping")
    target[parts[-1]] = _coerce(value)


def load_raw_config(path: str | Path | None = None, overrides: dict | None = None,
                    assignments: list[str] | tuple[str, ...] = ()) -> dict:
    """YAML file <- explicit overrides (CLI flags) <- ``--set`` assignments, without defaults or checks.

    Relative paths in the file are resolved against its folder. Raises ConfigError on an unreadable file.
    """
    config: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of settings")
        for key in _PATH_KEYS:
            if key in loaded and loaded[key] is not None:
                values = loaded[key] if isinstance(loaded[key], list) else [loaded[key]]
                resolved = [str(v) if Path(str(v)).is_absolute() else str(path.parent / str(v)) for v in values]
                loaded[key] = resolved if isinstance(loaded[key], list) else resolved[0]
        config.update(loaded)
    for key, value in (overrides or {}).items():
        if value is not None:
            if key == "camat":
                config["camat"] = {**(config.get("camat") or {}), **value}
            else:
                config[key] = value
    for assignment in assignments:
        apply_override(config, assignment)
    return config


def load_config(path: str | Path | None = None, overrides: dict | None = None,
                assignments: list[str] | tuple[str, ...] = ()) -> dict:
    """Defaults <- YAML file <- explicit overrides (CLI flags) <- ``--set`` assignments, validated.

    Raises:
        ConfigError: unreadable file, unknown key, or invalid value.
    """
    raw = load_raw_config(path, overrides, assignments)
    config = copy.deepcopy(DEFAULTS)
    camat = {**config["camat"], **(raw.pop("camat", None) or {})}
    config.update(raw)
    config["camat"] = camat
    return validate(config)


def detection_config(raw: dict) -> dict:
    """The settings of a detection run: only what the user gave, CAMAT options flattened (camat_tau, ...)."""
    config = {k: v for k, v in raw.items() if k not in ("task", "camat")}
    for key, value in (raw.get("camat") or {}).items():
        config[f"camat_{key}"] = value
    if isinstance(config.get("images"), str):
        config["images"] = [config["images"]]
    if isinstance(config.get("labels"), str):
        config["labels"] = [config["labels"]]
    return config


def validate(config: dict) -> dict:
    """Check keys and values; returns the config with normalised types."""
    detection = config.get("task") == "detection"
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown and not detection:
        raise ConfigError(f"unknown setting {unknown[0]!r}: known settings are {', '.join(sorted(DEFAULTS))}")
    if config["task"] not in ("landuse", "detection"):
        raise ConfigError(f"task must be landuse or detection, not {config['task']!r}")
    if isinstance(config["images"], str):
        config["images"] = [config["images"]]
    if config.get("scenes"):
        if not 0.0 < float(config["train_fraction"]) < 1.0:
            raise ConfigError("train_fraction must be between 0 and 1")
    elif not config["images"]:
        raise ConfigError("no images given: pass --images PATH (or `images:` in the config file)")
    if not config.get("labels") and not config.get("scenes"):
        raise ConfigError("no labels given: pass --labels PATH (a classified raster or a vector layer)")
    for key in ("tile_size", "epochs", "batch_size", "blocks", "max_tiles", "num_nodes"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"{key} must be a positive integer, not {config[key]!r}")
    if config["arch"] is None:  # small tiles of a stack: the smallest model mapped best on the NC sample, at ~1/20
        config["arch"] = "resnet18" if config.get("scenes") else "camnet-xs"  # of resnet18's cost per window
    if config["pixel_loss"] is None:  # per-pixel supervision gave the better map, and dense maps cost 1/16
        config["pixel_loss"] = 0.0 if config.get("scenes") else 1.0
    if config["output"] is None:
        config["output"] = "dense" if config["pixel_loss"] else "window"
    if config["output"] not in ("window", "dense"):
        raise ConfigError(f"output must be window or dense, not {config['output']!r}")
    if not 0.0 < float(config["footprint"]) <= 1.0:
        raise ConfigError(f"footprint must be in (0, 1], not {config['footprint']!r}")
    if not isinstance(config["pixel_loss"], (int, float)) or config["pixel_loss"] < 0:
        raise ConfigError(f"pixel_loss must be a number >= 0, not {config['pixel_loss']!r}")
    offset = config["label_offset"]
    if not (offset in ("check", "auto", "none") or (isinstance(offset, list) and len(offset) == 2
                                                       and all(isinstance(v, int) for v in offset))):
        raise ConfigError(f"label_offset must be check, auto, none or [dy, dx] in pixels, not {offset!r}")
    if not isinstance(config["ema_decay"], (int, float)) or not 0 <= config["ema_decay"] < 1:
        raise ConfigError(f"ema_decay must be a number in [0, 1), not {config['ema_decay']!r}")
    if not isinstance(config["cutmix"], (int, float)) or not 0 <= config["cutmix"] <= 1:
        raise ConfigError(f"cutmix must be a probability in [0, 1], not {config['cutmix']!r}")
    if config["cutmix"] and (config.get("camat") or {}).get("source") == "cached" \
            and config["regulariser"] == "camat":
        raise ConfigError("cutmix needs fresh class activation maps: cached maps belong to unmixed tiles "
                          "(set camat.source: fresh or cutmix: 0)")
    if config["pixel_loss"] and config.get("scenes"):
        raise ConfigError("pixel_loss needs labels per pixel (--images with --labels); scene folders have one "
                          "label per image: leave pixel_loss at 0")
    for key in ("purity", "min_labelled", "min_valid"):
        if not 0.0 <= float(config[key]) <= 1.0:
            raise ConfigError(f"{key} must be between 0 and 1, not {config[key]!r}")
    if not detection and config["tile_size"] < 8:
        raise ConfigError("tile_size must be at least 8 pixels for a meaningful class activation map")
    if config["data_pipeline"] not in ("stream", "memory"):
        raise ConfigError(f"data_pipeline must be stream or memory, not {config['data_pipeline']!r}")
    per_epoch = config["samples_per_epoch"]
    if per_epoch is not None and (not isinstance(per_epoch, int) or isinstance(per_epoch, bool) or per_epoch < 1):
        raise ConfigError(f"samples_per_epoch must be a positive integer (or null: every window once), "
                          f"not {per_epoch!r}")
    if not isinstance(config["class_balanced"], bool):
        raise ConfigError(f"class_balanced must be true or false, not {config['class_balanced']!r}")
    cache = config["window_cache_mb"]
    if not isinstance(cache, (int, float)) or isinstance(cache, bool) or cache < 0:
        raise ConfigError(f"window_cache_mb must be a number of megabytes >= 0, not {cache!r}")
    if config["val_parity"] not in ("odd", "even"):
        raise ConfigError("val_parity must be odd or even")
    from geocamat.camat import REGULARISERS

    if config["regulariser"] not in REGULARISERS:
        raise ConfigError(f"regulariser must be one of {', '.join(REGULARISERS)}, not {config['regulariser']!r}")
    if not isinstance(config.get("camat") or {}, dict):
        raise ConfigError("camat must be a mapping of CAMAT options")
    config["camat"] = dict(config.get("camat") or {})
    return config


def dump_config(config: dict, path: Path) -> None:
    """Write the resolved configuration (saved with every run)."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
