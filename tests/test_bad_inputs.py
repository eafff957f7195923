"""Bad inputs, one table: every row must exit with code 2, print exactly one line on stderr (``Error: ...``)
that names the file (or option) at fault, and leave the disk as it was: nothing written, changed or removed
(a row may allow a hidden resume folder). No traceback anywhere.

Rows run in-process (CliRunner) on tiny files made once per session (tests/bad_inputs_data.py) and one
tiny model trained once per session. ``docs/errors.md`` is generated from this table by
``docs/make_errors_doc.py`` (it runs this file with ``GEOCAMAT_ERRORS_JSON`` set to collect the messages).
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli


class Env:
    """What a row's lambdas see: the input files (``env.f["scene"]``), the models and the output folder."""

    def __init__(self, files: dict[str, Path], model: Path, det_model: Path, tmp: Path) -> None:
        self.f, self.model, self.det_model, self.tmp = files, model, det_model, tmp
        self.out = tmp / "out"

    def __getattr__(self, name: str) -> str:
        if name in ("f", "model", "det_model", "tmp", "out"):
            raise AttributeError(name)
        return str(self.f[name])


@dataclass(frozen=True)
class Row:
    """One bad input: the user's mistake, the command line, what the one error line must say."""

    id: str
    what: str
    argv: Callable[[Env], list[str]]
    expect: str
    names: Callable[[Env], str] | None = None  # the file (or option) the line must name
    setup: Callable[[Env], None] | None = None
    patch: Callable[[Env, pytest.MonkeyPatch], None] | None = None
    leaves: tuple[str, ...] = ()  # paths (relative to tmp; "DIR/**": all under DIR) a failed run may leave


def _train(e: Env, *args: str, images: str | None = None, labels: str | None = None) -> list[str]:
    argv = ["train", "--out", str(e.out), "--quiet", "--tile-size", "16", "--blocks", "2", "--epochs", "1"]
    if images != "":
        argv += ["--images", images or e.scene]
    if labels != "":
        argv += ["--labels", labels or e.labels]
    return argv + list(args)


def _predict(e: Env, *args: str, images: tuple[str, ...] | None = None, model: str | None = None) -> list[str]:
    return ["predict", "--model", model or str(e.model), "--out", str(e.out), "--quiet", *args,
            *(images if images is not None else (e.scene,))]


def _netcdf(source: str, path: Path) -> None:
    """A netCDF copy of a multi-band raster: GDAL opens it as a container of subdatasets, no bands of its own."""
    import rasterio.shutil

    rasterio.shutil.copy(source, path, driver="netCDF")


def _unrectified(source: str, path: Path, rpcs: bool) -> None:
    """A copy of ``source`` without geotransform or CRS, georeferenced by its four corners as GCPs or by RPCs."""
    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.rpc import RPC

    with rasterio.open(source) as src:
        profile, data, t, crs = src.profile, src.read(), src.transform, src.crs
    profile.pop("transform"), profile.pop("crs")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if rpcs:
            dst.rpcs = RPC(height_off=0, height_scale=100, lat_off=36, lat_scale=0.1, line_den_coeff=[1] + [0] * 19,
                           line_num_coeff=[0, 0, -1] + [0] * 17, line_off=50, line_scale=50, long_off=-80,
                           long_scale=0.1, samp_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18,
                           samp_off=50, samp_scale=50)
        else:
            corners = [(0, 0), (0, dst.width), (dst.height, 0), (dst.height, dst.width)]
            dst.gcps = ([GroundControlPoint(r, c, *(t @ (c, r))) for r, c in corners], crs)


def _evaluate(e: Env, *args: str) -> list[str]:
    return ["evaluate", "--model", str(e.model), "--quiet", *args]


def _sample(e: Env, map_path: str, *args: str) -> list[str]:
    return ["sample", "--map", map_path, "--out", str(e.tmp / "points.gpkg"), *args]


def _results(e: Env) -> None:
    e.out.mkdir()
    for name in ("landuse.tif", "report.json", "model.geocamat"):
        (e.out / name).write_text("an earlier result\n")
    (e.out / "notes.txt").write_text("a user's notes\n")


def _raise(exc: BaseException):
    def fn(*args, **kwargs):
        raise exc
    return fn


def _oom_model(exc: BaseException):
    def patch(e: Env, mp: pytest.MonkeyPatch) -> None:
        from geocamat.models.camnet import CamNet

        for method in ("forward", "dense_logits", "forward_features"):
            if hasattr(CamNet, method):
                mp.setattr(CamNet, method, _raise(exc))
    return patch


def _torch_oom():
    import torch

    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB (GPU 0; 79.1 GiB total)")


ENOSPC = OSError(errno.ENOSPC, "No space left on device")
EROFS = OSError(errno.EROFS, "Read-only file system")
EACCES = OSError(errno.EACCES, "Permission denied")
RESUME = ("out", "out/.geocamat-partial/**")  # the output folder and the hidden folder --resume continues

ROWS = [
    # -- train: inputs -----------------------------------------------------------------------------------------
    Row("train-missing-images", "image glob matches nothing", lambda e: _train(e, images=str(e.tmp / "no*.tif")),
        "no raster found", lambda e: "no*.tif"),
    Row("train-missing-labels", "label file does not exist", lambda e: _train(e, labels=str(e.tmp / "gone.tif")),
        "labels not found", lambda e: "gone.tif"),
    Row("train-scenes-mixed-bands", "scene folder with a 4-band TIFF among RGB images",
        lambda e: ["train", "--scenes", e.scenes_mixed, "--out", str(e.out), "--quiet", "--epochs", "1"],
        "has 4 bands but the training images have 3", lambda e: "rgbn.tif"),
    Row("train-scenes-broken-image", "scene folder with an image cut short",
        lambda e: ["train", "--scenes", e.scenes_broken, "--out", str(e.out), "--quiet", "--epochs", "1"],
        "cannot read image", lambda e: "cut.jpg"),
    Row("train-no-labels", "no --labels and no --scenes", lambda e: _train(e, labels=""), "no labels"),
    Row("train-no-images", "no --images", lambda e: _train(e, images=""), "images"),
    Row("train-image-no-crs", "image without CRS", lambda e: _train(e, images=e.nocrs), "no CRS",
        lambda e: e.nocrs),
    Row("train-labels-no-crs", "label raster without CRS", lambda e: _train(e, labels=e.nocrs_labels), "no CRS",
        lambda e: e.nocrs_labels),
    Row("train-labels-far", "labels do not overlap the imagery", lambda e: _train(e, labels=e.far_labels),
        "do not overlap", lambda e: "far_labels.tif"),
    Row("train-one-class", "labels hold a single class", lambda e: _train(e, labels=e.one_class), "single class"),
    Row("train-float-labels", "label raster of non-integer values", lambda e: _train(e, labels=e.float_labels),
        "non-integer", lambda e: e.float_labels),
    Row("train-truncated-image", "truncated GeoTIFF image", lambda e: _train(e, images=e.trunc), "truncated",
        lambda e: e.trunc),
    Row("train-truncated-labels", "truncated label GeoTIFF", lambda e: _train(e, labels=e.trunc_labels),
        "truncated", lambda e: e.trunc_labels),
    Row("train-garbage-image", "a .tif that is not a raster", lambda e: _train(e, images=e.garbage), "cannot read",
        lambda e: e.garbage),
    Row("train-all-nodata", "image that is all nodata", lambda e: _train(e, images=e.nodata), "no valid pixels",
        lambda e: e.nodata),
    Row("train-band-grids", "band files on different grids", lambda e: _train(e, images=e.bands),
        "different grids", lambda e: "b3.tif"),
    Row("train-huge-tile", "--tile-size larger than the scene", lambda e: _train(e, "--tile-size", "100000"),
        "larger than the scene", lambda e: "--tile-size"),
    Row("train-tile-over-blocks", "--tile-size larger than a checkerboard block",
        lambda e: _train(e, "--tile-size", "48"), "larger than the checkerboard blocks", lambda e: "--blocks"),
    Row("train-band-number", "--bands names a band that does not exist", lambda e: _train(e, "--bands", "9"),
        "band 9 does not exist"),
    Row("train-band-name", "--bands names an unknown band", lambda e: _train(e, "--bands", "nir"),
        "'nir' not found"),
    Row("train-label-nodata-vector", "--label-nodata with vector labels",
        lambda e: _train(e, "--label-nodata", "0", "--label-field", "class", labels=e.polygons),
        "--label-nodata applies to a label raster"),
    Row("train-vector-code-minus-1", "vector labels with the code -1 (its features vanished: 'a single class (0)')",
        lambda e: _train(e, "--label-field", "code", labels=e.minus_one), "holds the code -1",
        lambda e: "minus_one.gpkg"),
    Row("train-vector-no-field", "vector labels without --label-field", lambda e: _train(e, labels=e.polygons),
        "--label-field", lambda e: "cls"),
    Row("train-vector-bad-field", "unknown --label-field", lambda e: _train(e, "--label-field", "klass",
                                                                           labels=e.polygons),
        "'klass'", lambda e: "polygons.gpkg"),
    Row("train-vector-far", "label polygons outside the imagery",
        lambda e: _train(e, "--label-field", "cls", labels=e.far_polygons), "do not overlap",
        lambda e: "far_polygons.gpkg"),
    Row("train-rgb-labels", "labels that are a colour rendering of the classes (3 bands)",
        lambda e: _train(e, labels=e.rgb_labels), "has 3 bands: class codes are read from one band",
        lambda e: e.rgb_labels),
    Row("train-vector-layers", "a GeoPackage of several layers, none named",
        lambda e: _train(e, "--label-field", "cls", labels=e.layers), "holds 2 layers (aoi, training",
        lambda e: "layers.gpkg:aoi"),
    Row("train-vector-layer-unknown", "a layer the GeoPackage does not hold",
        lambda e: _train(e, "--label-field", "cls", labels=f"{e.layers}:roads"), "no layer 'roads'",
        lambda e: "layers.gpkg"),
    Row("train-vector-no-crs", "shapefile without .prj", lambda e: _train(e, "--label-field", "cls",
                                                                          labels=e.nocrs_polygons),
        "no CRS", lambda e: e.nocrs_polygons),
    Row("train-vector-empty", "label layer without features",
        lambda e: _train(e, "--label-field", "cls", labels=e.empty_polygons), "no features",
        lambda e: e.empty_polygons),
    Row("train-detection-truncated", "detection training on a truncated image",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.trunc,
                   "--labels", e.boxes], "truncated", lambda e: e.trunc),
    Row("train-detection-all-nodata", "detection training on an image that is all nodata",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.nodata,
                   "--labels", e.boxes], "no valid pixels", lambda e: e.nodata),
    Row("train-detection-no-labels", "detection training without labels",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.scene], "labels"),
    Row("train-detection-missing-labels", "detection label file does not exist",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.scene,
                   "--labels", str(e.tmp / "boxes.csv")], "boxes.csv", lambda e: "boxes.csv"),
    Row("train-detection-layers", "detection labels in a GeoPackage of several layers, none named",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.scene,
                   "--labels", e.layers, "--label-field", "cls"], "holds 2 layers", lambda e: "layers.gpkg"),
    Row("train-detection-yolo-pixels", "YOLO label file with pixel coordinates",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.scene,
                   "--labels", str(e.tmp / "scene.txt")], "fractions", lambda e: "scene.txt",
        setup=lambda e: (e.tmp / "scene.txt").write_text("0 50 40 10 10\n")),
    Row("train-detection-coco-image", "COCO annotation of an image the file does not list",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.scene,
                   "--labels", str(e.tmp / "coco.json")], "image_id 2", lambda e: "coco.json",
        setup=lambda e: (e.tmp / "coco.json").write_text(
            '{"images": [{"id": 1, "file_name": "scene.tif"}], "categories": [{"id": 1, "name": "car"}], '
            '"annotations": [{"image_id": 2, "bbox": [1, 1, 5, 5], "category_id": 1}]}')),
    Row("train-detection-coco-size", "COCO boxes drawn on another size of the image",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.scene,
                   "--labels", str(e.tmp / "half.json")], "drawn on a 32x32 px image", lambda e: "half.json",
        setup=lambda e: (e.tmp / "half.json").write_text(
            '{"images": [{"id": 1, "file_name": "scene.tif", "width": 32, "height": 32}], "categories": [{"id": 1, '
            '"name": "car"}], "annotations": [{"image_id": 1, "bbox": [1, 1, 5, 5], "category_id": 1}]}')),
    Row("train-detection-points", "detection labels that are points (tree tops), not boxes",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.scene,
                   "--labels", str(e.tmp / "tops.geojson"), "--label-field", "none"], "not areas",
        lambda e: "tops.geojson", setup=lambda e: (e.tmp / "tops.geojson").write_text(
            '{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32617"}}, '
            '"features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": '
            '[500100, 3999800]}}]}')),
    Row("train-detection-typo", "a typo'd detection setting",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.scene,
                   "--labels", e.boxes, "--set", "tile_sise=64"], "tile_sise"),
    Row("train-detection-fcos-channels", "FCOS with a pyramid width its head cannot normalise",
        lambda e: ["train", "--task", "detection", "--out", str(e.out), "--quiet", "--images", e.scene,
                   "--labels", e.boxes, "--set", "detector=fcos", "--set", "fpn_channels=16"], "multiple of 32"),
    # -- train: settings ---------------------------------------------------------------------------------------
    Row("train-epochs-0", "--epochs 0", lambda e: _train(e, "--epochs", "0"), "epochs"),
    Row("train-purity", "--purity out of range", lambda e: _train(e, "--purity", "2"), "purity"),
    Row("train-typo-set", "a typo'd --set key", lambda e: _train(e, "--set", "tile_sise=16"),
        "'tile_sise' is not a setting of land-use training (did you mean 'tile_size'?)"),
    Row("train-typo-camat", "a typo'd --set camat key", lambda e: _train(e, "--set", "camat.taux=0.5"),
        "'taux' (did you mean 'tau'?)"),
    Row("train-bad-set", "--set without =", lambda e: _train(e, "--set", "epochs"), "key=value"),
    Row("train-devices-0", "--devices 0", lambda e: _train(e, "--devices", "0"), "devices must be a number"),
    Row("train-strategy", "an unknown --strategy", lambda e: _train(e, "--strategy", "foo"), "strategy must be one of"),
    Row("train-precision", "a precision the models cannot run", lambda e: _train(e, "--set", "precision=64"),
        "precision must be one of"),
    Row("train-seed", "a negative seed", lambda e: _train(e, "--set", "seed=-1"), "seed must be an integer from 0"),
    Row("train-lr-text", "a learning rate that is not a number", lambda e: _train(e, "--set", "lr=1e-3x"),
        "lr must be a number >= 0"),
    Row("train-classes-list", "classes as a list of names (as detection takes them): an internal error",
        lambda e: _train(e, "--set", "classes=[a, b]"), "classes must map", lambda e: "classes"),
    Row("train-classes-colour", "a class colour that is not #rrggbb",
        lambda e: _train(e, "--set", "classes={1: {name: a, color: notacolor}}"), "is not #rrggbb",
        lambda e: "notacolor"),
    Row("train-diverges", "a learning rate so high that the loss becomes NaN (a model of NaN weights mapped one "
        "class everywhere)", lambda e: _train(e, "--lr", "1e38"), "training diverged", lambda e: "--lr"),
    Row("train-nodes-no-launcher", "--num-nodes 2 without torchrun or srun", lambda e: _train(e, "--num-nodes", "2"),
        "needs a launcher on each machine",
        patch=lambda e, mp: [mp.delenv(k, raising=False) for k in ("WORLD_SIZE", "SLURM_NTASKS")]),
    Row("train-camat-choice", "a CAMAT option outside its choices", lambda e: _train(e, "--set", "camat.schedule=up"),
        "rising"),
    Row("train-camat-without-camat", "a --set camat option with --no-camat",
        lambda e: _train(e, "--no-camat", "--set", "camat.schedule=rising"), "--set camat.schedule applies only"),
    Row("train-arch", "unknown --arch", lambda e: _train(e, "--arch", "resnet999"), "resnet999"),
    Row("train-regulariser", "unknown --regulariser", lambda e: _train(e, "--regulariser", "magic"), "magic"),
    Row("train-tile-size-text", "--tile-size not a number", lambda e: _train(e, "--tile-size", "big"),
        "--tile-size"),
    Row("train-config-missing", "CONFIG file does not exist",
        lambda e: ["train", str(e.tmp / "nope.yaml"), "--out", str(e.out)], "nope.yaml", lambda e: "nope.yaml"),
    Row("train-config-duplicate-key", "a setting given twice in the config file (the last one won, silently)",
        lambda e: ["train", str(e.tmp / "twice.yaml"), "--out", str(e.out)], "'epochs' is given twice (line 3",
        lambda e: "twice.yaml", setup=lambda e: (e.tmp / "twice.yaml").write_text(
            f"images: [{e.scene}]\nepochs: 1\nepochs: 2\n")),
    # -- train: output location --------------------------------------------------------------------------------
    Row("train-out-exists", "--out holds results, no --overwrite", lambda e: _train(e), "already holds results",
        lambda e: str(e.out), setup=_results),
    Row("train-out-is-file", "--out is a file", lambda e: _train(e), "is a file", lambda e: str(e.out),
        setup=lambda e: e.out.write_text("x")),
    Row("train-read-only", "--out on a read-only file system", lambda e: _train(e), "cannot write",
        lambda e: str(e.tmp), patch=lambda e, mp: mp.setattr("geocamat.preflight.tempfile.mkstemp", _raise(EROFS))),
    Row("train-disk-full-checkpoint", "disk full when the first checkpoint would be saved", lambda e: _train(e),
        "checkpoint", lambda e: str(e.out), patch=lambda e, mp: mp.setattr("torch.save", _raise(ENOSPC))),
    # -- predict -----------------------------------------------------------------------------------------------
    Row("predict-missing-model", "model bundle does not exist", lambda e: _predict(e, model=str(e.tmp / "m.geocamat")),
        "not found", lambda e: "m.geocamat"),
    Row("predict-broken-model", "a file that is not a bundle", lambda e: _predict(e, model=e.not_a_bundle),
        "bundle", lambda e: e.not_a_bundle),
    Row("predict-netcdf-container", "a netCDF file of several variables (no bands of its own)",
        lambda e: _predict(e, images=(str(e.tmp / "scene.nc"),)), "holds no raster bands but 3 subdatasets",
        lambda e: "scene.nc", setup=lambda e: _netcdf(e.scene, e.tmp / "scene.nc")),
    Row("info-netcdf-container", "info on a netCDF file of several variables",
        lambda e: ["info", str(e.tmp / "scene.nc")], "gdal_translate", lambda e: "scene.nc",
        setup=lambda e: _netcdf(e.scene, e.tmp / "scene.nc")),
    Row("predict-gdal-name", "a GDAL subdataset name as an image",
        lambda e: _predict(e, images=(f'NETCDF:"{e.tmp / "scene.nc"}":Band1',)), "is a GDAL dataset name",
        setup=lambda e: _netcdf(e.scene, e.tmp / "scene.nc")),
    Row("predict-gcps", "an image georeferenced by ground control points only",
        lambda e: _predict(e, "--force", images=(str(e.tmp / "gcps.tif"),)), "georeferenced by 4 ground control points",
        lambda e: "gcps.tif", setup=lambda e: _unrectified(e.scene, e.tmp / "gcps.tif", rpcs=False)),
    Row("train-rpcs", "training on an image georeferenced by RPCs only",
        lambda e: _train(e, images=str(e.tmp / "rpcs.tif")), "georeferenced by RPCs", lambda e: "rpcs.tif",
        setup=lambda e: _unrectified(e.scene, e.tmp / "rpcs.tif", rpcs=True)),
    Row("predict-missing-image", "image does not exist", lambda e: _predict(e, images=(str(e.tmp / "x.tif"),)),
        "no raster found", lambda e: "x.tif"),
    Row("predict-no-crs", "image without CRS", lambda e: _predict(e, images=(e.nocrs,)), "no CRS",
        lambda e: e.nocrs),
    Row("predict-band-count", "image with other bands than the model's", lambda e: _predict(e, images=(e.two_band,)),
        "expects 3 bands"),
    Row("predict-truncated", "truncated GeoTIFF", lambda e: _predict(e, images=(e.trunc,)), "truncated",
        lambda e: e.trunc),
    Row("predict-garbage", "a .tif that is not a raster", lambda e: _predict(e, images=(e.garbage,)),
        "cannot read", lambda e: e.garbage),
    Row("predict-all-nodata", "image that is all nodata", lambda e: _predict(e, images=(e.nodata,)),
        "no valid pixels", lambda e: e.nodata),
    Row("predict-coarse", "image 10x coarser than the model's training imagery",
        lambda e: _predict(e, images=(e.coarse,)), "coarser", lambda e: e.coarse),
    Row("predict-fine", "image 10x finer than the model's training imagery", lambda e: _predict(e, images=(e.fine,)),
        "finer", lambda e: e.fine),
    Row("predict-res-far", "--res 10x the model's pixel size", lambda e: _predict(e, "--res", "100"), "--res 100"),
    Row("predict-band-grids", "band files on different grids", lambda e: _predict(e, images=(e.bands,)),
        "different grids", lambda e: "b3.tif"),
    Row("predict-bbox-far", "--bbox outside the images", lambda e: _predict(e, "--bbox", "0", "0", "10", "10"),
        "does not overlap", lambda e: "bbox"),
    Row("predict-bbox-inverted", "--bbox with xmin > xmax",
        lambda e: _predict(e, "--bbox", "500600", "3999400", "500000", "4000000"), "bbox"),
    Row("predict-bbox-crs", "unknown --bbox-crs",
        lambda e: _predict(e, "--bbox", "0", "0", "1", "1", "--bbox-crs", "EPSG:999999"), "EPSG:999999"),
    Row("predict-crs", "unknown --crs", lambda e: _predict(e, "--crs", "EPSG:999999"), "EPSG:999999"),
    Row("predict-region-missing", "--region file does not exist",
        lambda e: _predict(e, "--region", str(e.tmp / "aoi.gpkg")), "aoi.gpkg", lambda e: "aoi.gpkg"),
    Row("predict-region-layers", "--region a GeoPackage of several layers, none named",
        lambda e: _predict(e, "--region", e.layers), "holds 2 layers", lambda e: "layers.gpkg"),
    Row("predict-region-far", "--region outside the images", lambda e: _predict(e, "--region", e.far_polygons),
        "does not overlap", lambda e: "far_polygons.gpkg"),
    Row("predict-region-field", "unknown --region-field",
        lambda e: _predict(e, "--region", e.polygons, "--region-field", "zone"), "zone"),
    Row("predict-region-field-alone", "--region-field without --region",
        lambda e: _predict(e, "--region-field", "cls"), "--region"),
    Row("predict-mapping-unit-twice", "--min-area and --min-polygon-pixels both given",
        lambda e: _predict(e, "--min-area", "0.5", "--min-polygon-pixels", "9"), "--min-area (hectares) or"),
    Row("predict-overlap", "--overlap out of range", lambda e: _predict(e, "--overlap", "1.5"), "overlap"),
    Row("predict-batch", "--batch-size 0", lambda e: _predict(e, "--batch-size", "0"), "batch size"),
    Row("predict-tta-views", "unknown --tta-views", lambda e: _predict(e, "--tta-views", "some"), "--tta-views"),
    Row("predict-window-small", "--window smaller than the model's tile", lambda e: _predict(e, "--window", "8"),
        "--window"),
    Row("predict-window-huge", "--window larger than the scene", lambda e: _predict(e, "--window", "100000"),
        "larger than the scene", lambda e: "--window"),
    Row("predict-res-zero", "--res 0", lambda e: _predict(e, "--res", "0"), "--res must be a pixel size > 0"),
    Row("predict-device", "--device cuda without a GPU", lambda e: _predict(e, "--device", "cuda"), "cuda"),
    Row("predict-device-name", "unknown --device", lambda e: _predict(e, "--device", "tpu"), "tpu"),
    Row("predict-out-exists", "--out holds results, no --overwrite", lambda e: _predict(e), "already holds results",
        lambda e: str(e.out), setup=_results),
    Row("predict-read-only", "--out on a read-only file system", lambda e: _predict(e), "cannot write",
        lambda e: str(e.tmp), patch=lambda e, mp: mp.setattr("geocamat.preflight.tempfile.mkstemp", _raise(EROFS))),
    Row("predict-no-permission", "--out in a folder without write permission", lambda e: _predict(e),
        "cannot write", lambda e: str(e.tmp),
        patch=lambda e, mp: mp.setattr("geocamat.preflight.tempfile.mkstemp", _raise(EACCES))),
    Row("predict-no-space", "not enough free space for the estimated output", lambda e: _predict(e),
        "not enough free space", lambda e: str(e.out),
        patch=lambda e, mp: mp.setattr("geocamat.preflight.shutil.disk_usage",
                                       lambda p: __import__("shutil")._ntuple_diskusage(10**9, 10**9, 1000))),
    Row("predict-disk-full-midway", "disk fills up while the map is written", lambda e: _predict(e),
        "no space left", lambda e: "landuse.tif", leaves=RESUME,
        patch=lambda e, mp: mp.setattr("geocamat.outputs.raster.move_raster",
                                       _raise(OSError(errno.ENOSPC, "No space left on device",
                                                      str(e.out / "landuse.tif"))))),
    Row("predict-corrupt-midway", "a block that GDAL cannot decode, met during the run", lambda e: _predict(
        e, images=(e.trunc,)), "truncated", lambda e: "truncated.tif", leaves=RESUME,
        patch=lambda e, mp: mp.setattr("geocamat.preflight.check_inputs", lambda paths: None)),
    Row("predict-out-of-memory", "host out of memory in the model", lambda e: _predict(e), "--batch-size",
        lambda e: "memory", leaves=RESUME,
        patch=_oom_model(MemoryError("Unable to allocate 40.0 GiB for an array with shape (64, 3, 100000, 100000)"))),
    Row("predict-gpu-out-of-memory", "GPU out of memory in the model", lambda e: _predict(e), "--batch-size",
        lambda e: "GPU memory", leaves=RESUME, patch=lambda e, mp: _oom_model(_torch_oom())(e, mp)),
    Row("predict-detection-no-georef", "detection on a GeoTIFF without georeference",
        lambda e: _predict(e, model=str(e.det_model), images=(e.nocrs,)), "no georeference", lambda e: e.nocrs),
    Row("predict-detection-bands", "detection on an image with other bands",
        lambda e: _predict(e, model=str(e.det_model), images=(e.two_band,)), "bands", lambda e: e.two_band),
    Row("predict-detection-bbox-off", "detection in a bbox that misses the images",
        lambda e: _predict(e, "--bbox", "0", "0", "1", "1", model=str(e.det_model)), "does not overlap",
        lambda e: "bbox"),
    Row("predict-jpeg-folder", "a folder of JPEG scenes given to a land-use model ('no raster found')",
        lambda e: _predict(e, images=(str(Path(e.scenes_broken) / "b"),)), "it holds .jpg files",
        lambda e: str(Path(e.scenes_broken) / "b")),
    Row("predict-complex", "a complex-valued image (SAR SLC): it was mapped from its real part",
        lambda e: _predict(e, images=(e.complex,)), "holds complex values", lambda e: e.complex),
    Row("predict-bundle-as-image", "the model bundle given among the images ('truncated or corrupt: re-download')",
        lambda e: _predict(e, images=(e.scene, str(e.model))), "is a model bundle, not a raster",
        lambda e: str(e.model)),
    Row("predict-image-as-model", "an image given as --model", lambda e: _predict(e, model=e.scene),
        "is an image, not a model bundle", lambda e: e.scene),
    Row("predict-min-area-over-map", "a minimum mapping unit larger than the whole map (an empty landuse.gpkg)",
        lambda e: _predict(e, "--min-area", "1e9"), "larger than the map", lambda e: "--min-area"),
    Row("predict-res-nan", "--res nan ('nan m pixels, nanx finer')", lambda e: _predict(e, "--res", "nan"),
        "--res must be a pixel size > 0"),
    Row("predict-workers-0", "--workers 0", lambda e: _predict(e, "--workers", "0"), "--workers must be >= 1",
        lambda e: "--workers"),
    Row("predict-detection-score-over-1", "a detection score threshold above 1 (no object, silently)",
        lambda e: _predict(e, "--score-threshold", "5", model=str(e.det_model)), "score_threshold must be",
        lambda e: "score_threshold"),
    Row("predict-detection-interrupted", "detection into a folder with an interrupted run, without --resume",
        lambda e: _predict(e, model=str(e.det_model)), "--resume", lambda e: str(e.out),
        setup=lambda e: (e.tmp / ".out.detect-work").mkdir() or (e.tmp / ".out.detect-work" / "run.json").write_text(
            "{}")),
    Row("predict-missing-option", "no --model", lambda e: ["predict", "--out", str(e.out), e.scene], "--model"),
    # -- evaluate ----------------------------------------------------------------------------------------------
    Row("evaluate-detection-truncated", "detection scored on a truncated image",
        lambda e: ["evaluate", "--model", str(e.det_model), "--quiet", "--reference", e.trunc_boxes, e.trunc],
        "truncated", lambda e: Path(e.trunc).name),
    Row("evaluate-detection-bands", "detection scored on an image with other bands",
        lambda e: ["evaluate", "--model", str(e.det_model), "--quiet", "--reference", e.two_band_boxes, e.two_band],
        "bands", lambda e: e.two_band),
    Row("evaluate-detection-other-images", "reference boxes of images not given",
        lambda e: ["evaluate", "--model", str(e.det_model), "--quiet", "--reference", e.boxes, e.two_band],
        "not among the given images", lambda e: Path(e.boxes).name),
    Row("evaluate-rgb-reference", "a reference that is a colour rendering of the classes (3 bands)",
        lambda e: _evaluate(e, "--reference", e.rgb_labels, "--map", e.labels), "has 3 bands",
        lambda e: e.rgb_labels),
    Row("evaluate-csv-no-crs", "reference points in a CSV of x, y without a .prj",
        lambda e: _evaluate(e, "--reference", e.plots_xy, "--reference-field", "cls", "--map", e.labels),
        "without their CRS", lambda e: "plots_xy.prj"),
    Row("evaluate-other-codes", "a reference raster whose codes are none of the model's (10, 20 for 1, 2)",
        lambda e: _evaluate(e, "--reference", e.other_codes, "--map", e.labels), "none of the model's",
        lambda e: e.other_codes),
    Row("evaluate-other-codes-out", "images mapped into --out for a reference whose codes are none of the model's",
        lambda e: _evaluate(e, "--reference", e.other_codes, "--out", str(e.out), e.scene), "none of the model's",
        lambda e: e.other_codes),
    Row("evaluate-map-not-classes", "an image (not a class map) given as --map",
        lambda e: _evaluate(e, "--reference", e.labels, "--map", e.scene), "not class", lambda e: e.scene),
    Row("evaluate-map-and-images", "--map and IMAGES together (the images were ignored)",
        lambda e: _evaluate(e, "--reference", e.labels, "--map", e.labels, e.scene), "not both",
        lambda e: "--map"),
    Row("evaluate-blocks-0", "--blocks 0 (every pixel was scored)",
        lambda e: _evaluate(e, "--reference", e.labels, "--map", e.labels, "--blocks", "0"), "--blocks must be >= 1",
        lambda e: "--blocks"),
    Row("evaluate-blocks-over-map", "--blocks larger than the map's side (blocks under a pixel were 'scored')",
        lambda e: _evaluate(e, "--reference", e.labels, "--map", e.labels, "--blocks", "500"),
        "makes blocks under a pixel", lambda e: "--blocks 500"),
    Row("evaluate-no-reference", "no --reference", lambda e: _evaluate(e, e.scene), "--reference"),
    Row("evaluate-missing-reference", "--reference does not exist",
        lambda e: _evaluate(e, "--reference", str(e.tmp / "ref.tif"), "--map", e.labels), "ref.tif",
        lambda e: "ref.tif"),
    Row("evaluate-far-reference", "reference does not overlap the map",
        lambda e: _evaluate(e, "--reference", e.far_labels, "--map", e.labels), "nothing to score",
        lambda e: e.far_labels),
    Row("evaluate-unreadable-reference", "reference that is neither raster nor vector",
        lambda e: _evaluate(e, "--reference", e.dbf, "--map", e.labels), "not a raster", lambda e: e.dbf),
    Row("evaluate-reference-no-crs", "reference raster without CRS",
        lambda e: _evaluate(e, "--reference", e.nocrs_labels, "--map", e.labels), "no CRS",
        lambda e: e.nocrs_labels),
    Row("evaluate-truncated-map", "truncated --map", lambda e: _evaluate(e, "--reference", e.labels, "--map", e.trunc),
        "truncated", lambda e: e.trunc),
    Row("evaluate-truncated-image", "truncated image to map",
        lambda e: _evaluate(e, "--reference", e.labels, e.trunc), "truncated", lambda e: e.trunc),
    Row("evaluate-coarse", "image to map 10x coarser than the model's training imagery",
        lambda e: _evaluate(e, "--reference", e.labels, e.coarse), "--force", lambda e: e.coarse),
    Row("evaluate-vector-no-field", "vector reference without --reference-field",
        lambda e: _evaluate(e, "--reference", e.polygons, "--map", e.labels), "--reference-field"),
    Row("evaluate-vector-classes", "vector reference with classes the model does not know",
        lambda e: _evaluate(e, "--reference", e.odd_classes, "--reference-field", "cls", "--map", e.labels),
        "lake", lambda e: "odd_classes.gpkg"),
    Row("evaluate-label-offset", "malformed --label-offset",
        lambda e: _evaluate(e, "--reference", e.labels, "--map", e.labels, "--label-offset", "one"),
        "--label-offset"),
    Row("evaluate-missing-mask", "--mask does not exist",
        lambda e: _evaluate(e, "--reference", e.labels, "--map", e.labels, "--mask", str(e.tmp / "mask.tif")),
        "mask.tif", lambda e: "mask.tif"),
    # -- sample ------------------------------------------------------------------------------------------------
    Row("sample-float-map", "a map of floats (not class codes)", lambda e: _sample(e, e.scene), "not class codes",
        lambda e: e.scene),
    Row("sample-missing-map", "--map does not exist", lambda e: _sample(e, str(e.tmp / "landuse.tif")),
        "file not found", lambda e: "landuse.tif"),
    Row("sample-truncated-map", "truncated --map", lambda e: _sample(e, e.trunc_labels), "is broken",
        lambda e: e.trunc_labels),
    Row("sample-map-no-crs", "a map without CRS", lambda e: _sample(e, e.nocrs_labels), "no CRS",
        lambda e: e.nocrs_labels),
    Row("sample-all-nodata", "a map that is nodata everywhere", lambda e: _sample(e, e.nodata_map),
        "no mapped pixel", lambda e: e.nodata_map),
    Row("sample-total-too-small", "--total below --per-class x classes",
        lambda e: _sample(e, e.labels, "--total", "3"), "below --per-class", lambda e: "--total"),
    Row("sample-read-only", "--out in a read-only folder", lambda e: _sample(e, e.labels), "cannot write",
        lambda e: str(e.tmp), patch=lambda e, mp: mp.setattr("geocamat.preflight.tempfile.mkstemp", _raise(EROFS))),
    Row("sample-out-exists", "--out exists, no --overwrite", lambda e: _sample(e, e.labels), "--overwrite",
        lambda e: "points.gpkg", setup=lambda e: (e.tmp / "points.gpkg").write_text("a user's file\n")),
    Row("sample-out-not-gpkg", "--out not a GeoPackage",
        lambda e: ["sample", "--map", e.labels, "--out", str(e.tmp / "points.shp")], "GeoPackage (.gpkg) or a CSV",
        lambda e: "points.shp"),
    # -- info --------------------------------------------------------------------------------------------------
    Row("info-missing", "file does not exist", lambda e: ["info", str(e.tmp / "nothing.tif")], "no such file",
        lambda e: "nothing.tif"),
    Row("info-truncated", "truncated GeoTIFF", lambda e: ["info", e.trunc], "broken", lambda e: e.trunc),
    Row("info-garbage", "a .tif that is not a raster", lambda e: ["info", e.garbage], "broken", lambda e: e.garbage),
    Row("info-broken-bundle", "a .geocamat file that is not a bundle", lambda e: ["info", e.not_a_bundle],
        "bundle", lambda e: e.not_a_bundle),
    Row("info-not-geodata", "a text file", lambda e: ["info", e.notes], "neither a raster", lambda e: e.notes),
    Row("info-check-bands", "--check: images with other bands than the model's",
        lambda e: ["info", "--check", str(e.model), e.two_band], "bands"),
    Row("info-check-resolution", "--check: images far from the model's pixel size",
        lambda e: ["info", "--check", str(e.model), e.coarse], "coarser", lambda e: e.coarse),
    Row("info-check-labels", "--check: labels that do not overlap the images",
        lambda e: ["info", "--check", str(e.model), e.scene, "--labels", e.far_labels], "does not overlap",
        lambda e: e.far_labels),
    Row("info-check-classes", "--check: label layer with classes the model does not know",
        lambda e: ["info", "--check", str(e.model), e.scene, "--labels", e.odd_classes, "--label-field", "cls"],
        "does not know", lambda e: e.odd_classes),
    Row("info-check-truncated", "--check: a truncated image",
        lambda e: ["info", "--check", str(e.model), e.trunc], "truncated", lambda e: e.trunc),
]


def _tree(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``roots`` with its size and mtime (ns): what the disk holds."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (st.st_size if p.is_file() else 0, st.st_mtime_ns if p.is_file() else 0)
    return out


def _allowed(path: str, tmp: Path, leaves: tuple[str, ...]) -> bool:
    for leave in leaves:
        if leave.endswith("/**"):
            base = str(tmp / leave[:-3])
            if path == base or path.startswith(base + "/"):
                return True
        elif path == str(tmp / leave):
            return True
    return False


def _collect(row: Row, message: str, env: Env) -> None:
    target = os.environ.get("GEOCAMAT_ERRORS_JSON")
    if not target:
        return
    text = message.replace(str(env.tmp) + "/", "").replace(str(env.f["scene"].parent) + "/", "")
    text = re.sub(r"partial-\d+", "partial-PID", text.replace(str(env.tmp), "DIR"))
    with open(target, "a") as fh:
        fh.write(json.dumps({"id": row.id, "command": row.argv(env)[0], "what": row.what, "message": text}) + "\n")


def test_the_table_is_large_enough():
    assert len(ROWS) >= 60
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, table_env, tmp_path, monkeypatch):
    files, model, det_model, data = table_env
    env = Env(files, model, det_model, tmp_path)
    if row.setup:
        row.setup(env)
    if row.patch:
        row.patch(env, monkeypatch)
    before = _tree(tmp_path, data)
    result = CliRunner().invoke(cli, row.argv(env), prog_name="geocamat")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    assert row.expect in lines[0], lines[0]
    if row.names:
        assert row.names(env) in lines[0], lines[0]
    after = _tree(tmp_path, data)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert {p for p in changed if p not in after or not _allowed(p, tmp_path, row.leaves)} == set(), changed
    _collect(row, lines[0], env)
