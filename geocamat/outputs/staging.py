"""Output folders that appear complete or not at all."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from geocamat.errors import OutputExistsError


@contextmanager
def staged_output(out_dir: Path, overwrite: bool = False):
    """Yield a temporary sibling folder; on success it replaces ``out_dir``, on error it is removed.

    Raises:
        OutputExistsError: ``out_dir`` exists, is not empty, and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out_dir} already holds results: choose another --out or pass --overwrite")
    stage = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(stage, out_dir)
