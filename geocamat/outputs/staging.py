"""Output folders that appear complete or not at all, and never lose a file geocamat did not write.

A run writes into a hidden sibling stage ``.OUT.partial-PID/``; on success each entry of the stage
replaces the entry of the same name in ``OUT`` (and results of an earlier run that this run does not
write again are removed, by name). Anything else in ``OUT`` (a user's notes, data, other tools' files)
is left as it was. Stages of runs that were killed (their process is gone) are removed when the next run
into the same ``OUT`` starts, so they never pile up.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from geocamat.errors import OutputExistsError
from geocamat.leftovers import pid_alive

#: What ``geocamat train`` writes into its run folder (land use and scene models; detection writes a subset).
TRAIN_RESULTS = ("model.geocamat", "metrics.json", "confusion.png", "training.png", "config.yaml")
#: What ``geocamat predict`` writes for a detection model.
DETECTION_RESULTS = ("detections.gpkg", "detections.qml", "counts.csv", "counts.csvt", "regions.gpkg", "regions.qml",
                     "report.json")
STAGE_MARK = ".partial-"


def stage_path(out_dir: Path, pid: int | None = None) -> Path:
    """The hidden stage folder of a run of process ``pid`` (default: this one) into ``out_dir``."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}{STAGE_MARK}{os.getpid() if pid is None else pid}")


def stale_stages(out_dir: Path) -> list[Path]:
    """Stages of earlier runs into ``out_dir`` whose process is gone (killed runs' leftovers)."""
    out_dir = Path(out_dir)
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    prefix = f".{out_dir.name}{STAGE_MARK}"
    found = []
    for entry in parent.iterdir():
        if not entry.name.startswith(prefix) or not entry.is_dir():
            continue
        pid = entry.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            found.append(entry)
    return sorted(found)


def interrupted_run(out_dir: Path) -> Path:
    """The stage of a killed ``geocamat train --out out_dir`` that holds a checkpoint (the newest).

    Raises:
        ResumeError: there is none.
    """
    from geocamat.errors import ResumeError

    found = sorted((s for s in stale_stages(out_dir) if (s / "checkpoints" / "last.ckpt").is_file()),
                   key=lambda s: (s / "checkpoints" / "last.ckpt").stat().st_mtime)
    if not found:
        out_dir = Path(out_dir)
        done = " (it finished: its model is there)" if (out_dir / "model.geocamat").exists() else ""
        raise ResumeError(f"no interrupted training of {out_dir} to resume{done}: --resume needs the "
                          f".{out_dir.name}.partial-*/checkpoints/last.ckpt that a killed run leaves after its "
                          "first epoch; start a new run without --resume")
    return found[-1]


def results_in(out_dir: Path, owned: Sequence[str]) -> list[str]:
    """The names of ``owned`` that exist in ``out_dir``."""
    out_dir = Path(out_dir)
    return [name for name in owned if (out_dir / name).exists() or (out_dir / name).is_symlink()]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _publish(stage: Path, out_dir: Path, owned: Sequence[str]) -> None:
    """Move every entry of ``stage`` into ``out_dir`` (replacing same-named entries); drop stale ``owned`` ones."""
    out_dir.mkdir(parents=True, exist_ok=True)
    new = {entry.name for entry in stage.iterdir()}
    trash = stage / ".replaced"
    for name in sorted(new):
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():  # os.replace cannot put a folder onto a full one
            trash.mkdir(exist_ok=True)
            os.replace(target, trash / name)
        os.replace(stage / name, target)
    for name in owned:  # an earlier run's result that this run does not write (e.g. a probabilities.tif)
        if name not in new:
            _remove(out_dir / name)
    shutil.rmtree(stage, ignore_errors=True)


@contextmanager
def staged_output(out_dir: Path, overwrite: bool = False, owned: Sequence[str] = (),
                  reuse: Path | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success its entries replace geocamat's results in ``out_dir``.

    Args:
        out_dir: the output folder (created if needed; anything in it that is not a result stays).
        overwrite: replace results of an earlier run.
        owned: the names of the results this command writes. With ``owned`` given, ``out_dir`` may hold
            other files (they are kept) and only these names need ``overwrite``; without it, any non-empty
            ``out_dir`` needs ``overwrite``. Either way only the stage's entries and ``owned`` names are ever
            replaced or removed.
        reuse: a killed run's stage (one of :func:`stale_stages`) to continue in, e.g. for a resumed training:
            it becomes this run's stage, where it is, with its contents, instead of being removed (and it is
            kept if this run fails too).

    Raises:
        OutputExistsError: ``out_dir`` holds results (or, without ``owned``, anything) and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir} is a file, not a folder: choose another --out")
    if not overwrite:
        existing = results_in(out_dir, owned) if owned else (
            [p.name for p in out_dir.iterdir()] if out_dir.is_dir() else [])
        if existing:
            shown = ", ".join(sorted(existing)[:3]) + (", ..." if len(existing) > 3 else "")
            raise OutputExistsError(f"{out_dir} already holds results ({shown}): choose another --out or pass "
                                    "--overwrite (it replaces geocamat's result files only)")
    from geocamat.preflight import check_writable

    check_writable(out_dir)  # read-only or forbidden: one line now, not a traceback after the work
    if reuse is not None:  # continued where it is: every rank of a distributed run finds it at the same path
        stage = Path(reuse)
    else:
        stage = stage_path(out_dir)
        shutil.rmtree(stage, ignore_errors=True)
    for leftover in stale_stages(out_dir):
        if leftover != stage:
            shutil.rmtree(leftover, ignore_errors=True)
    stage.mkdir(parents=True, exist_ok=True)
    try:
        yield stage
    except BaseException as exc:
        # a resumed run that fails again keeps its checkpoint, to be resumed once more; so does a run stopped with
        # Ctrl-C after its first checkpoint (`train --resume` continues it)
        resumable = isinstance(exc, KeyboardInterrupt) and (stage / "checkpoints" / "last.ckpt").is_file()
        if reuse is None and not resumable:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    _publish(stage, out_dir, owned)
