"""Starting models from weights (geocamat/models/weights.py): every source format built locally, no network."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner

from cli.main import cli
from geocamat.bundle import Bundle, ClassInfo
from geocamat.errors import ConfigError, InputNotFoundError, WeightsError
from geocamat.models.camnet import CamNet
from geocamat.models.detectors import Detector
from geocamat.models.weights import (
    adapt_first_conv,
    apply_weights,
    camnet_arch,
    detector_backbone,
    find_enum,
    load_init,
    load_weights,
)
from tests.conftest import scene_folder


@pytest.fixture(scope="module")
def resnet18() -> torchvision.models.ResNet:
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    for m in model.modules():  # non-trivial batch-norm statistics, so copying them is checked too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


def _assert_camnet_equals_resnet(model: CamNet, tv: torchvision.models.ResNet, depths=(2, 2, 2, 2)) -> None:
    assert torch.equal(model.stem[0].weight, tv.conv1.weight)
    assert torch.equal(model.stem[1].running_var, tv.bn1.running_var)
    for i, depth in enumerate(depths):
        layer = getattr(tv, f"layer{i + 1}")
        for j in range(depth):
            ours, theirs = model.stages[i][j], layer[j]
            for name in ("conv1", "bn1", "conv2", "bn2"):
                for key, value in getattr(theirs, name).state_dict().items():
                    assert torch.equal(getattr(ours, name).state_dict()[key], value), (i, j, name, key)
            if theirs.downsample is not None:
                assert torch.equal(ours.shortcut[0].weight, theirs.downsample[0].weight)
                assert torch.equal(ours.shortcut[1].running_mean, theirs.downsample[1].running_mean)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".safetensors", ".ckpt"])
def test_local_state_dict_loads_into_camnet(tmp_path, resnet18, suffix):
    path = tmp_path / f"weights{suffix}"
    state = resnet18.state_dict()
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif suffix == ".ckpt":  # a Lightning-style checkpoint wrapping the ResNet as ``model.``
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    else:
        torch.save(state, path)
    weights = load_weights(str(path))
    assert camnet_arch(weights) == "resnet18" and weights.stem_kernel == 7
    model = CamNet(3, 5, 64, arch="resnet18", stem_kernel=7)
    record = apply_weights(model, weights)
    _assert_camnet_equals_resnet(model, resnet18)
    assert record["source"] == "file" and record["file"] == str(path) and record["scope"] == "backbone"
    assert record["tensors"] == 120 and record["first_conv"] is None and len(record["sha256"]) == 64


def test_resnet10_and_detector_take_the_first_blocks(tmp_path, resnet18):
    torch.save(resnet18.state_dict(), tmp_path / "r18.pth")
    weights = load_weights(str(tmp_path / "r18.pth"))
    model = CamNet(3, 2, 32, arch="resnet10", stem_kernel=7)
    record = apply_weights(model, weights)
    _assert_camnet_equals_resnet(model, resnet18, depths=(1, 1, 1, 1))
    assert "first 1-1-1-1 blocks" in record["blocks"]
    assert detector_backbone(weights) == "resnet18"
    det = Detector(in_channels=3, backbone="resnet18", tile_size=128, stem_kernel=7)
    apply_weights(det, weights)
    assert torch.equal(det.body.stem[0].weight, resnet18.conv1.weight)
    assert torch.equal(det.body.layer3[1].conv2.weight, resnet18.layer3[1].conv2.weight)
    assert torch.equal(det.body.layer2[0].shortcut[0].weight, resnet18.layer2[0].downsample[0].weight)


def test_band_adaptation_repeats_and_scales_like_timm(resnet18):
    w = resnet18.conv1.weight.detach()
    six, note = adapt_first_conv(w, 6)
    assert torch.allclose(six, torch.cat([w, w], dim=1) * 0.5) and "3 to 6 bands" in note
    four, _ = adapt_first_conv(w, 4)
    assert torch.allclose(four, torch.cat([w, w[:, :1]], dim=1) * 0.75)
    one, note = adapt_first_conv(w, 1)
    assert torch.allclose(one, w.sum(dim=1, keepdim=True)) and "summed" in note
    # a constant image gives the same first-layer response with the adapted weights
    x3, x6 = torch.ones(1, 3, 16, 16), torch.ones(1, 6, 16, 16)
    assert torch.allclose(torch.nn.functional.conv2d(x3, w), torch.nn.functional.conv2d(x6, six), atol=1e-5)
    model = CamNet(6, 3, 64, arch="resnet18", stem_kernel=7)
    record = apply_weights(model, load_weights_from(resnet18))
    assert torch.allclose(model.stem[0].weight, six) and record["first_conv"].startswith("first convolution")


def load_weights_from(model):
    from geocamat.models.weights import weights_from_state

    return weights_from_state(model.state_dict(), {"name": "test"})


def test_refusals_are_one_line(tmp_path, resnet18):
    weights = load_weights_from(resnet18)
    with pytest.raises(WeightsError, match="cannot start this model: stem 0.weight"):
        apply_weights(CamNet(3, 2, 64, arch="camnet-xs", stem_kernel=7), weights)
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(WeightsError, match="bottleneck"):
        load_weights(str(tmp_path / "r50.pth"))
    with pytest.raises(WeightsError, match="resnet50 weights"):  # refused before anything is downloaded
        find_enum("ResNet50_Weights.IMAGENET1K_V2")
    with pytest.raises(WeightsError, match="known: .*SENTINEL2_RGB_MOCO"):
        find_enum("ResNet18_Weights.NOPE")
    with pytest.raises(InputNotFoundError, match="weights file not found"):
        load_weights(str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable state dict"):
        load_weights(str(tmp_path / "junk.pth"))
    torch.save(torchvision.models.resnet18(), tmp_path / "whole.pth")  # the model itself, not its weights
    with pytest.raises(WeightsError, match=r"holds a whole pickled model \(torchvision.models.resnet.ResNet\), not "
                                           r"a state dict: .*torch.save\(model.state_dict\(\), 'weights.pth'\)"):
        load_weights(str(tmp_path / "whole.pth"))
    torch.save({"a.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not a ResNet"):
        load_weights(str(tmp_path / "other.pth"))


def _no_network(monkeypatch):
    def refuse(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_enum_without_network_names_the_file_and_the_cache(tmp_path, monkeypatch, resnet18):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _no_network(monkeypatch)
    with pytest.raises(WeightsError) as err:
        load_weights("ResNet18_Weights.IMAGENET1K_V1")
    message = str(err.value)
    assert "\n" not in message and "resnet18-f37072fd.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    # the same file placed in the cache by hand: loads offline, origin recorded
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(resnet18.state_dict(), folder / "resnet18-f37072fd.pth")
    weights = load_weights("ResNet18_Weights.IMAGENET1K_V1")
    assert weights.origin["source"] == "torchvision" and weights.origin["url"].endswith("resnet18-f37072fd.pth")
    assert weights.origin["bands"] == ["red", "green", "blue"] and weights.origin["normalisation"]["std"][0] == 0.229
    model = CamNet(3, 2, 64, arch=camnet_arch(weights), stem_kernel=weights.stem_kernel)
    apply_weights(model, weights)
    _assert_camnet_equals_resnet(model, resnet18)


def test_torchgeo_enum_from_the_cache_records_bands_and_normalisation(tmp_path, monkeypatch):
    import timm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _no_network(monkeypatch)
    library, enum = find_enum("torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO")
    assert library == "torchgeo"
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    timm_model = timm.create_model("resnet18", num_classes=0)  # TorchGeo's ResNets are timm's: same key names
    torch.save(timm_model.state_dict(), folder / Path(enum.url).name)
    weights = load_weights("ResNet18_Weights.SENTINEL2_RGB_MOCO")
    assert weights.origin["source"] == "torchgeo" and weights.origin["bands"] == ["B4", "B3", "B2"]
    assert weights.origin["normalisation"] == {"mean": [0.0], "std": [10000.0]}
    model = CamNet(3, 2, 64, arch="resnet18", stem_kernel=7)
    apply_weights(model, weights)
    assert torch.equal(model.stages[3][1].bn2.weight, timm_model.layer4[1].bn2.weight)


def _bundle(model, task, spec, classes, bands) -> Bundle:
    return Bundle(task=task, model=spec, state_dict=model.state_dict(), bands=bands, mean=[0.0] * len(bands),
                  std=[1.0] * len(bands), classes=[ClassInfo(i, n, "#ff0000") for i, n in enumerate(classes)],
                  tile_size=spec["tile_size"])


def test_init_from_bundles(tmp_path):
    torch.manual_seed(1)
    spec = {"name": "camnet", "in_channels": 4, "num_classes": 3, "tile_size": 32, "arch": "camnet-s"}
    source = CamNet(4, 3, 32, arch="camnet-s")
    _bundle(source, "landuse", spec, ["a", "b", "c"], ["b1", "b2", "b3", "b4"]).save(tmp_path / "lu.geocamat")
    weights = load_init(None, str(tmp_path / "lu.geocamat"))
    assert camnet_arch(weights) == "camnet-s" and weights.stem_kernel == 3
    target = CamNet(4, 2, 32, arch="camnet-s")
    record = apply_weights(target, weights, ["x", "y"])
    assert torch.equal(target.stages[2][0].conv2.weight, source.stages[2][0].conv2.weight)
    assert record["source"] == "bundle" and record["task"] == "landuse" and record["model"]["arch"] == "camnet-s"
    assert record["skipped"] == ["head.weight", "head.bias"]
    # a detector bundle starts another detector whole (same classes), its heads aside when classes differ
    det_spec = {"name": "detector", "arch": "fasterrcnn", "in_channels": 3, "num_classes": 1, "tile_size": 128,
                "backbone": "tiny", "fpn_channels": 32}
    det = Detector(**{k: v for k, v in det_spec.items() if k != "name"})
    _bundle(det, "detection", det_spec, ["tree"], ["r", "g", "b"]).save(tmp_path / "det.geocamat")
    weights = load_init(None, str(tmp_path / "det.geocamat"))
    twin = Detector(**{k: v for k, v in det_spec.items() if k != "name"})
    record = apply_weights(twin, weights, ["tree"])
    assert record["scope"] == "whole detector" and not record["skipped"]
    for key, value in det.state_dict().items():
        assert torch.equal(twin.state_dict()[key], value), key
    # a scene/land-use resnet18 starts a detector's backbone (the --init-from route of the detection benchmark)
    scene_spec = {"name": "camnet", "in_channels": 3, "num_classes": 7, "tile_size": 64, "arch": "resnet18"}
    scene_model = CamNet(3, 7, 64, arch="resnet18")
    _bundle(scene_model, "scenes", scene_spec, list("abcdefg"), ["r", "g", "b"]).save(tmp_path / "sc.geocamat")
    weights = load_init(None, str(tmp_path / "sc.geocamat"))
    assert detector_backbone(weights) == "resnet18" and weights.stem_kernel == 3
    det18 = Detector(in_channels=3, backbone="resnet18", tile_size=128, stem_kernel=3)
    assert apply_weights(det18, weights, ["tree"])["scope"] == "backbone"
    assert torch.equal(det18.body.layer2[1].conv1.weight, scene_model.stages[1][1].conv1.weight)
    assert torch.equal(det18.body.stem[0].weight, scene_model.stem[0].weight)
    with pytest.raises(ConfigError, match="--weights or --init-from, not both"):
        load_init("x.pth", str(tmp_path / "det.geocamat"))
    with pytest.raises(InputNotFoundError):
        load_init(None, str(tmp_path / "none.geocamat"))


def test_train_scenes_from_weights_records_the_origin(tmp_path, resnet18):
    """CLI: --weights FILE for a scene model; with lr 0 the trained convolutions are the given ones."""
    torch.save(resnet18.state_dict(), tmp_path / "r18.pth")
    run = tmp_path / "run"
    scenes = scene_folder(tmp_path / "scenes", per_class=4, size=32)
    result = CliRunner().invoke(cli, ["train", "--scenes", str(scenes), "--set",
                                      "image_size=32", "--epochs", "1", "--batch-size", "4", "--lr", "0",
                                      "--weights", str(tmp_path / "r18.pth"), "--out", str(run)])  # not -q: its lines
    assert result.exit_code == 0, result.output
    assert "starting from r18.pth (file): 120 tensors into the backbone" in result.output
    bundle = Bundle.load(run / "model.geocamat")
    assert bundle.model["arch"] == "resnet18" and bundle.model["stem_kernel"] == 7
    init = bundle.extra["init"]
    assert init["source"] == "file" and init["file"] == str(tmp_path / "r18.pth") and init["tensors"] == 120
    assert torch.equal(bundle.state_dict["stages.1.1.conv2.weight"], resnet18.layer2[1].conv2.weight)
    assert "arch: resnet18" in (run / "config.yaml").read_text()
    # the scene model starts a land-use-style run of its own kind through --init-from
    run2 = tmp_path / "run2"
    result = CliRunner().invoke(cli, ["train", "--scenes", str(tmp_path / "scenes"), "--set", "image_size=32",
                                      "--epochs", "1", "--batch-size", "4", "--lr", "0", "--init-from",
                                      str(run / "model.geocamat"), "--out", str(run2), "--quiet"])
    assert result.exit_code == 0, result.output
    again = Bundle.load(run2 / "model.geocamat")
    assert again.extra["init"]["source"] == "bundle" and again.extra["init"]["task"] == "scenes"
    assert torch.equal(again.state_dict["stem.0.weight"], resnet18.conv1.weight)


def test_train_weights_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _no_network(monkeypatch)
    scenes = scene_folder(tmp_path / "scenes", per_class=4, size=32)
    for args, needle in ((["--weights", "ResNet18_Weights.IMAGENET1K_V1"], "copy resnet18-f37072fd.pth"),
                         (["--weights", "ResNet50_Weights.IMAGENET1K_V2"], "basic-block ResNets"),
                         (["--weights", str(tmp_path / "no.pth")], "weights file not found"),
                         (["--init-from", str(tmp_path / "no.geocamat")], "model bundle not found")):
        result = CliRunner().invoke(cli, ["train", "--scenes", str(scenes), "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert lines[-1].startswith("Error: ") and needle in lines[-1] and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_detection_from_weights(tmp_path, resnet18):
    """Detection training takes the weights' backbone (resnet18, 7x7 stem) and records the origin."""
    from test_detection_workflow import scene

    img, csv = scene(tmp_path)
    torch.save(resnet18.state_dict(), tmp_path / "r18.pth")
    cfg = {"images": [str(img)], "labels": [str(csv)], "tile_size": 128, "epochs": 1, "batch_size": 2,
           "max_tiles": 2, "empty_ratio": 0.0, "val_fraction": 0.0, "lr": 0.0, "regulariser": "none",
           "weights": str(tmp_path / "r18.pth")}
    lines: list[str] = []
    _train_detection(cfg, tmp_path / "run", log=lines.append)
    bundle = Bundle.load(tmp_path / "run" / "model.geocamat")
    assert bundle.model["backbone"] == "resnet18" and bundle.model["stem_kernel"] == 7
    assert bundle.extra["init"]["source"] == "file" and any("first 2-2-2 blocks" in line for line in lines)
    key = "detector.backbone.body.layer3.1.conv1.weight"
    assert torch.equal(bundle.state_dict[key], resnet18.layer3[1].conv1.weight)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train_tiles"] == 2


def test_train_landuse_from_weights(tmp_path, synthetic_scene, resnet18):
    """CLI: --weights for tiles of a GeoTIFF stack; the arch follows the weights when not given."""
    torch.save(resnet18.state_dict(), tmp_path / "r18.pth")
    run = tmp_path / "lu"
    result = CliRunner().invoke(cli, ["train", "--images", str(synthetic_scene["image"]), "--labels",
                                      str(synthetic_scene["labels"]), "--tile-size", "16", "--blocks", "2",
                                      "--epochs", "1", "--lr", "0", "--set", "ema_decay=0.9",
                                      "--weights", str(tmp_path / "r18.pth"), "--out", str(run)])  # not -q: its lines
    assert result.exit_code == 0, result.output
    assert "starting from r18.pth" in result.output
    bundle = Bundle.load(run / "model.geocamat")  # the weight average ships: it must start from the weights too
    assert bundle.model["arch"] == "resnet18" and bundle.extra["init"]["sha256"]
    assert torch.equal(bundle.state_dict["stages.3.0.shortcut.0.weight"], resnet18.layer4[0].downsample[0].weight)


def test_resnet34_weights_fill_resnet18_with_the_first_blocks():
    r34 = torchvision.models.resnet34()
    weights = load_weights_from(r34)
    assert weights.depths == [3, 4, 6, 3] and camnet_arch(weights) == "resnet18"
    model = CamNet(3, 2, 64, arch="resnet18", stem_kernel=7)
    record = apply_weights(model, weights)
    _assert_camnet_equals_resnet(model, r34)
    assert "first 2-2-2-2 blocks of the weights' 3-4-6-3" in record["blocks"]


def test_detection_init_from_a_detector_takes_the_whole_detector(tmp_path):
    """--init-from a detection bundle: its build (backbone, pyramid, anchors) and every layer are taken."""
    from test_detection_workflow import scene

    img, csv = scene(tmp_path)
    base = {"images": [str(img)], "labels": [str(csv)], "tile_size": 128, "epochs": 1, "batch_size": 2,
            "max_tiles": 2, "empty_ratio": 0.0, "val_fraction": 0.0, "regulariser": "none"}
    _train_detection({**base, "backbone": "tiny", "fpn_channels": 16, "anchor_sizes": [8, 16, 32, 64]},
                     tmp_path / "src", log=lambda line: None)
    lines: list[str] = []
    _train_detection({**base, "lr": 0.0, "init_from": str(tmp_path / "src" / "model.geocamat")}, tmp_path / "dst",
                     log=lines.append)
    src, dst = Bundle.load(tmp_path / "src" / "model.geocamat"), Bundle.load(tmp_path / "dst" / "model.geocamat")
    assert dst.model["backbone"] == "tiny" and dst.model["fpn_channels"] == 16
    assert dst.model["anchor_sizes"] == [8, 16, 32, 64] and dst.model["stem_kernel"] is None
    assert dst.extra["init"]["scope"] == "whole detector" and any("whole detector" in line for line in lines)
    for key in ("detector.backbone.fpn.inner_blocks.0.0.weight", "detector.rpn.head.conv.0.0.weight",
                "detector.roi_heads.box_predictor.cls_score.weight", "cam_head.weight",
                "detector.backbone.body.stem.3.weight"):
        assert torch.equal(dst.state_dict[key], src.state_dict[key]), key


def _train_detection(values: dict, out: Path, log) -> dict:
    """The detection workflow with settings given as a dict (as a config file would)."""
    from geocamat.settings import build
    from geocamat.tasks.detection.config import DetectionConfig
    from geocamat.tasks.detection.workflow import train_detection

    out.mkdir(parents=True, exist_ok=True)
    return train_detection(build(DetectionConfig, values, what="detection training"), out, progress=False, log=log)
