"""Output folders that appear complete or not at all."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from geocamat.errors import OutputExistsError


def interrupted_run(out_dir: Path) -> Path:
    """The staged folder of an interrupted ``geocamat train --out out_dir`` with a checkpoint (the newest).

    Raises:
        ResumeError: there is none.
    """
    from geocamat.errors import ResumeError

    out_dir = Path(out_dir)
    found = sorted(out_dir.parent.glob(f".{out_dir.name}.partial-*/checkpoints/last.ckpt"),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        done = " (it finished: its model is there)" if (out_dir / "model.geocamat").exists() else ""
        raise ResumeError(f"no interrupted training of {out_dir} to resume{done}: --resume needs the "
                          f".{out_dir.name}.partial-*/checkpoints/last.ckpt that a killed run leaves after its "
                          "first epoch; start a new run without --resume")
    return found[-1].parent.parent


@contextmanager
def staged_output(out_dir: Path, overwrite: bool = False, reuse: Path | None = None):
    """Yield a temporary sibling folder; on success it replaces ``out_dir``, on error it is removed.

    Args:
        out_dir: the final folder.
        overwrite: replace an existing ``out_dir``.
        reuse: an existing staged folder to continue in (``train --resume``); on error it is kept, so
            that the run can be resumed again.

    Raises:
        OutputExistsError: ``out_dir`` exists, is not empty, and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out_dir} already holds results: choose another --out or pass --overwrite")
    if reuse is not None:
        stage = Path(reuse)
        yield stage  # an error leaves it in place, to be resumed again
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(stage, out_dir)
        return
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
