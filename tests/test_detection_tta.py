"""Test-time augmentation for detection: views moved back to the tile's frame and fused."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from test_detection_cli import trained  # noqa: F401 - the module fixture (a one-epoch CLI-trained model)
from test_detection_inference import fake_detector

from cli.main import cli
from geocamat.camat.geometry import dihedral, inverse_index
from geocamat.inference.detect_tta import fuse_views, tta_detect_fn


def test_inverse_index_undoes_every_transform():
    x = torch.rand(1, 2, 6, 6)
    for k in range(8):
        assert torch.equal(dihedral(dihedral(x, k), inverse_index(k)), x)


def test_an_equivariant_detector_gives_the_same_boxes_and_scores_under_tta():
    tiles = torch.zeros(2, 2, 32, 32)
    tiles[0, 0, 3:9, 20:30] = 1.0  # class 0, off-centre and not square
    tiles[0, 1, 15:31, 1:5] = 1.0  # class 1
    tiles[1, 0, 0:4, 0:32] = 1.0  # a strip along the top edge
    plain, _ = fake_detector(tiles)
    fused, cams = tta_detect_fn(fake_detector)(tiles)
    assert cams is None
    for p, f in zip(plain, fused, strict=True):
        order = torch.argsort(p["labels"])
        forder = torch.argsort(f["labels"])
        torch.testing.assert_close(f["boxes"][forder], p["boxes"][order])
        torch.testing.assert_close(f["scores"], torch.full_like(f["scores"], 0.9))
        assert torch.equal(f["labels"][forder], p["labels"][order])


def test_fusion_averages_corners_by_score_and_discounts_boxes_few_views_found():
    boxes = torch.tensor([[10.0, 10, 20, 20], [12, 10, 22, 20], [50, 50, 60, 60], [10, 10, 20, 20]])
    scores = torch.tensor([0.8, 0.4, 0.6, 0.5])
    labels = torch.tensor([0, 0, 0, 1])  # the last: same place, other class: its own cluster
    out = fuse_views(boxes, scores, labels, views=2)
    assert len(out["boxes"]) == 3
    first = out["boxes"][0]
    torch.testing.assert_close(first, torch.tensor([10 + 2 * 0.4 / 1.2, 10, 20 + 2 * 0.4 / 1.2, 20]))
    torch.testing.assert_close(out["scores"], torch.tensor([0.6, 0.3, 0.25]))  # (0.8+0.4)/2, 0.6/2, 0.5/2
    assert out["labels"].tolist() == [0, 0, 1]
    empty = fuse_views(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), views=8)
    assert empty["boxes"].shape == (0, 4)


def test_tta_needs_square_tiles_and_a_view_count_in_range():
    with pytest.raises(ValueError, match="square"):
        tta_detect_fn(fake_detector)(torch.zeros(1, 1, 16, 24))
    with pytest.raises(ValueError, match="views"):
        tta_detect_fn(fake_detector, views=9)


def test_predict_and_evaluate_take_tta(trained):  # noqa: F811
    out = trained["root"] / "pred_tta"
    model = str(trained["run"] / "model.geocamat")
    result = CliRunner().invoke(cli, ["predict", "--model", model, "--out", str(out), "--tta", "--score-threshold",
                                      "0.0", "--quiet", str(trained["img"])])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["tta"] is True
    result = CliRunner().invoke(cli, ["evaluate", "--model", model, "--reference", str(trained["csv"]), "--tta",
                                      str(trained["img"])])
    assert result.exit_code == 0, result.output
    assert "mAP@0.5" in result.output
