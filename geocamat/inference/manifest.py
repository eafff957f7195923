"""Resume bookkeeping: the run's fingerprint and the manifest of finished units in the partial folder.

A unit is recorded as soon as its results (pieces, polygons, class counts, the carry the next band needs)
are on disk, from the writer thread that wrote them; the manifest is rewritten atomically each time. A
rerun with ``resume`` continues after the recorded units when the fingerprint (inputs, weights, grid,
settings, unit sizes) is the same. A run over several ranks keeps one manifest per rank in the shared
partial folder (``manifest.json`` for rank 0, ``manifest-rank{r}.json`` for the others); the finished units
of a run are those of every manifest there (:func:`done_units`), whatever the number of ranks that wrote them.
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


def manifest_name(rank: int = 0) -> str:
    """File name of rank ``rank``'s manifest in the partial folder."""
    return "manifest.json" if rank == 0 else f"manifest-rank{rank}.json"


def manifest_paths(work: Path) -> list[Path]:
    """Every rank's manifest in the partial folder ``work`` (rank 0 first)."""
    work = Path(work)
    others = sorted(work.glob("manifest-rank*.json"), key=lambda p: int(p.stem.rsplit("rank", 1)[1] or 0))
    return [p for p in [work / manifest_name(0), *others] if p.exists()]


def done_units(work: Path, fingerprint: dict | None = None) -> dict:
    """The finished units recorded by every rank's manifest in ``work`` (name -> stats); with ``fingerprint``,
    only manifests of that run count."""
    done: dict = {}
    for path in manifest_paths(work):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if fingerprint is None or data.get("fingerprint") == fingerprint:
            done.update(data.get("done", {}))
    return done


def interrupted_run(out_dir: Path) -> dict | None:
    """The manifest of an interrupted run in ``out_dir`` (None when there is none); ``done`` holds the
    units of every rank."""
    work = Path(out_dir) / PARTIAL
    try:
        data = json.loads((work / manifest_name(0)).read_text())
    except (OSError, ValueError):
        return None
    data["done"] = done_units(work, data.get("fingerprint"))
    return data


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
        rank: the rank that writes it (one manifest per rank).
    """

    def __init__(self, work: Path, fingerprint: dict, units: int, rank: int = 0) -> None:
        self.work = Path(work)
        self.path = self.work / manifest_name(rank)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=json_default))
        self.data = {"fingerprint": self.fingerprint, "units": units, "done": {}, "runs": 0}
        self._lock = threading.Lock()

    @property
    def done(self) -> dict:
        return self.data["done"]

    @property
    def runs(self) -> int:
        return self.data["runs"]

    def open(self, resume: bool, out_dir: Path, clean: bool = True) -> bool:
        """Load the manifest to resume, or start a new one (removing an old partial folder when ``clean``:
        rank 0 does, before the other ranks open theirs).

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
            data.pop("finished", None)
            data.pop("failed", None)
            self.data = data
        elif clean:
            if self.work.exists():
                shutil.rmtree(self.work)
            (self.work / "units").mkdir(parents=True)
        if resume:
            self._check_others(out_dir)
        self.data["runs"] += 1
        write_json(self.path, self.data)
        return bool(self.done)

    def _check_others(self, out_dir: Path) -> None:
        for path in manifest_paths(self.work):
            try:
                other = json.loads(path.read_text()).get("fingerprint")
            except (OSError, ValueError):
                continue
            if other != self.fingerprint:
                raise ConfigError(f"cannot resume in {out_dir}: the inputs or settings differ from the "
                                  "interrupted run; rerun with the same ones, or use --overwrite to start again")

    def close(self, **fields) -> None:
        """Save ``fields`` (``finished=True`` with this rank's timings, or ``failed=message``)."""
        with self._lock:
            self.data.update(fields)
            write_json(self.path, self.data)

    def record(self, name: str, stats: dict) -> None:
        """Mark unit ``name`` finished (its files are on disk) and save the manifest."""
        with self._lock:
            self.done[name] = stats
            write_json(self.path, self.data)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self.done
