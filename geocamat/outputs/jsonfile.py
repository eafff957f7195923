"""JSON files written whole or not at all (reports, manifests, metrics), numpy values included."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def json_default(value):
    """JSON for what the standard encoder refuses: numpy scalars and arrays; anything else as its text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)  # paths, CRSs and the like: as they print


def write_json(path: str | os.PathLike, data, indent: int | None = 2) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=indent, default=json_default, allow_nan=True))
    os.replace(tmp, path)
