"""Pieces every task's training shares: the regulariser from the settings, the Lightning Trainer, quiet logs."""

from __future__ import annotations

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


def quiet_lightning(progress: bool) -> None:
    """Silence Lightning's tips and known third-party deprecation noise; keep its INFO lines unless quiet."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    for handler in logging.getLogger("lightning.pytorch").handlers:  # records of child loggers pass here
        if not any(getattr(f, "geocamat", False) for f in handler.filters):
            drop_tips = logging.Filter()
            drop_tips.filter = lambda record: "Tip:" not in str(record.msg)
            drop_tips.geocamat = True
            handler.addFilter(drop_tips)
    if not progress:
        for name in ("lightning.pytorch", "lightning.fabric"):  # fabric: "Initializing distributed" under DDP
            logging.getLogger(name).setLevel(logging.WARNING)


def build_trainer(config, stage: Path | None, callbacks: list, progress: bool, **kwargs):
    """A Lightning Trainer from the run's settings (devices, strategy, nodes, precision: bf16 on GPU); without
    ``progress``, Lightning's INFO lines are silenced too (:func:`quiet_lightning`), for every task."""
    import lightning as L
    import torch

    quiet_lightning(progress)

    gpu = torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda")
    return L.Trainer(max_epochs=config.epochs, accelerator=config.accelerator, devices=config.devices,
                     strategy=config.strategy, num_nodes=config.num_nodes,
                     precision=config.precision or ("bf16-mixed" if gpu else "32-true"), callbacks=callbacks,
                     enable_progress_bar=progress, enable_model_summary=False, default_root_dir=stage, **kwargs)


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
