"""The command line: instant help, one-line errors with exit code 2, and a small end-to-end run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from cli.main import cli
from tests.conftest import SAMPLES, write_raster

NC = SAMPLES / "nc_landsat"


def test_help_does_not_import_the_heavy_stack():
    code = "import sys; from cli.main import cli; print('torch' in sys.modules, 'torchgeo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "False False"
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "train" in result.output and "predict" in result.output


def test_an_unknown_crs_is_one_line_without_projs_own_on_stderr():
    code = ("from geocamat.errors import ConfigError\nfrom geocamat.inference.grid import crs_wkt\n"
            "try:\n    crs_wkt('EPSG:999999')\nexcept ConfigError as exc:\n    print(exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.startswith("unknown CRS 'EPSG:999999'") and out.stderr == ""  # GDAL prints from C otherwise


def test_an_interrupted_run_says_how_to_continue_it(tmp_path):
    from cli.main import _interrupted
    from geocamat.outputs.staging import stage_path

    out = tmp_path / "o"
    assert _interrupted(["predict", "--model", "m", "--out", str(out), "x"]) == \
        f"Interrupted before anything was written to {out}."  # (said windows were kept in a folder never made)
    out.mkdir()
    assert "the same command with --resume continues" in _interrupted(["predict", "--model", "m", "--out", str(out),
                                                                        "x"])
    run = tmp_path / "run"
    assert _interrupted(["train", "cfg.yaml", f"--out={run}"]).endswith("first checkpoint: nothing to resume")
    (stage_path(run) / "checkpoints").mkdir(parents=True)
    (stage_path(run) / "checkpoints" / "last.ckpt").write_bytes(b"")
    for argv in (["train", "cfg.yaml", f"--out={run}"], ["train", "--resume", str(run)]):
        assert f"`geocamat train --resume {run}` continues" in _interrupted(argv)
    assert _interrupted(["info", "x.tif"]) == "Interrupted."


def test_ctrl_c_keeps_a_run_with_a_checkpoint_for_resume_and_removes_one_without(tmp_path):
    from geocamat.outputs.staging import staged_output
    from geocamat.tasks.training import fit

    class Trainer:  # as Lightning's: a Ctrl-C ends in SystemExit(1) after its graceful shutdown
        interrupted = False

        def fit(self, *args, **kwargs):
            self.interrupted = True
            raise SystemExit(1)

    for name, checkpoint in (("with", True), ("without", False)):
        with pytest.raises(KeyboardInterrupt), staged_output(tmp_path / name) as stage:
            if checkpoint:
                (stage / "checkpoints").mkdir()
                (stage / "checkpoints" / "last.ckpt").write_bytes(b"")
            fit(Trainer())
        assert stage.is_dir() == checkpoint and not (tmp_path / name).joinpath("model.geocamat").exists()
    with pytest.raises(SystemExit):  # any other exit stays one
        fit(type("Done", (), {"fit": lambda self: (_ for _ in ()).throw(SystemExit(0))})())


def test_info_on_a_folder_a_vrt_missing_its_source_and_a_photo(tmp_path):
    from PIL import Image

    result = CliRunner().invoke(cli, ["info", str(tmp_path)])
    _one_line_error(result, "is a folder: give one file", "geocamat train --scenes")
    source = write_raster(tmp_path / "source.tif", np.ones((1, 8, 8), np.float32))
    (tmp_path / "mosaic.vrt").write_text(
        f'<VRTDataset rasterXSize="8" rasterYSize="8"><VRTRasterBand dataType="Float32" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{source.name}</SourceFilename><SourceBand>1</SourceBand></SimpleSource>'
        f'</VRTRasterBand></VRTDataset>')
    assert CliRunner().invoke(cli, ["info", str(tmp_path / "mosaic.vrt")]).exit_code == 0
    source.unlink()
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "mosaic.vrt")])
    _one_line_error(result, "mosaic.vrt refers to", "source.tif, which does not exist")
    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(tmp_path / "photo.jpg")
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "photo.jpg")])
    assert result.exit_code == 0 and "bounds: [0.0, 0.0, 10.0, 6.0]" in result.output
    assert "fine as a scene image or a photo for detection" in result.output


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error:"), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[-1], lines[-1]


@pytest.mark.parametrize("args, needles", [
    (["--images", "missing/*.tif", "--labels", str(NC / "strata.tif")], ["no raster found"]),
    (["--images", str(NC / "lsat7_2000_10.tif"), "--labels", str(NC / "landsat96_polygons.shp"),
      "--label-field", "klass"], ["klass", "label, id"]),
    (["--images", str(NC / "lsat7_2000_10.tif")], ["no labels"]),
    (["--images", str(NC / "lsat7_2000_10.tif"), "--labels", str(NC / "strata.tif"), "--epochs", "0"], ["epochs"]),
])
def test_train_bad_input_gets_one_line_and_exit_2(tmp_path, args, needles):
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "run"), *args])
    _one_line_error(result, *needles)
    assert not (tmp_path / "run").exists()


def test_labels_not_overlapping_and_image_without_crs(tmp_path, synthetic_scene):
    far = write_raster(tmp_path / "far.tif", np.ones((10, 10), "uint8"), origin=(900000.0, 100000.0), nodata=0)
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "r1"), "--images",
                                      str(synthetic_scene["image"]), "--labels", str(far)])
    _one_line_error(result, "do not overlap")
    one_class = write_raster(tmp_path / "one.tif", np.full((96, 96), 3, "uint8"), nodata=0)
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "r3"), "--images",
                                      str(synthetic_scene["image"]), "--labels", str(one_class)])
    _one_line_error(result, "single class (3)", "--task detection")
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), "uint8"))
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "r2"), "--images", str(nocrs),
                                      "--labels", str(synthetic_scene["labels"])])
    _one_line_error(result, "no CRS")
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))


def test_predict_and_info_bad_input(tmp_path):
    result = CliRunner().invoke(cli, ["predict", "--model", str(tmp_path / "none.geocamat"), "--out",
                                      str(tmp_path / "m"), str(NC / "lsat7_2000_10.tif")])
    _one_line_error(result, "not found")
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "nothing.tif")])
    _one_line_error(result, "no such file")


def test_train_predict_evaluate_info_end_to_end(tmp_path, synthetic_scene):
    run, out = tmp_path / "run", tmp_path / "map"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--images", str(synthetic_scene["image"]), "--labels",
                                 str(synthetic_scene["labels"]), "--tile-size", "16", "--blocks", "2", "--epochs", "3",
                                 "--arch", "camnet-xs", "--set", "camat.warmup=0.0", "--set", "camat.p=1.0",
                                 "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""  # --quiet: a run that went well prints nothing
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["regulariser"]["name"] == "camat"
    for name in ("model.geocamat", "confusion.png", "training.png", "config.yaml"):
        assert (run / name).is_file()
    # the two halves are trivially separable: the validation map must be nearly perfect
    assert metrics["validation_map"]["overall_accuracy"] > 0.9
    result = runner.invoke(cli, ["predict", "--model", str(run / "model.geocamat"), "--out", str(out), "--quiet",
                                 str(synthetic_scene["image"])])
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "landuse.tif") as m, rasterio.open(synthetic_scene["image"]) as src:
        assert m.crs == src.crs and m.transform == src.transform
        data = m.read(1, masked=True)
        assert data.mask[:4].all() and not data.mask[4:].any()  # nodata collar of the input stays nodata
        assert set(np.unique(data.compressed())) <= {1, 2}  # label codes, not class indices
    result = runner.invoke(cli, ["evaluate", "--model", str(run / "model.geocamat"), "--reference",
                                 str(synthetic_scene["labels"]), "--quiet", str(synthetic_scene["image"])])
    assert result.exit_code == 0 and "OA" in result.output, result.output
    scored = tmp_path / "scored"  # mapped aside, moved into --out once scored (an existing folder keeps other files)
    scored.mkdir()
    (scored / "notes.txt").write_text("mine")
    result = runner.invoke(cli, ["evaluate", "--model", str(run / "model.geocamat"), "--reference",
                                 str(synthetic_scene["labels"]), "--quiet", "--out", str(scored),
                                 str(synthetic_scene["image"])])
    assert result.exit_code == 0, result.output
    assert {"landuse.tif", "metrics.json", "report.json", "notes.txt"} <= {p.name for p in scored.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".geocamat-evaluate-")]
    not_a_reference = tmp_path / "reference.dbf"
    not_a_reference.write_bytes(b"not a dataset")
    result = runner.invoke(cli, ["evaluate", "--model", str(run / "model.geocamat"), "--reference",
                                 str(not_a_reference), "--map", str(out / "landuse.tif")])
    _one_line_error(result, "not a raster GDAL can read (vector references: .shp")
    # a model trained on a band selection maps with the same bands, chosen again from the full input
    # (trained with per-pixel supervision and mapped from its dense CAM logits)
    run2 = tmp_path / "run2"
    result = runner.invoke(cli, ["train", "--images", str(synthetic_scene["image"]), "--labels",
                                 str(synthetic_scene["labels"]), "--bands", "3,1", "--tile-size", "16", "--blocks", "2",
                                 "--epochs", "1", "--arch", "camnet-xs", "--pixel-loss", "1", "--output", "dense",
                                 "--out", str(run2), "--quiet"])
    assert result.exit_code == 0, result.output
    saved = (run2 / "config.yaml").read_text()
    assert "pixel_loss: 1.0" in saved and "output: dense" in saved
    result = runner.invoke(cli, ["predict", "--model", str(run2 / "model.geocamat"), "--out", str(tmp_path / "m2"),
                                 "--quiet", "--no-vector", str(synthetic_scene["image"])])
    assert result.exit_code == 0, result.output
    # other imagery holding just the two bands (another scene's stack of them): used in their order, with a warning
    # (was "band 3 does not exist", with no way round it)
    picked = write_raster(tmp_path / "picked.tif", synthetic_scene["array"][[2, 0]], nodata=-9999.0)
    result = runner.invoke(cli, ["predict", "--model", str(run2 / "model.geocamat"), "--out", str(tmp_path / "m3"),
                                 "--quiet", "--no-vector", str(picked)])
    assert result.exit_code == 0 and "warning: band names differ" in result.output, result.output
    result = runner.invoke(cli, ["info", str(run2 / "model.geocamat")])
    assert "band3" in result.output and "band1" in result.output
    assert "'overlap': 0.75" in result.output  # what predict maps a dense model at (the bundle stores 0.5)
    result = runner.invoke(cli, ["info", str(run / "model.geocamat")])
    assert result.exit_code == 0 and "classes" in result.output
    # refuses to overwrite without --overwrite
    result = runner.invoke(cli, ["predict", "--model", str(run / "model.geocamat"), "--out", str(out), "--quiet",
                                 str(synthetic_scene["image"])])
    _one_line_error(result, "--overwrite")


def test_images_after_the_options_are_trained_on_as_an_expanded_glob_gives_them(tmp_path, synthetic_scene):
    import yaml

    from cli.train import split_inputs

    assert split_inputs(("run.yaml", "a.tif", "b.JPG", str(tmp_path), "S2/*.tif")) == (
        "run.yaml", ["a.tif", "b.JPG", str(tmp_path), "S2/*.tif"])
    assert split_inputs(("settings.txt",)) == ("settings.txt", [])
    # `--images scene/*.tif` unquoted: the shell gives the first file to --images and the rest as arguments
    image = synthetic_scene["array"]
    halves = [write_raster(tmp_path / f"half_{i}.tif", part, nodata=-9999.0, origin=(500000.0 + 480 * i, 4000000.0))
              for i, part in enumerate((image[:, :, :48], image[:, :, 48:]))]
    result = CliRunner().invoke(cli, ["train", "--images", str(halves[0]), str(halves[1]), "--labels",
                                      str(synthetic_scene["labels"]), "--tile-size", "16", "--blocks", "2",
                                      "--epochs", "1", "--arch", "camnet-xs", "--out", str(tmp_path / "run"),
                                      "--quiet"])
    assert result.exit_code == 0, result.output  # was: the second image read as a YAML file, an internal error
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert [Path(p).name for p in saved["images"]] == ["half_0.tif", "half_1.tif"]
    (tmp_path / "notes.bin").write_bytes(b"\x00\xfe\xff binary")
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "notes.bin"), "--out", str(tmp_path / "r2")])
    _one_line_error(result, "is not a YAML settings file (it is binary)")


def test_a_runs_saved_config_trains_again_from_anywhere(tmp_path, synthetic_scene, monkeypatch):
    """config.yaml holds absolute paths: trained with paths relative to the working folder, `geocamat train
    RUN/config.yaml` from another folder finds the same images (they were saved relative and read beside the file:
    "no raster found at RUN/data/scene.tif")."""
    import shutil

    import yaml

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(synthetic_scene["image"], data / "scene.tif")
    shutil.copy(synthetic_scene["labels"], data / "labels.tif")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--images", "data/scene.tif", "--labels", "data/labels.tif",
                                      "--tile-size", "16", "--blocks", "2", "--epochs", "1", "--arch", "camnet-xs",
                                      "--out", "run", "--quiet"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["images"] == [str(data / "scene.tif")] and saved["labels"] in (str(data / "labels.tif"),
                                                                          [str(data / "labels.tif")])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "run" / "config.yaml"), "--out", "again", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (elsewhere / "again" / "model.geocamat").is_file()


def test_labels_repeated_train_on_a_file_per_class(tmp_path, synthetic_scene):
    import geopandas as gpd
    import yaml
    from shapely.geometry import box

    for name, x0 in (("dark", 500020.0), ("bright", 500500.0)):  # the scene's two halves, 10 m pixels
        gpd.GeoDataFrame({"id": [1]}, geometry=[box(x0, 3999100.0, x0 + 400, 3999950.0)],
                         crs="EPSG:32617").to_file(tmp_path / f"{name}.gpkg")
    result = CliRunner().invoke(cli, ["train", "--images", str(synthetic_scene["image"]), "--labels",
                                      str(tmp_path / "dark.gpkg"), "--labels", str(tmp_path / "bright.gpkg"),
                                      "--label-field", "layer", "--tile-size", "16", "--blocks", "2", "--epochs", "1",
                                      "--arch", "camnet-xs", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert [Path(p).name for p in saved["labels"]] == ["dark.gpkg", "bright.gpkg"]
    from geocamat.bundle import Bundle

    assert sorted(c.name for c in Bundle.load(tmp_path / "run" / "model.geocamat").classes) == ["bright", "dark"]
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["validation_map"].get("notes", [])
    assert not any("names no classes" in n for n in notes), notes  # its own burned labels: coded as the model


def test_sigterm_stops_a_run_as_ctrl_c_does():
    """SIGTERM (SLURM, Kubernetes, `kill`) raises KeyboardInterrupt in the run: the finished work is kept and the
    line says how to continue, exit 143 (predict ended with no word, exit 143; checked by hand on a 1772 x 1956 px
    predict and a 30-epoch train: the line, then --resume)."""
    import os
    import signal
    import time

    from cli.main import _on_sigterm

    stopped: list = []
    previous = _on_sigterm(stopped)
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped == [signal.SIGTERM]


def test_a_bundle_with_fields_of_another_version_loads_with_a_warning(tmp_path):
    """A field this geocamat does not know (a newer one added it without a version bump): ignored with a warning (was
    an internal error: Bundle.__init__() got an unexpected keyword argument); a bundle missing a field is refused."""
    import torch

    from geocamat.bundle import Bundle
    from geocamat.errors import BundleError, GeocamatWarning
    from tests.inference_helpers import make_bundle

    make_bundle(tile=16).save(tmp_path / "m.geocamat")
    payload = torch.load(tmp_path / "m.geocamat", weights_only=True)
    torch.save({**payload, "new_field": 1}, tmp_path / "newer.geocamat")
    with pytest.warns(GeocamatWarning, match="fields this geocamat does not know \\(new_field\\)"):
        assert Bundle.load(tmp_path / "newer.geocamat").tile_size == 16
    torch.save({k: v for k, v in payload.items() if k != "classes"}, tmp_path / "lacking.geocamat")
    with pytest.raises(BundleError, match="lacks classes"):
        Bundle.load(tmp_path / "lacking.geocamat")
    torch.save({**payload, "model": {**payload["model"], "arch": "camnet-xxl"}}, tmp_path / "arch.geocamat")
    with pytest.raises(BundleError, match=r"architecture \(camnet-xxl\) is unknown to this geocamat"):
        Bundle.load(tmp_path / "arch.geocamat").build_model()  # was "unknown --arch", an option nobody gave


def test_a_bundle_of_nan_weights_is_neither_saved_nor_applied(tmp_path):
    """A diverged training's weights (NaN) mapped class 1 everywhere: such a bundle is not written, and one written
    by an older geocamat is refused when applied; its repr is one line, not every weight tensor."""
    import torch

    from geocamat.bundle import Bundle
    from geocamat.errors import BundleError, TrainingDivergedError
    from tests.inference_helpers import make_bundle

    bundle = make_bundle(tile=16)
    assert len(repr(bundle)) < 500 and "classes=" in repr(bundle)
    name = next(k for k, v in bundle.state_dict.items() if v.is_floating_point())
    bundle.state_dict[name] = torch.full_like(bundle.state_dict[name], torch.nan)
    with pytest.raises(TrainingDivergedError, match="NaN or infinite"):
        bundle.save(tmp_path / "m.geocamat")
    assert not list(tmp_path.iterdir())
    torch.save({"format": "geocamat-bundle", "version": 1, **{k: getattr(bundle, k) for k in (
        "task", "model", "state_dict", "bands", "mean", "std", "tile_size")},
        "classes": [vars(c) for c in bundle.classes]}, tmp_path / "old.geocamat")
    with pytest.raises(BundleError, match=f"NaN or infinite weights .*{name}.*lower learning rate"):
        Bundle.load(tmp_path / "old.geocamat").build_model()


def test_a_read_only_home_gets_matplotlib_a_cache_folder(monkeypatch):
    """HOME where nothing can be written (a batch job's, a container's): Matplotlib gets a temporary cache folder
    instead of printing two lines about it on every run, also with --quiet."""
    import os

    from cli.main import _matplotlib_cache

    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", "/dev/null/home")
    _matplotlib_cache()
    folder = os.environ["MPLCONFIGDIR"]
    assert os.path.isdir(folder) and os.access(folder, os.W_OK)
    monkeypatch.setenv("MPLCONFIGDIR", "/mine")
    _matplotlib_cache()
    assert os.environ["MPLCONFIGDIR"] == "/mine"  # the user's own stays
