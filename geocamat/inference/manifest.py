"""Resume bookkeeping: the run's fingerprint and the manifest of finished units in the partial folder.

A unit is recorded as soon as its results (pieces, polygons, class counts, the carry the next band needs)
are on disk, from the writer thread that wrote them; the manifest is rewritten atomically each time. A
rerun with ``resume`` continues after the recorded units when the fingerprint (inputs, weights, grid,
settings, unit sizes) is the same.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

from geocamat.errors import ConfigError, OutputExistsError
from geocamat.outputs.jsonfile import json_default, write_json

#: Hidden folder of a run in progress inside the output folder.
PARTIAL = ".geocamat-partial"


def interrupted_run(out_dir: Path) -> dict | None:
    """The manifest of an interrupted run in ``out_dir`` (None when there is none)."""
    path = Path(out_dir) / PARTIAL / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def refuse_interrupted(out_dir: Path) -> None:
    """Raise :class:`OutputExistsError` when ``out_dir`` holds an interrupted run (rerun without --resume)."""
    manifest = interrupted_run(out_dir)
    if manifest is None:
        return
    done, total = len(manifest.get("done", {})), manifest.get("units")
    of = f" ({done} of {total} units done)" if total else f" ({done} units done)"
    raise OutputExistsError(f"{out_dir} holds an interrupted run{of}: use --resume to continue it, or "
                            "--overwrite to start again")


class Manifest:
    """The finished units of one run, kept in ``work/manifest.json`` (thread-safe).

    Args:
        work: the run's partial folder.
        fingerprint: what must not change for a resume (JSON-able).
        units: units of the plan.
    """

    def __init__(self, work: Path, fingerprint: dict, units: int) -> None:
        self.work = Path(work)
        self.path = self.work / "manifest.json"
        self.fingerprint = json.loads(json.dumps(fingerprint, default=json_default))
        self.data = {"fingerprint": self.fingerprint, "units": units, "done": {}, "runs": 0}
        self._lock = threading.Lock()

    @property
    def done(self) -> dict:
        return self.data["done"]

    @property
    def runs(self) -> int:
        return self.data["runs"]

    def open(self, resume: bool, out_dir: Path) -> bool:
        """Load the manifest to resume, or start a new one (removing an old partial folder).

        Returns:
            whether units of an earlier run are reused.

        Raises:
            ConfigError: resuming a run whose fingerprint differs.
        """
        if self.path.exists() and resume:
            data = json.loads(self.path.read_text())
            if data.get("fingerprint") != self.fingerprint:
                raise ConfigError(f"cannot resume in {out_dir}: the inputs or settings differ from the "
                                  "interrupted run; rerun with the same ones, or use --overwrite to start again")
            data.setdefault("units", self.data["units"])
            self.data = data
        else:
            if self.work.exists():
                shutil.rmtree(self.work)
            (self.work / "units").mkdir(parents=True)
        self.data["runs"] += 1
        write_json(self.path, self.data)
        return bool(self.done)

    def record(self, name: str, stats: dict) -> None:
        """Mark unit ``name`` finished (its files are on disk) and save the manifest."""
        with self._lock:
            self.done[name] = stats
            write_json(self.path, self.data)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self.done
