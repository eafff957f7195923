"""What every task shares: the training settings common to all tasks, and the face each task package shows.

A task package (``geocamat.tasks.<name>``) exposes, without importing torch at import time:

- ``Config``: its settings dataclass (subclass of :class:`TrainSettings`), the one home of its defaults;
- ``PredictOptions`` / ``EvaluateOptions``: dataclasses of the options of ``predict`` and ``evaluate``;
- ``train(config, out_dir, *, overwrite, progress, log) -> dict`` (metrics), writing the run folder;
- ``predict(bundle, images, out_dir, options, *, overwrite, progress, model_path) -> dict`` (the report);
- ``evaluate(bundle, images, options, *, progress, log) -> dict`` (metrics);
- ``describe(bundle) -> dict`` (what ``geocamat info`` prints about its bundles);
- ``summary(metrics) -> list[str]`` (the lines ``geocamat train`` prints at the end).
"""

from __future__ import annotations

from dataclasses import dataclass

from geocamat.camat.config import CamatConfig
from geocamat.errors import ConfigError
from geocamat.settings import positive_int, setting

REGULARISER_NAMES = ("camat", "cutout", "random-erasing", "hide-and-seek", "none")


@dataclass
class TrainSettings:
    """Settings of every training run: occlusion, randomness and the Lightning engine."""

    regulariser: str = setting("camat", "Training-time occlusion (CAMAT or a baseline).", choices=REGULARISER_NAMES)
    camat: CamatConfig = setting(help="CAMAT options (camat.tau, camat.fill, ...); see docs/camat.md.",
                                 factory=CamatConfig)
    weights: str | None = setting(None, "Start from these weights: a torchvision/TorchGeo enum name (e.g. "
                                  "ResNet18_Weights.IMAGENET1K_V1) or a .pth/.pt/.safetensors/.geocamat file.")
    init_from: str | None = setting(None, "Start from the backbone (or whole detector) of a geocamat bundle "
                                    "(RUN/model.geocamat).", path=True)
    seed: int = setting(0, "Random seed.")
    accelerator: str = setting("auto", "Lightning accelerator: auto (GPU if present), cpu, gpu.")
    devices: int | str = setting("auto", "Devices per node (e.g. 1, 4, auto).")
    strategy: str = setting("auto", "Lightning strategy, e.g. ddp for several GPUs.")
    num_nodes: int = setting(1, "Machines for distributed training.")
    precision: str | None = setting(None, "Lightning precision; default bf16-mixed on a GPU, 32-true on the CPU.")
    num_workers: int = setting(0, "DataLoader worker processes.")
    num_threads: int | None = setting(None, "CPU threads for torch in this process (default: torch's, one per "
                                      "core); e.g. 1 per run when several runs share a machine.")

    #: regularisers this task supports (a subclass may narrow it)
    regularisers = REGULARISER_NAMES

    def check(self) -> None:
        """Validate the shared settings; subclasses extend it."""
        positive_int(self, "num_nodes")
        if self.regulariser not in self.regularisers:
            raise ConfigError(f"regulariser must be one of {', '.join(self.regularisers)} for this task, "
                              f"not {self.regulariser!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ConfigError(f"num_workers must be an integer >= 0, not {self.num_workers!r}")
        if self.num_threads is not None:
            positive_int(self, "num_threads")
        self._check_engine()

    def _check_engine(self) -> None:
        """The Lightning settings in one line each, before Lightning meets them (it raised tracebacks)."""
        import os

        if self.accelerator not in ACCELERATORS:
            raise ConfigError(f"accelerator must be one of {', '.join(ACCELERATORS)}, not {self.accelerator!r}")
        if not _devices_ok(self.devices):
            raise ConfigError(f"devices must be a number of devices >= 1 (-1: all), a list of device indexes "
                              f"(e.g. [0, 2]) or auto, not {self.devices!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.precision is not None and str(self.precision) not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be an integer from 0 to 2**32 - 1, not {self.seed!r}")
        lr = getattr(self, "lr", 1.0)
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr >= 0:  # (0: the weights stay)
            raise ConfigError(f"lr must be a number >= 0, not {lr!r}")
        if self.num_nodes > 1 and not any(k in os.environ for k in ("WORLD_SIZE", "SLURM_NTASKS")):
            raise ConfigError(f"--num-nodes {self.num_nodes} needs a launcher on each machine (torchrun --nnodes "
                              f"{self.num_nodes} ... $(which geocamat) train ..., or srun --nodes {self.num_nodes} "
                              "geocamat train ...): without one the run waits for machines that never join")


def _devices_ok(devices) -> bool:
    """Lightning's ``devices``: auto, a count >= 1 or -1, or device indexes (a list, or "0,2")."""
    if devices == "auto":
        return True
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or devices == -1
    if isinstance(devices, list):
        return bool(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    return isinstance(devices, str) and all(part.strip().isdigit() for part in devices.split(","))


#: what ``accelerator``, ``strategy`` and ``precision`` may be (Lightning's names that a geocamat run can use)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "deepspeed", "single_device")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "transformer-engine")


@dataclass
class ClassifierSettings(TrainSettings):
    """Settings of the classifier tasks (land use and scenes): one CamNet trained with AdamW and a one-cycle
    schedule."""

    epochs: int = setting(30, "Training epochs.")
    batch_size: int = setting(64, "Tiles (or images) per batch.")
    lr: float = setting(2e-3, "Peak learning rate (AdamW, one-cycle).")
    weight_decay: float = setting(1e-4, "AdamW weight decay.")
    label_smoothing: float = setting(0.05, "Cross-entropy label smoothing.")

    def check(self) -> None:
        super().check()
        if self.camat.negatives:
            raise ConfigError("camat.negatives is only for detection (occluders outside the boxes); leave it at 0")


def checked(settings):
    """``settings`` validated as the command line's are (:func:`geocamat.settings.build` checks them; a dataclass
    made in Python was not: ``epochs=-3`` ran, ``min_area=-1`` was recorded). Settings without ``check``: as given."""
    check = getattr(settings, "check", None)
    if check is not None:
        check()
    return settings


def image_list(images, *, required: bool = True) -> list[str]:
    """The images of a Python call as a list of paths: one path (str or Path) is one image, not its characters
    ("no raster found at 'c'"); an empty list is refused when images are required."""
    import os

    if isinstance(images, str | os.PathLike):
        images = [images]
    out = [os.fspath(i) for i in images or ()]
    if required and not out:
        raise ConfigError("no images given: give one or more image files, folders or globs")
    return out
