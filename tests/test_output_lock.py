"""One run at a time per output folder: a second run into a live run's --out is refused in one line."""

from __future__ import annotations

import json
import os
import socket

import pytest

from geocamat.errors import OutputExistsError
from geocamat.output_lock import LOCK_NAME, lock_path, output_lock


def _held_by(path, pid: int, host: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2026-11-29 17:00:00"}))


def test_a_live_runs_lock_refuses_a_second_run_and_a_dead_ones_is_taken_over(tmp_path):
    out = tmp_path / "map"
    with output_lock(out):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not out.exists()  # made only for the lock: gone with it, nothing written
    _held_by(out / LOCK_NAME, os.getppid())  # a live process of this machine
    with pytest.raises(OutputExistsError, match=r"is being written by another geocamat run \(process \d+ on "):
        with output_lock(out):
            pass
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getppid()  # not taken
    _held_by(out / LOCK_NAME, 2**22 + 12345)  # a killed run's: no such process
    with output_lock(out):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    _held_by(out / LOCK_NAME, 1, host="another-node")  # a shared disk: another machine's run is taken as alive
    with pytest.raises(OutputExistsError, match="delete"):
        with output_lock(out):
            pass


def test_train_locks_beside_its_run_folder_and_other_ranks_take_no_lock(tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert lock_path(run, inside=False) == tmp_path / f".run{LOCK_NAME}"
    with output_lock(run, inside=False):
        assert (tmp_path / f".run{LOCK_NAME}").is_file() and not run.exists()
    monkeypatch.setenv("LOCAL_RANK", "1")  # a second process of a run across processes: writes under rank 0's
    _held_by(lock_path(run, inside=False), os.getppid())
    with output_lock(run, inside=False):
        pass


def test_predict_into_a_folder_another_run_writes_is_one_line(tmp_path):
    from click.testing import CliRunner

    from cli.main import cli
    from tests.inference_helpers import make_bundle, make_raster

    make_bundle(tile=16).save(tmp_path / "m.geocamat")
    img = make_raster(tmp_path / "img.tif", 40, 40)
    _held_by(tmp_path / "out" / LOCK_NAME, os.getppid())
    result = CliRunner().invoke(cli, ["predict", "--model", str(tmp_path / "m.geocamat"), "--out",
                                      str(tmp_path / "out"), "--quiet", str(img)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "is being written by another geocamat run" in result.output  # was "holds an interrupted run: --resume"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LOCK_NAME]
