"""Detection outputs a user can read: near-duplicate merging and the GeoPackage style."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from geocamat.bundle import ClassInfo
from geocamat.inference.duplicates import merge_duplicates
from geocamat.outputs.detections import OUTLINE_COLOURS, detections_qml, write_detections


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_near_duplicates_surviving_nms_are_merged():
    a, b = np.array([0, 0, 10, 10.0]), np.array([0, 3.6, 10, 13.6])  # IoU 0.47: survives NMS at 0.5
    far = np.array([30, 30, 40, 40.0])
    assert 0.46 < _iou(a, b) < 0.5
    boxes = np.stack([a, b, far, b])
    scores = np.array([0.9, 0.3, 0.8, 0.5])
    labels = np.array([0, 0, 0, 1])  # the last box: same place, another class
    fused, idx = merge_duplicates(boxes, scores, labels, iou=0.4, method="wbf")
    assert sorted(idx.tolist()) == [0, 2, 3]
    merged = fused[idx.tolist().index(0)]
    np.testing.assert_allclose(merged, (0.9 * a + 0.3 * b) / 1.2, rtol=1e-6)  # score-weighted corners
    np.testing.assert_allclose(fused[idx.tolist().index(3)], b)  # other class untouched
    kept, idx = merge_duplicates(boxes, scores, labels, iou=0.4, method="nms")
    np.testing.assert_allclose(kept[idx.tolist().index(0)], a)
    same, idx = merge_duplicates(boxes, scores, labels, iou=0.4, method="none")
    assert len(same) == 4 and idx.tolist() == [0, 1, 2, 3]
    assert len(merge_duplicates(boxes, scores, labels, iou=0.5)[0]) == 4  # below the IoU: kept apart
    with pytest.raises(ValueError, match="unknown duplicate merge"):
        merge_duplicates(boxes, scores, labels, method="avg")


def test_style_reads_on_imagery():
    classes = [ClassInfo(0, "Tree", "#1a7837"), ClassInfo(1, "Car <&>", "#d7191c")]
    root = ET.fromstring(detections_qml(classes).split("\n", 1)[1])
    assert root.get("labelsEnabled") == "1" and "Labeling" in root.get("styleCategories")
    cats = root.findall("./renderer-v2/categories/category")
    assert [c.get("value") for c in cats] == ["Tree", "Car <&>"]
    for i, symbol in enumerate(root.findall("./renderer-v2/symbols/symbol")):
        halo, line = symbol.findall("layer")
        props = {p.get("k"): p.get("v") for p in line.findall("prop")}
        rgb = ",".join(str(int(OUTLINE_COLOURS[i][k:k + 2], 16)) for k in (1, 3, 5))
        assert props["outline_color"] == f"{rgb},255"  # bright, not the land-cover colour of the class
        assert {p.get("k"): p.get("v") for p in halo.findall("prop")}["outline_color"].startswith("0,0,0,")
        expr = line.find(".//Option[@name='outlineWidth']/Option[@name='expression']").get("value")
        assert '"score"' in expr  # graded by score
    text = root.find("./labeling/settings/text-style")
    assert text.get("isExpression") == "1" and '"score"' in text.get("fieldName")


def test_style_is_stored_in_the_geopackage(tmp_path):
    import pandas as pd
    from shapely.geometry import box

    frame = pd.DataFrame({"class_name": ["Tree"], "score": [0.8], "geometry": [box(0, -10, 10, 0)]})
    files = write_detections(tmp_path / "detections.gpkg", frame, [ClassInfo(0, "Tree", "#1a7837")])
    assert files["style_in_gpkg"]
    with sqlite3.connect(tmp_path / "detections.gpkg") as con:
        (qml,) = con.execute("SELECT styleQML FROM layer_styles WHERE useAsDefault=1").fetchone()
    assert "<labeling" in qml and "255,255,0,255" in qml


def test_each_removed_box_joins_the_best_leader_a_scan_of_every_leader_finds():
    """group_boxes looks only at the leaders near each removed box: the groups are those of comparing it with all."""
    import torch
    from torchvision.ops import box_iou

    from geocamat.inference.duplicates import group_boxes

    g = np.random.default_rng(2)
    xy = g.uniform(0, 1500, (3000, 2))
    boxes = torch.as_tensor(np.hstack([xy, xy + g.uniform(8, 90, (3000, 2))]))
    scores, labels = torch.as_tensor(g.uniform(0, 1, 3000)), torch.as_tensor(g.integers(0, 3, 3000))
    keep, group = group_boxes(boxes, scores, labels, 0.4)
    gone = torch.nonzero(group < 0).flatten()
    assert len(gone) == 0 and len(keep) < 3000  # every removed box was removed by a leader: each has a group
    assert torch.equal(group[keep], torch.arange(len(keep)))
    removed = torch.tensor(sorted(set(range(3000)) - set(keep.tolist())))
    match = (box_iou(boxes[removed], boxes[keep]) > 0.4) & (labels[removed][:, None] == labels[keep][None, :])
    match &= scores[keep][None, :] >= scores[removed][:, None]
    assert torch.equal(group[removed], match.to(torch.uint8).argmax(dim=1))  # the first (best) leader


def test_regions_are_cut_to_the_images_and_those_between_them_skipped():
    """Counting regions: each is cut to the images' extents (two sheets with a gap; one in another CRS), its covered
    share kept; a region in the gap between the images is skipped, not counted as zero objects."""
    import shapely
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from geocamat.data.boxes import ImageInfo
    from geocamat.tasks.detection.inputs import imaged_regions

    utm = CRS.from_epsg(32617)
    x0, y0 = 500000.0, 4000000.0
    left = ImageInfo("a.tif", 100, 100, utm, from_origin(x0, y0, 1, 1))
    right = ImageInfo("b.tif", 100, 100, utm, from_origin(x0 + 200, y0, 1, 1))
    regions = imaged_regions([("across", shapely.box(x0 + 50, y0 - 100, x0 + 250, y0)),  # half in each, gap between
                              ("gap", shapely.box(x0 + 120, y0 - 80, x0 + 180, y0 - 20)),
                              ("inside", shapely.box(x0 + 10, y0 - 30, x0 + 40, y0 - 10))], [left, right], utm)
    assert [v for v, _ in regions.parts] == ["across", "inside"] and regions.skipped == ["gap"]
    assert regions.parts[0][1].area == pytest.approx(100 * 100) and regions.imaged_share == pytest.approx([0.5, 1.0])
    # an image in geographic coordinates: its footprint reprojected with densified edges
    geo = ImageInfo("c.tif", 100, 100, CRS.from_epsg(4326), from_origin(-81.0, 36.1, 0.001, 0.001))
    corner = shapely.box(-81.05, 36.0, -80.95, 36.1)  # half of it over the image
    import geopandas as gpd

    in_utm = gpd.GeoSeries([corner], crs=4326).to_crs(utm).iloc[0]
    (_, part), = imaged_regions([("q", in_utm)], [geo], utm).parts
    assert part.area / in_utm.area == pytest.approx(0.5, abs=0.01)
