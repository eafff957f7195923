"""The detections of finished windows of a detection run, kept on disk until its outputs are written.

Detection runs its windows in chunks (a few dozen batches); each finished chunk's detections, before the
cross-window merge, go to a file of the folder ``.OUT.detect-work`` beside the output folder. The ranks of a run
over several processes hand their windows to rank 0 through it, and ``--resume`` continues a killed run from it:
the windows already in the folder are not run again, and the objects are those of an uninterrupted run (chunks
hold whole batches of the one-process plan). ``run.json`` records what the windows were run with; a resume with
other inputs or settings is refused. The folder is removed when the outputs are written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from geocamat.errors import ConfigError, OutputExistsError
from geocamat.inference.detect import RawDetections

#: batches of windows in a chunk file (what a killed run loses at most, per rank)
CHUNK_BATCHES = 16


def store_folder(out_dir: str | os.PathLike) -> Path:
    """The folder of a detection run into ``out_dir`` (beside it, on the disk every rank sees)."""
    out_dir = Path(out_dir).resolve()
    return out_dir.with_name(f".{out_dir.name}.detect-work")


class WindowStore:
    """Finished windows of each unit (image or mosaic) of a detection run into ``out_dir``, one file per chunk."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)
        self.folder = store_folder(out_dir)

    def prepare(self, identity: dict, *, resume: bool, fresh: bool) -> int:
        """Make the folder ready (rank 0, before the others start); returns the chunks kept from a killed run.

        Args:
            identity: what the windows are run with (inputs, model, settings); a resumed run must match it.
            resume: continue a killed run's windows.
            fresh: remove a killed run's windows (``--overwrite``).

        Raises:
            OutputExistsError: a killed run's windows are there and neither ``resume`` nor ``fresh``.
            ConfigError: ``resume`` of a run made with other inputs or settings.
        """
        saved = self.folder / "run.json"
        chunks_kept = sum(map(len, self._files().values())) if self.folder.exists() else 0
        if self.folder.exists() and fresh and not resume:
            shutil.rmtree(self.folder)
        if self.folder.exists() and saved.is_file():
            if not resume:
                raise OutputExistsError(
                    f"{self.out_dir} has an interrupted detection run "
                    f"({chunks_kept} chunks of windows done): add --resume to continue it, or --overwrite to start "
                    "again")
            before = json.loads(saved.read_text())
            if before != json.loads(json.dumps(identity)):
                changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
                raise ConfigError(f"the interrupted run in {self.folder} was made with other {', '.join(changed)}: "
                                  "run it again without --resume, with --overwrite")
            return chunks_kept
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        part = saved.with_suffix(".part")
        part.write_text(json.dumps(identity, indent=1))
        part.replace(saved)
        return 0

    def _files(self) -> dict[int, list[Path]]:
        """The chunk files of each unit, from one listing of the folder (a run over many images has many)."""
        out: dict[int, list[Path]] = {}
        for f in sorted(self.folder.glob("u*-w*.npz")):
            if f.name.endswith(".part.npz"):  # a chunk a killed run was writing: not done
                continue
            out.setdefault(int(f.name[1:f.name.index("-")]), []).append(f)
        return out

    def done(self) -> dict[int, set[int]]:
        """The window indices of each unit already in the folder."""
        out: dict[int, set[int]] = {}
        for unit, files in self._files().items():
            for f in files:
                with np.load(f) as z:
                    out.setdefault(unit, set()).update(int(i) for i in z["indices"])
        return out

    def save(self, unit: int, indices: list[int], raw: RawDetections) -> None:
        """Keep the detections of the windows ``indices`` of ``unit`` (written whole or not at all)."""
        path = self.folder / f"u{unit}-w{indices[0]:09d}.npz"
        part = path.with_name(path.name + ".part.npz")
        np.savez(part, indices=np.asarray(indices, np.int64), **raw.arrays())
        part.replace(path)

    def load(self, units: int) -> list[RawDetections]:
        """Every kept detection of units ``0 .. units - 1``, each in window order (as one process finds them)."""
        files = self._files()
        out = []
        for unit in range(units):
            parts = []
            for f in files.get(unit, []):
                with np.load(f) as z:
                    parts.append(RawDetections.from_arrays(z))
            out.append(RawDetections.concat(parts))
        return out

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def chunks(indices: list[int], size: int) -> list[list[int]]:
    """``indices`` cut into consecutive pieces of ``size``."""
    return [indices[i:i + size] for i in range(0, len(indices), size)]
