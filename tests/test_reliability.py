"""Reliability: --overwrite never removes a user's file, the error funnel, preflight, honest records."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import cli
from geocamat.errors import (
    ConfigError,
    CorruptInputError,
    GeocamatWarning,
    InputNotFoundError,
    OutputExistsError,
    OutputLocationError,
    ResourceError,
)
from geocamat.outputs.staging import TRAIN_RESULTS, stage_path, staged_output
from tests.conftest import write_raster


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _user_tree(root: Path, rng: np.random.Generator) -> dict[str, bytes]:
    """A user's files in ``root``, some named like nothing geocamat writes, some in subfolders."""
    files = {"notes.txt": b"my notes", "sub/data.csv": b"a,b\n1,2\n", "model.geocamat.bak": b"old model",
             ".hidden": b"x", "deep/er/map.tif": rng.bytes(64)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


# -- --overwrite and leftovers ---------------------------------------------------------------------------------


def test_overwrite_replaces_only_geocamats_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    user = _user_tree(out, np.random.default_rng(0))
    for name in ("model.geocamat", "training.png"):  # an earlier run's results
        (out / name).write_text("old")
    with staged_output(out, overwrite=True, owned=TRAIN_RESULTS) as stage:
        (stage / "model.geocamat").write_text("new")
        (stage / "metrics.json").write_text("{}")
    assert (out / "model.geocamat").read_text() == "new" and (out / "metrics.json").exists()
    assert not (out / "training.png").exists()  # a result of the earlier run that this one did not write
    for rel, data in user.items():
        assert (out / rel).read_bytes() == data, rel
    assert not stage_path(out).exists()


def test_no_file_geocamat_did_not_write_is_ever_removed(tmp_path):
    """Random user trees x random result sets x success/failure/refusal: every user file survives, unchanged."""
    rng = np.random.default_rng(1)
    for trial in range(20):
        out = tmp_path / f"t{trial}"
        out.mkdir()
        user = _user_tree(out, rng)
        for k in range(int(rng.integers(0, 4))):
            (out / f"user_{k}.tif").write_bytes(rng.bytes(16))
            user[f"user_{k}.tif"] = (out / f"user_{k}.tif").read_bytes()
        written = [n for n in TRAIN_RESULTS if rng.random() < 0.5]
        fail, overwrite = rng.random() < 0.3, rng.random() < 0.7
        if rng.random() < 0.5:
            (out / TRAIN_RESULTS[0]).write_text("old")
        try:
            with staged_output(out, overwrite=overwrite, owned=TRAIN_RESULTS) as stage:
                for name in written:
                    (stage / name).write_text("new")
                if fail:
                    raise RuntimeError("killed")
        except (RuntimeError, OutputExistsError):
            pass
        for rel, data in user.items():
            assert (out / rel).read_bytes() == data, (trial, rel)
        assert not any(p.name.startswith(f".{out.name}.partial-") for p in tmp_path.iterdir())


def test_refusal_and_failure_leave_the_folder_as_it_was(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.geocamat").write_text("old")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with staged_output(out, owned=TRAIN_RESULTS):
            pass
    with pytest.raises(ValueError):
        with staged_output(out, overwrite=True, owned=TRAIN_RESULTS) as stage:
            (stage / "model.geocamat").write_text("half")
            raise ValueError("boom")
    assert (out / "model.geocamat").read_text() == "old" and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_folder_with_only_user_files_needs_no_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with staged_output(out, owned=TRAIN_RESULTS) as stage:
        (stage / "model.geocamat").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["model.geocamat", "notes.txt"]


def test_killed_runs_leftovers_are_cleaned_live_ones_kept(tmp_path):
    out = tmp_path / "run"
    dead = stage_path(out, _dead_pid())
    live = stage_path(out, os.getppid())  # a running process: maybe a run in progress
    for stage in (dead, live):
        (stage / "checkpoints").mkdir(parents=True)
    with staged_output(out, owned=TRAIN_RESULTS) as stage:
        (stage / "model.geocamat").write_text("new")
    assert not dead.exists() and live.exists()


def test_a_killed_runs_stage_can_be_reused(tmp_path):
    from geocamat.outputs.staging import stale_stages

    out = tmp_path / "run"
    old = stage_path(out, _dead_pid())
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "last.ckpt").write_text("epoch 1")
    other = stage_path(out, _dead_pid())
    other.mkdir()
    assert stale_stages(out) == sorted([old, other])
    with staged_output(out, owned=TRAIN_RESULTS, reuse=old) as stage:
        assert (stage / "checkpoints" / "last.ckpt").read_text() == "epoch 1"
        (stage / "model.geocamat").write_text("new")
    assert not old.exists() and not other.exists() and (out / "model.geocamat").exists()


def test_train_overwrite_keeps_users_notes(tmp_path, synthetic_scene):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "data.csv").write_text("1,2")
    (out / "model.geocamat").write_text("an earlier model")
    args = ["train", "--images", str(synthetic_scene["image"]), "--labels", str(synthetic_scene["labels"]),
            "--tile-size", "16", "--blocks", "2", "--epochs", "1", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    result = CliRunner().invoke(cli, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "data.csv").read_text() == "1,2"
    assert (out / "model.geocamat").stat().st_size > 1000 and (out / "metrics.json").exists()


# -- the error funnel ------------------------------------------------------------------------------------------


def test_funnel_turns_machine_failures_into_user_errors():
    from geocamat.failures import user_error

    full = user_error(OSError(errno.ENOSPC, "No space left on device", "/data/out/landuse.tif"), "predict")
    assert isinstance(full, OutputLocationError) and "/data/out/landuse.tif" in str(full)
    assert "read-only" in str(user_error(OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x")))
    assert "permission denied" in str(user_error(PermissionError(errno.EACCES, "Permission denied", "/root/x")))
    assert isinstance(user_error(FileNotFoundError(errno.ENOENT, "No such file", "a.tif")), InputNotFoundError)
    oom = user_error(MemoryError("Unable to allocate 40.0 GiB for an array"), "predict")
    assert isinstance(oom, ResourceError) and "--batch-size" in str(oom) and "40.0 GiB" in str(oom)
    assert "--tile-size" in str(user_error(MemoryError(), "train"))
    err = ConfigError("bad")
    assert user_error(err) is err
    wrapped = RuntimeError("while mapping")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device", "/x/cam.tif")
    assert isinstance(user_error(wrapped), OutputLocationError)
    assert user_error(TypeError("a bug")) is None
    try:  # a bug raised while handling a user's error is still a bug
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise AttributeError("typo in an except clause") from None
    except AttributeError as exc:
        assert user_error(exc) is None


def test_funnel_names_the_file_of_a_gdal_read_error(tmp_path):
    import rasterio

    from geocamat.failures import user_error
    from tests.bad_inputs_data import make_inputs

    files = make_inputs(tmp_path)
    with pytest.raises(rasterio.errors.RasterioIOError) as info, rasterio.open(files["trunc"]) as src:
        src.read()
    error = user_error(info.value, "predict")
    assert isinstance(error, CorruptInputError) and "truncated.tif" in str(error) and "\n" not in str(error)


def test_debug_shows_the_traceback_and_bugs_exit_1(tmp_path, monkeypatch):
    result = CliRunner().invoke(cli, ["--debug", "info", str(tmp_path / "none.tif")])
    assert isinstance(result.exception, InputNotFoundError)  # raised through, for the traceback
    monkeypatch.setattr("geocamat.describe.describe", lambda path: {}["no such key"])
    result = CliRunner().invoke(cli, ["info", str(tmp_path)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "internal error (KeyError" in lines[0]
    assert "--debug" in lines[0] and "Traceback" not in result.output


# -- preflight ---------------------------------------------------------------------------------------------------


def test_resolution_far_from_the_models_is_refused_across_units(tmp_path):
    from rasterio.crs import CRS

    from geocamat.preflight import check_resolution

    degrees = SimpleNamespace(resolution=(0.0003, 0.0003), crs=CRS.from_epsg(4326).to_wkt())  # about 33 m
    half_metre = write_raster(tmp_path / "half.tif", np.zeros((8, 8), "uint8"), res=0.5)
    with pytest.raises(ConfigError, match="finer"):
        check_resolution(degrees, half_metre)
    thirty = write_raster(tmp_path / "thirty.tif", np.zeros((8, 8), "uint8"), res=30.0)
    assert 0.5 < check_resolution(degrees, thirty) < 2
    with pytest.warns(GeocamatWarning, match="finer"):
        check_resolution(degrees, half_metre, force=True)


def test_force_maps_a_far_resolution_with_one_warning_line(tmp_path, table_env):
    files, model, _, _ = table_env
    args = ["predict", "--model", str(model), "--force", "--no-vector", str(files["coarse"])]
    result = CliRunner().invoke(cli, [*args, "-q", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "coarser" in lines[0]
    assert result.stdout == ""
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "m2")])  # not quiet: one short line, no JSON
    assert result.exit_code == 0 and result.stdout.count("\n") == 1 and result.stdout.startswith("wrote ")
    assert len(result.stdout) < 150 and "{" not in result.stdout


def test_quiet_predict_prints_nothing(tmp_path, table_env):
    files, model, _, _ = table_env
    result = CliRunner().invoke(cli, ["predict", "--model", str(model), "--out", str(tmp_path / "m"), "-q",
                                      "--no-vector", str(files["scene"])])
    assert result.exit_code == 0 and result.stdout == "", result.output


def test_checks_pass_on_good_files(tmp_path, table_env):
    from geocamat.preflight import check_blocks, check_writable

    files, model, _, _ = table_env
    check_blocks(files["scene"])
    check_writable(tmp_path / "new" / "folder", need_bytes=1000)
    result = CliRunner().invoke(cli, ["info", "--check", str(model), str(files["scene"]), "--labels",
                                      str(files["bowtie"]), "--label-field", "code"])
    assert result.exit_code == 0, result.output
    levels = [line.split(":")[0] for line in result.stdout.splitlines()]
    assert set(levels) <= {"ok", "warning"} and "warning" in levels  # the self-intersecting polygon


def test_checkpoint_probe_leaves_nothing(tmp_path):
    import torch

    from geocamat.preflight import check_checkpoint

    check_checkpoint(tmp_path / "ckpt", torch.nn.Linear(4, 2))
    assert list((tmp_path / "ckpt").iterdir()) == []


# -- meaningless inputs --------------------------------------------------------------------------------------------


def test_invalid_label_polygons_are_repaired_and_counted(tmp_path, table_env):
    from rasterio.transform import from_origin

    from geocamat.data.labels import Grid, vector_labels

    files = table_env[0]
    grid = Grid("EPSG:32617", from_origin(500000.0, 4000000.0, 10.0, 10.0), (64, 64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codes, names, _ = vector_labels(files["bowtie"], "cls", grid)
    messages = [str(w.message) for w in caught if issubclass(w.category, GeocamatWarning)]
    assert len(messages) == 1 and messages[0].startswith("1 of 2 geometries") and "bowtie.gpkg" in messages[0]
    assert set(np.unique(codes)) == {-1, 1, 2}  # the repaired bow tie still labels its pixels
    result = CliRunner().invoke(cli, ["info", str(files["bowtie"])])
    assert result.exit_code == 0 and "warning: 1 invalid" in result.stdout


# -- records ---------------------------------------------------------------------------------------------------------


def test_detection_report_records_final_absolute_paths(tmp_path, table_env, monkeypatch):
    files, _, det_model, _ = table_env
    monkeypatch.chdir(tmp_path)
    rel_model = os.path.relpath(det_model, tmp_path)
    result = CliRunner().invoke(cli, ["predict", "--model", rel_model, "--out", "det", "--score-threshold", "0.99",
                                      str(files["scene"])])
    assert result.exit_code == 0, result.output
    out = (tmp_path / "det").resolve()
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["path"] == str(Path(det_model).resolve())
    for key in ("gpkg", "qml"):
        path = Path(report["outputs"][key])
        assert path.is_absolute() and path.parent == out and path.exists(), path
    assert ".partial-" not in json.dumps(report)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("wrote ") and "objects" in last and len(last) < 150


def test_an_empty_detection_layer_has_the_full_layout(tmp_path):
    import geopandas as gpd
    import pyogrio
    from shapely.geometry import box

    from geocamat.data.classes import build_classes
    from geocamat.outputs.detections import write_detections

    classes = build_classes([0], {0: "tree"})
    row = dict(image=["a.tif"], class_id=[0], class_name=["tree"], score=[0.5], area=[1.0], cam_evidence=[0.1],
               xmin=[0.0], ymin=[0.0], xmax=[1.0], ymax=[1.0])
    full = gpd.GeoDataFrame(row, geometry=[box(0, 0, 1, 1)], crs="EPSG:32617")
    empty = gpd.GeoDataFrame({k: [] for k in row}, geometry=[], crs="EPSG:32617")
    layouts = []
    for name, frame in (("full", full), ("empty", empty)):
        write_detections(tmp_path / f"{name}.gpkg", frame, classes, "EPSG:32617")
        meta = pyogrio.read_info(tmp_path / f"{name}.gpkg", layer="detections")
        layouts.append((meta["geometry_type"], list(meta["fields"]), list(meta["dtypes"])))
    assert layouts[0] == layouts[1] and layouts[0][0] == "Polygon"


def test_killed_runs_temporary_folders_are_removed(tmp_path):
    from geocamat.leftovers import run_tempdir

    dead = tmp_path / f"geocamat-stack-{_dead_pid()}-abc"
    live = tmp_path / f"geocamat-stack-{os.getppid()}-abc"
    other = tmp_path / "geocamat-stack-notapid"
    for d in (dead, live, other):
        d.mkdir()
    mine = run_tempdir("geocamat-stack-", tmp_path)
    assert mine.is_dir() and mine.name.startswith(f"geocamat-stack-{os.getpid()}-")
    assert not dead.exists() and live.exists() and other.exists()


def test_a_library_failure_on_a_full_disk_is_a_full_disk(monkeypatch):
    """pyogrio/GDAL rarely say "no space": a failed write while --out's disk is full reads as a full disk."""
    from geocamat import failures

    class DataSourceError(RuntimeError):
        pass

    DataSourceError.__module__ = "pyogrio.errors"
    exc = DataSourceError("Could not add feature to layer at index 0: sqlite3_exec(INSERT ...) failed")
    monkeypatch.setattr(failures, "free_bytes", lambda path: 16_000)
    full = failures.user_error(exc, "predict", "/data/map")
    assert isinstance(full, OutputLocationError) and "no space left on the disk holding /data/map" in str(full)
    monkeypatch.setattr(failures, "free_bytes", lambda path: 10**12)
    write = failures.user_error(exc, "predict", "/data/map")
    assert isinstance(write, OutputLocationError) and "cannot write the results" in str(write)


def test_a_rasterio_argument_error_is_a_bug_not_a_corrupt_file():
    from rasterio.errors import CRSError

    from geocamat.failures import user_error

    assert user_error(CRSError("The PROJ4 dict could not be understood")) is None


def test_res_is_read_in_the_output_crs_units(tmp_path):
    """--res with --crs EPSG:4326 is degrees: 0.0003 deg (~27 m at 35 N) is the model's 28.5 m, 30 deg is far."""
    from geocamat.errors import ConfigError
    from geocamat.preflight import check_resolution
    from tests.conftest import write_raster

    path = write_raster(tmp_path / "scene.tif", np.ones((1, 40, 40), np.float32), crs="EPSG:32617",
                        origin=(500_000, 3_900_000), res=28.5)
    bundle = SimpleNamespace(resolution=[28.5, 28.5], crs="EPSG:32617")
    assert check_resolution(bundle, path, res=0.0003, res_crs="EPSG:4326") == pytest.approx(1.0, abs=0.2)
    assert check_resolution(bundle, path, res=30, res_crs="EPSG:32617") == pytest.approx(30 / 28.5)
    with pytest.raises(ConfigError, match="--res 30 gives 3.0.e\\+06 m pixels"):
        check_resolution(bundle, path, res=30, res_crs="EPSG:4326")
    with pytest.raises(ConfigError, match="unknown CRS"):
        check_resolution(bundle, path, res=30, res_crs="EPSG:999999")
