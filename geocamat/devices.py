"""Which torch device a run uses: ``auto`` (a CUDA GPU when present), ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

from geocamat.errors import ConfigError


def resolve_device(device: str | None = "auto"):
    """The :class:`torch.device` for a user's ``--device``; a one-line error for an unknown or absent one."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "gpu":
        device = "cuda"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r}: use auto, cpu or cuda") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA GPU is available: use --device cpu")
    return dev
