"""The inference engine's seams: a new per-pixel head plugs in; units of bounded work; resume that keeps work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_helpers import Counting, Killed, make_bundle, make_raster  # noqa: E402
from inference_helpers import read_bands as read

from geocamat.errors import OutputExistsError  # noqa: E402
from geocamat.inference.heads import PixelHead, head_for  # noqa: E402
from geocamat.inference.landuse import predict_landuse  # noqa: E402
from geocamat.inference.manifest import PARTIAL  # noqa: E402
from geocamat.inference.plan import UnitSizes, band_rows_for_work, unit_size  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


def run(bundle, images, out, **kw):
    kw.setdefault("progress", False)
    return predict_landuse(bundle, [str(i) for i in images], out, **kw)


def test_a_toy_per_pixel_head_plugs_into_the_engine(tmp_path):
    class Threshold(PixelHead):
        """Class 1 where the first band is above its mean, class 2 elsewhere; its brightness as an extra."""

        outputs = {"probabilities": 3, "brightness": 1}

        def __call__(self, batch):
            above = (batch[:, :1] > 0).float()
            probs = torch.cat([0.1 + 0.8 * above, 0.9 - 0.8 * above, torch.zeros_like(above)], dim=1)
            return {"probabilities": probs, "brightness": batch[:, :1]}

    bundle = make_bundle(tile=16)
    img = make_raster(tmp_path / "img.tif", 90, 70, nodata=None)
    report = run(bundle, [img], tmp_path / "out", head=Threshold(), units=UnitSizes(band_rows=24, block_cols=40))
    band = (read(img)[0].astype(np.float32) - 100.0) / 50.0
    np.testing.assert_array_equal(read(tmp_path / "out" / "landuse.tif")[0], np.where(band > 0, 1, 2))
    np.testing.assert_allclose(read(tmp_path / "out" / "confidence.tif")[0], 0.9, rtol=1e-5)
    np.testing.assert_allclose(read(tmp_path / "out" / "brightness.tif")[0], band, rtol=1e-5, atol=1e-5)
    assert "brightness.tif" in report["outputs"] and "cam.tif" not in report["outputs"]
    assert report["plan"]["units"] > 4


def test_pixels_a_model_gives_nan_are_nodata_not_its_first_class(tmp_path):
    class NanAbove(PixelHead):  # a diverged model: NaN probabilities where the first band is bright
        outputs = {"probabilities": 3}

        def __call__(self, batch):
            probs = torch.cat([torch.full_like(batch[:, :1], 0.2), torch.full_like(batch[:, :1], 0.7),
                               torch.full_like(batch[:, :1], 0.1)], dim=1)
            return {"probabilities": torch.where(batch[:, :1] > 0, torch.nan, probs)}

    img = make_raster(tmp_path / "img.tif", 60, 50, nodata=None)
    run(make_bundle(tile=16), [img], tmp_path / "out", head=NanAbove(), overlap=0.0)
    bright = (read(img)[0].astype(np.float32) - 100.0) / 50.0 > 0
    with rasterio.open(tmp_path / "out" / "landuse.tif") as src:
        mapped = src.read(1, masked=True)
    assert bright.any() and (~bright).any()
    assert mapped.mask[bright].all() and (mapped[~bright] == 2).all()


def test_a_head_with_the_wrong_number_of_classes_is_refused(tmp_path):
    class TwoClasses(PixelHead):
        outputs = {"probabilities": 2}

        def __call__(self, batch):
            raise AssertionError("never called")

    img = make_raster(tmp_path / "img.tif", 40, 40, nodata=None)
    with pytest.raises(ValueError, match="3 classes"):
        run(make_bundle(tile=16), [img], tmp_path / "out", head=TwoClasses())


def test_a_large_scene_is_cut_into_units_of_bounded_work():
    from geocamat.outputs.overviews import overview_factors

    def bands(height, width, stride, views):
        factor = overview_factors(width, height)[-1]
        cols = unit_size(UnitSizes().block_cols, 2 * stride, stride, factor)
        rows = unit_size(band_rows_for_work(UnitSizes(), width, cols, stride, views), 2 * stride, stride, factor)
        return -(-height // rows) * -(-width // cols)

    assert bands(4096, 4096, 128, 1) >= 8  # 256 px tiles at overlap 0.5
    assert bands(4096, 4096, 8, 1) >= 8  # 16 px tiles: 262,144 tiles
    assert bands(4096, 4096, 8, 8) > bands(4096, 4096, 8, 1)  # 8x the model work per tile: smaller units






def test_a_run_killed_at_a_quarter_keeps_its_work_and_resumes_to_the_same_map(tmp_path):
    bundle = make_bundle(tile=16)
    img = make_raster(tmp_path / "img.tif", 100, 160, collar=2, missing_frame=6)
    units = UnitSizes(band_rows=32, block_cols=56)
    kw = dict(units=units, write_probabilities=True, batch_size=8)
    whole = Counting(head_for(bundle))
    ref = run(bundle, [img], tmp_path / "ref", head=whole, **kw)
    assert ref["plan"]["units"] >= 8
    first = Counting(head_for(bundle), stop_after=whole.tiles // 4)
    out = tmp_path / "out"
    with pytest.raises(Killed):
        run(bundle, [img], out, head=first, **kw)
    manifest = json.loads((out / PARTIAL / "manifest.json").read_text())
    assert manifest["done"], "units finished before the kill are recorded"
    with pytest.raises(OutputExistsError, match="--resume"):  # a rerun without --resume says that it exists
        run(bundle, [img], out, head=Counting(head_for(bundle)), **kw)
    from click.testing import CliRunner

    from cli.main import cli

    bundle.save(tmp_path / "model.geocamat")
    result = CliRunner().invoke(cli, ["predict", "--model", str(tmp_path / "model.geocamat"), "--out", str(out),
                                      "--quiet", str(img)])
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "interrupted run" in lines[0] and "--resume" in lines[0]
    assert not (out / "landuse.tif").exists() and (out / PARTIAL / "manifest.json").exists()
    second = Counting(head_for(bundle))
    report = run(bundle, [img], out, head=second, resume=True, **kw)
    assert report["resumed"] and report["runs"] == 2
    recomputed = first.tiles + second.tiles - whole.tiles
    assert 0 <= recomputed <= 0.3 * whole.tiles
    for name in ("landuse.tif", "confidence.tif", "cam.tif", "probabilities.tif", "partial_bands.tif"):
        np.testing.assert_array_equal(read(tmp_path / "ref" / name), read(out / name), err_msg=name)
    assert report["tiles"] == ref["tiles"] and report["classes"] == ref["classes"]
    assert report["pixels"] == ref["pixels"] and report["pixels"]["partial_bands"] > 0


def offset_range(path: Path, period: int = 8, margin: int = 16) -> float:
    """Range of the mean of a map by (row mod period, col mod period) away from the scene's edges (covered by
    fewer tiles): a lattice of that period if large."""
    a = read(path)[0][margin:-margin, margin:-margin]
    means = [np.nanmean(a[r::period, c::period]) for r in range(period) for c in range(period)]
    return float(np.max(means) - np.min(means))


class PositionBiased(PixelHead):
    """Outputs that depend on where a pixel sits in its tile, as a CNN's do (border pixels see less context):
    class 1, more confidently at the tile centre; a CAM that falls off towards the border the same way."""

    outputs = {"probabilities": 3, "cam": 1}

    def __call__(self, batch):
        t = batch.shape[-1]
        d = ((torch.arange(t) - (t - 1) / 2) / (t / 2)) ** 2
        sharp = (1.0 - 0.15 * (d[:, None] + d[None, :])).expand(len(batch), 1, t, t)  # 0.7 in the corners
        logits = torch.cat([2 * sharp, torch.zeros_like(sharp), torch.zeros_like(sharp)], dim=1)
        return {"probabilities": logits.softmax(dim=1), "cam": sharp}


def test_dense_maps_have_no_lattice_of_the_tile_stride(tmp_path):
    bundle = make_bundle(tile=16)
    bundle.model["output"] = "dense"
    img = make_raster(tmp_path / "img.tif", 160, 128, nodata=None)
    report = run(bundle, [img], tmp_path / "default", head=PositionBiased(), vectorise=False)
    assert report["settings"]["overlap"] == 0.75
    run(bundle, [img], tmp_path / "half", head=PositionBiased(), vectorise=False, overlap=0.5)
    for name in ("confidence.tif", "cam.tif"):
        assert offset_range(tmp_path / "half" / name) > 0.02  # the lattice of maps at overlap 0.5 (before)
        assert offset_range(tmp_path / "default" / name) < 0.005, name
    assert (read(tmp_path / "default" / "landuse.tif") == 1).all()


def test_report_gives_the_crs_as_the_input_has_it_and_an_epsg_code_only_when_exact(tmp_path):
    from geocamat.inference.report import crs_record

    img = make_raster(tmp_path / "img.tif", 40, 40)
    report = run(make_bundle(tile=16), [img], tmp_path / "out", vectorise=False)
    assert report["grid"]["epsg"] == 32618 and report["grid"]["crs_projjson"]["type"] == "ProjectedCRS"
    nc = Path(__file__).resolve().parents[1] / "samples" / "nc_landsat" / "lsat7_2000_10.tif"
    with rasterio.open(nc) as src:
        wkt = src.crs.to_wkt()
    record = crs_record(wkt)  # GDAL matches it to EPSG:32119 at 70% only
    assert record["epsg"] is None and record["epsg_closest"] == 32119 and record["crs"] == wkt


def test_pixels_with_some_bands_nodata_are_counted_and_can_be_mapped_as_nodata(tmp_path):
    img = make_raster(tmp_path / "img.tif", 60, 50, nodata=0)
    with rasterio.open(img, "r+") as dst:
        band = dst.read(3)
        band[:, :12] = 0  # the third band is missing in a 12 px strip
        dst.write(band, 3)
    bundle = make_bundle(tile=16)
    filled = run(bundle, [img], tmp_path / "filled", vectorise=False)
    strict = run(bundle, [img], tmp_path / "strict", vectorise=False, require_all_bands=True)
    assert filled["pixels"] == {"partial_bands": 50 * 12, "partial_bands_mapped": True}
    assert strict["pixels"] == {"partial_bands": 50 * 12, "partial_bands_mapped": False}
    a, b = read(tmp_path / "filled" / "landuse.tif")[0], read(tmp_path / "strict" / "landuse.tif")[0]
    assert (a[:, :12] != 0).all() and (b[:, :12] == 0).all()
    np.testing.assert_array_equal(a[:, 12:], b[:, 12:])  # the context of the strip is still read


def test_crs_in_words_names_an_epsg_code_only_when_exact(tmp_path):
    from pyproj import CRS as ProjCRS
    from rasterio.crs import CRS

    from geocamat.data.crs import crs_label

    nc = Path(__file__).resolve().parents[1] / "samples" / "nc_landsat" / "lsat7_2000_10.tif"
    with rasterio.open(nc) as src:
        assert crs_label(src.crs) == "a custom CRS (closest: EPSG:32119)"
    assert crs_label(CRS.from_epsg(32617)) == "EPSG:32617"
    assert crs_label(ProjCRS.from_epsg(4326)) == "EPSG:4326"
    assert crs_label(None) is None


def test_progress_moves_within_a_unit_and_ends_at_the_total(tmp_path, monkeypatch, capsys):
    """A unit of a big scene took 70-120 s: progress lines came once per unit, not every 30 s."""
    monkeypatch.setenv("GEOCAMAT_PROGRESS_SECONDS", "0")
    img = make_raster(tmp_path / "img.tif", 90, 70, nodata=None)
    report = run(make_bundle(tile=16), [img], tmp_path / "out", progress=True, batch_size=2,
                 units=UnitSizes(band_rows=48, block_cols=96))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("predict out")]
    counts = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    total = int(lines[-1].split("/")[1].split()[0])
    assert counts == sorted(counts) and counts[-1] == total
    assert len(set(counts)) > report["plan"]["units"] + 1  # lines between the units' ends
