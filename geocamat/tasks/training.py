"""Pieces every task's training shares: the regulariser from the settings, the Lightning Trainer, quiet logs,
the run folder with its checkpoints (so that ``train --resume`` can continue a killed run)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geocamat.errors import ConfigError


def build_regulariser_from(config, builder=None):
    """The training-time occlusion of a run: CAMAT with ``config.camat``, or a baseline with its own defaults.

    Args:
        config: task settings (``regulariser`` and ``camat``).
        builder: ``(name, **options) -> regulariser``; default :func:`geocamat.camat.build_regulariser`
            (detection passes its object-aware builder).
    """
    from dataclasses import asdict

    if builder is None:
        from geocamat.camat import build_regulariser as builder
    name = config.regulariser
    options = asdict(config.camat) if name == "camat" else {}
    try:
        return builder(name, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {name} option: {exc}") from exc


def set_zero_fill(regulariser, mean, std) -> None:
    """Give a regulariser the normalised value of a raw 0 per band (the ``zero`` fill): -mean / std."""
    import torch

    mean_t, std_t = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    regulariser.zero_value = -mean_t / std_t.clamp_min(1e-12)


#: Lightning's INFO lines that say nothing about this run (its "GPU available: ..., used: ..." line stays)
LIGHTNING_NOISE = ("Tip:", "TPU available", "HPU available", "IPU available", "Loading `train_dataloader`",
                   "`Trainer.fit` stopped", "LOCAL_RANK:")
#: the loggers Lightning makes them in
NOISY_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda")


def quiet_lightning(progress: bool) -> None:
    """Silence Lightning's tips and known third-party deprecation noise; keep its INFO lines unless quiet."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    for name in NOISY_LOGGERS:  # a logger's filter sees the records made there, whatever handler prints them
        emitter = logging.getLogger(name)
        if not any(getattr(f, "geocamat", False) for f in emitter.filters):
            drop_noise = logging.Filter()
            drop_noise.filter = lambda record: not any(text in str(record.msg) for text in LIGHTNING_NOISE)
            drop_noise.geocamat = True
            emitter.addFilter(drop_noise)
    if not progress:
        for name in ("lightning.pytorch", "lightning.fabric"):  # fabric: "Initializing distributed" under DDP
            logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def caller_state() -> Iterator[None]:
    """Training from Python (a notebook) leaves the caller's process as it found it: torch's thread count, the
    warnings filters, Lightning's log levels and the seed variables Lightning sets are put back afterwards."""
    import logging
    import warnings

    import torch

    threads = torch.get_num_threads()
    levels = {name: logging.getLogger(name).level for name in ("lightning.pytorch", "lightning.fabric")}
    env = {name: os.environ.get(name) for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    try:
        with warnings.catch_warnings():
            yield
    finally:
        torch.set_num_threads(threads)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def use_threads(config) -> None:
    """Set torch's CPU threads to the run's ``num_threads`` (unset: torch's default)."""
    import torch

    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))


def build_trainer(config, stage: Path | None, callbacks: list, progress: bool, **kwargs):
    """A Lightning Trainer from the run's settings (devices, strategy, nodes, precision: bf16 on GPU); without
    ``progress``, Lightning's INFO lines are silenced too (:func:`quiet_lightning`), for every task. Progress is
    Lightning's bar on a terminal, a line per epoch in a log file or pipe (:class:`~geocamat.tasks.epoch_lines.
    EpochLines`)."""
    import sys

    import lightning as L
    import torch

    from geocamat.progress_lines import is_terminal
    from geocamat.tasks.divergence import FiniteLoss

    quiet_lightning(progress)
    callbacks = [FiniteLoss(), *callbacks]  # a diverged run ends in one line, not in a model of NaN weights
    bar = progress and is_terminal(sys.stdout)  # Lightning's bar writes to stdout
    if progress and not bar:
        from geocamat.tasks.epoch_lines import EpochLines

        callbacks = [*callbacks, EpochLines()]

    if config.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--accelerator {config.accelerator}: no GPU is visible to torch here (torch "
                          f"{torch.__version__}); train on the CPU (--accelerator cpu or auto), or install a CUDA "
                          "build")
    gpu = torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda")
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(max_epochs=config.epochs, accelerator=config.accelerator, devices=config.devices,
                         strategy=config.strategy, num_nodes=config.num_nodes,
                         precision=config.precision or ("bf16-mixed" if gpu else "32-true"), callbacks=callbacks,
                         enable_progress_bar=bar, enable_model_summary=False, default_root_dir=stage, **kwargs)
    except (MisconfigurationException, ValueError) as exc:  # e.g. more devices than the machine has
        from geocamat.failures import one_line

        raise ConfigError(f"Lightning refuses these settings (accelerator {config.accelerator}, devices "
                          f"{config.devices}, strategy {config.strategy}): {one_line(str(exc), 200)}") from exc


def camnet_spec(spec: dict, init) -> str:
    """The arch of a CamNet run: the configured one, else the weights' own; sets the stem to the weights'.

    Args:
        spec: the model spec (``arch`` None when the user gave none).
        init: the starting weights (:class:`geocamat.models.weights.ResNetWeights`) or None.

    Returns:
        The arch name (also set in ``spec``).
    """
    from geocamat.errors import WeightsError
    from geocamat.models.weights import camnet_arch

    if init is None:
        return spec["arch"]
    if init.stem_kernel is None:
        raise WeightsError(f"{init.name} is a detector whose two-convolution stem cannot start a "
                           f"{spec['name']} model: --init-from a land-use or scene model, or give ResNet weights")
    spec["arch"] = spec["arch"] or camnet_arch(init)
    spec["stem_kernel"] = init.stem_kernel
    return spec["arch"]


def start_task(task, init, classes: list, log) -> dict | None:
    """Load the starting weights into a Lightning task's ``model`` (and its weight average); say so in one line.

    Returns:
        The record for ``bundle.extra["init"]`` (None without weights).
    """
    if init is None:
        return None
    from geocamat.models.weights import apply_weights, init_message

    record = apply_weights(task.model, init, [c.name for c in classes])
    if getattr(task, "ema_model", None) is not None:
        task.ema_model.load_state_dict(task.model.state_dict())
    log(init_message(record))
    return record


def global_rank_from_env() -> int:
    """This process's rank as launched (torchrun, SLURM, Lightning's own launcher); 0 when not distributed."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return int(os.environ.get("NODE_RANK", "0") or 0) + int(os.environ.get("LOCAL_RANK", "0") or 0)


@contextmanager
def run_folder(out_dir: Path, overwrite: bool, resume: bool) -> Iterator[tuple[Path, Path | None]]:
    """(stage folder, checkpoint to resume from): rank 0 stages the run folder, other ranks work in a temp folder.

    With ``resume``, the stage of the killed run of ``out_dir`` is continued where it is (with its checkpoint).
    """
    from geocamat.outputs.staging import TRAIN_RESULTS, interrupted_run, staged_output

    checkpoint = None
    reuse = None
    if resume:
        reuse = interrupted_run(out_dir)
        checkpoint = reuse / "checkpoints" / "last.ckpt"
    if global_rank_from_env() != 0:  # DDP: only rank 0 writes the run folder
        with tempfile.TemporaryDirectory(prefix="geocamat-rank-") as tmp:
            yield Path(tmp), checkpoint
        return
    with staged_output(Path(out_dir), overwrite or resume, TRAIN_RESULTS, reuse=reuse) as stage:
        yield stage, checkpoint


def fit(trainer, *args, **kwargs) -> None:
    """``trainer.fit(*args, **kwargs)``; a Ctrl-C stays a KeyboardInterrupt (Lightning turns it into an exit with
    code 1 after its graceful shutdown), so that the run's checkpoint is kept for ``--resume`` and the command
    says so."""
    try:
        trainer.fit(*args, **kwargs)
    except SystemExit:
        if getattr(trainer, "interrupted", False):
            raise KeyboardInterrupt from None
        raise


def atomic_checkpoints():
    """A Lightning checkpoint IO that writes each checkpoint to a temporary name, then renames it.

    A run killed while it saves keeps its previous checkpoint whole, so that ``train --resume`` can use it.
    """
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            path = Path(path)
            partial = path.with_name(path.name + ".partial")
            super().save_checkpoint(checkpoint, partial, storage_options)
            os.replace(partial, path)

    return AtomicCheckpointIO()


def last_checkpoint(stage: Path, **kwargs):
    """The callback that keeps ``stage/checkpoints/last.ckpt``, the run's latest epoch (``kwargs``: Lightning's
    ModelCheckpoint options)."""
    import lightning as L

    return L.pytorch.callbacks.ModelCheckpoint(dirpath=stage / "checkpoints", filename="last", monitor=None,
                                               save_last=False, enable_version_counter=False, **kwargs)


def absolute_paths(settings, task: str | None = None) -> dict:
    """The settings as a dict with their file paths absolute (saved early in a run's stage, where
    ``train --resume`` reads them, from wherever it is started); ``task`` is written first when given."""
    from geocamat.settings import MAYBE_PATH_KEYS, PATH_KEYS, as_dict

    out = as_dict(settings)
    for key in PATH_KEYS + MAYBE_PATH_KEYS:
        value = out.get(key)
        if isinstance(value, list):
            out[key] = [str(Path(v).absolute()) for v in value]
        elif isinstance(value, str) and value and (key in PATH_KEYS or Path(value).exists()):
            out[key] = str(Path(value).absolute())
    return {"task": task, **out} if task else out


def rng_states() -> dict:
    """The torch, NumPy and Python random states, as tensors and numbers only (a checkpoint that holds them
    loads with ``torch.load(weights_only=True)``); :func:`restore_rng_states` puts them back."""
    import random

    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch_rng": torch.get_rng_state(),
            "numpy_rng": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python_rng": [int(version), torch.tensor(internal, dtype=torch.int64),
                           gauss_next if gauss_next is None else float(gauss_next)]}


def restore_rng_states(state: dict) -> None:
    """Set the random states saved by :func:`rng_states` (a resumed run draws what the killed one would have)."""
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state["torch_rng"])
    keys, pos, has_gauss, gauss = state["numpy_rng"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python_rng"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss_next))
