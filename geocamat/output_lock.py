"""One run at a time per output folder: a lock file naming the run that writes it.

Two runs into one ``--out`` (a script started twice, two terminals) would otherwise mix their files, or the second
would take the first's work in progress for an interrupted run. The lock (``OUT/.geocamat-lock`` for predict, a
hidden sibling of the run folder for train) holds the process id, host and start time of its run; a run finding
the lock of a live process of this machine refuses in one line; a lock whose process is gone (a killed run) is
taken over. Only the first process of a run across processes takes it (its other ranks write under it).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geocamat.errors import OutputExistsError
from geocamat.leftovers import pid_alive

LOCK_NAME = ".geocamat-lock"
#: the launchers' rank variables: a process with one of them non-zero is not a run's first process
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID")


def lock_path(out: Path, inside: bool) -> Path:
    """The lock of output folder ``out``: inside it (predict), or beside it (train: the folder appears at the end)."""
    out = Path(out)
    return out / LOCK_NAME if inside else out.parent / f".{out.name}{LOCK_NAME}"


def first_process() -> bool:
    """Whether this process is a run's first (no launcher rank, or rank 0)."""
    return all(os.environ.get(name, "0") in ("", "0") for name in RANK_VARIABLES)


@contextmanager
def output_lock(out: Path, *, inside: bool = True) -> Iterator[None]:
    """Hold the lock of ``out`` while the body runs; refuse when a live run holds it.

    Raises:
        OutputExistsError: another run (a live process) writes ``out``.
    """
    if not first_process():
        yield
        return
    out = Path(out)
    path = lock_path(out, inside)
    made = inside and not out.exists()  # a folder made only for the lock goes again if the run writes nothing
    path.parent.mkdir(parents=True, exist_ok=True)
    _take(path, out)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def _take(path: Path, out: Path) -> None:
    """Create the lock file atomically, taking over one whose process is gone."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None and _live(holder):
                raise OutputExistsError(
                    f"{out} is being written by another geocamat run (process {holder['pid']} on {holder['host']}, "
                    f"started {holder.get('started', '?')}): wait for it to finish, or choose another --out (if no "
                    f"run writes it, delete {path})") from None
            path.unlink(missing_ok=True)  # a killed run's lock
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        return


def _holder(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _live(holder: dict) -> bool:
    """Whether the lock's process runs: on this machine, by its process id; on another (a shared disk), assumed."""
    if holder.get("host") != socket.gethostname():
        return True
    return holder["pid"] != os.getpid() and pid_alive(holder["pid"])
