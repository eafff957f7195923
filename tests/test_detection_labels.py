"""Label readers for detection: formats, vector reprojection, and one-line errors for bad labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geocamat.data.boxes import load_boxes
from geocamat.data.detection_images import image_info
from geocamat.errors import InvalidLabelsError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TREES = DATA / "deepforest_neon_trees"
DOTA = DATA / "dota_v1_sample"
needs_data = pytest.mark.skipif(not TREES.is_dir(), reason="shared data not available")


def geotiff(path: Path, width: int = 100, height: int = 80, crs: str = "EPSG:32617") -> Path:
    """A small 3-band GeoTIFF at 0.1 m with origin (404000, 3285000)."""
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=crs,
                       transform=from_origin(404000, 3285000, 0.1, 0.1)) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, height, width), dtype=np.uint8))
    return path


@needs_data
@pytest.mark.parametrize("labels,count,classes", [("OSBS_029.xml", 61, ["Tree"]), ("OSBS_029.csv", 61, ["Tree"])])
def test_pixel_formats_osbs(labels, count, classes):
    info = image_info(str(TREES / "OSBS_029.tif"))
    (ib,), names = load_boxes([TREES / labels], [info])
    assert len(ib.boxes) == count and names == classes
    assert (ib.boxes[:, 2] > ib.boxes[:, 0]).all() and ib.boxes.max() <= 400 and ib.boxes.min() >= 0


@needs_data
def test_csv_names_png_by_stem_and_xml_agree():
    """The CSV says OSBS_029.tif; the same boxes attach to OSBS_029.png by stem and equal the VOC ones."""
    (a,), _ = load_boxes([TREES / "OSBS_029.csv"], [image_info(str(TREES / "OSBS_029.png"))])
    (b,), _ = load_boxes([TREES / "OSBS_029.xml"], [image_info(str(TREES / "OSBS_029.png"))])
    np.testing.assert_allclose(np.sort(a.boxes, axis=0), np.sort(b.boxes, axis=0))


@needs_data
def test_dota_quadrilaterals_to_boxes():
    (ib,), names = load_boxes([DOTA / "labelTxt" / "P1888.txt"], [image_info(str(DOTA / "images" / "P1888.png"))])
    assert len(ib.boxes) == 64 and names == ["large-vehicle", "small-vehicle"]
    # first object: 674 375 683 375 684 394 675 395 -> min/max of the corners
    assert np.allclose(ib.boxes[0], [674, 375, 684, 395])


def test_vector_labels_reprojected_to_pixels(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    img = geotiff(tmp_path / "a.tif")
    # a 2 m x 1 m box at 1 m east, 2 m south of the origin, written in WGS 84
    g = gpd.GeoDataFrame({"kind": ["car"]}, geometry=[box(404001, 3284997, 404003, 3284998)], crs="EPSG:32617")
    g.to_crs("EPSG:4326").to_file(tmp_path / "l.gpkg")
    (ib,), names = load_boxes([tmp_path / "l.gpkg"], [image_info(str(img))], label_field="kind")
    assert names == ["car"]
    np.testing.assert_allclose(ib.boxes[0], [10, 20, 30, 30], atol=0.3)


def test_a_layer_of_one_kind_of_object_needs_no_class_field(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    img = geotiff(tmp_path / "a.tif")
    fields = {f"osm_field_{i}": ["x", "x"] for i in range(14)}  # like an OSM export: many fields, no class
    g = gpd.GeoDataFrame(fields, geometry=[box(404001, 3284997, 404003, 3284998), box(404005, 3284995, 404006,
                                                                                     3284996)], crs="EPSG:32617")
    g.to_file(tmp_path / "buildings.gpkg")
    (ib,), names = load_boxes([tmp_path / "buildings.gpkg"], [image_info(str(img))], label_field="none")
    assert names == ["object"] and len(ib.boxes) == 2
    msg = _one_line_error(lambda: load_boxes([tmp_path / "buildings.gpkg"], [image_info(str(img))]))
    assert "has no field 'label'" in msg and "--label-field none for one class" in msg and "(and 8 more)" in msg


def _one_line_error(fn) -> str:
    with pytest.raises(InvalidLabelsError) as err:
        fn()
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 300
    return msg


def test_bad_labels_raise_one_line_errors(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    img = geotiff(tmp_path / "a.tif")
    info = [image_info(str(img))]
    # box outside the image
    (tmp_path / "out.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\na.tif,500,500,520,520,Tree\n")
    assert "outside" in _one_line_error(lambda: load_boxes([tmp_path / "out.csv"], info))
    # inverted box
    (tmp_path / "inv.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\na.tif,20,20,10,30,Tree\n")
    assert "inverted" in _one_line_error(lambda: load_boxes([tmp_path / "inv.csv"], info))
    # empty file and header-only file
    (tmp_path / "empty.csv").write_text("")
    assert "empty" in _one_line_error(lambda: load_boxes([tmp_path / "empty.csv"], info))
    (tmp_path / "head.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\n")
    assert "no boxes" in _one_line_error(lambda: load_boxes([tmp_path / "head.csv"], info))
    # unknown class
    (tmp_path / "ok.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\na.tif,10,10,30,30,Shrub\n")
    assert "Shrub" in _one_line_error(lambda: load_boxes([tmp_path / "ok.csv"], info, classes=["Tree"]))
    # labels for an image that is not given
    (tmp_path / "other.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\nb.tif,10,10,30,30,Tree\n")
    assert "b.tif" in _one_line_error(lambda: load_boxes([tmp_path / "other.csv"], info))
    # vector: no CRS, unknown field, wrong place (CRS mix-up: UTM numbers tagged as WGS 84)
    shape = box(404001, 3284997, 404003, 3284998)
    gpd.GeoDataFrame({"label": ["car"]}, geometry=[shape]).to_file(tmp_path / "nocrs.shp")
    assert "no CRS" in _one_line_error(lambda: load_boxes([tmp_path / "nocrs.shp"], info))
    # GeoJSON is WGS 84 by definition: UTM numbers in it cannot be reprojected
    gpd.GeoDataFrame({"label": ["car"]}, geometry=[shape]).to_file(tmp_path / "utm.geojson")
    assert "CRS" in _one_line_error(lambda: load_boxes([tmp_path / "utm.geojson"], info))
    gpd.GeoDataFrame({"kind": ["car"]}, geometry=[shape], crs="EPSG:32617").to_file(tmp_path / "f.gpkg")
    assert "kind" in _one_line_error(lambda: load_boxes([tmp_path / "f.gpkg"], info, label_field="class"))
    gpd.GeoDataFrame({"label": ["car"]}, geometry=[box(-80.1, 29.6, -80.0, 29.7)], crs="EPSG:4326").to_file(
        tmp_path / "far.gpkg")
    assert "overlaps" in _one_line_error(lambda: load_boxes([tmp_path / "far.gpkg"], info))
    # malformed VOC
    (tmp_path / "a.xml").write_text("<annotation><object><name>x</name></annotation")
    _one_line_error(lambda: load_boxes([tmp_path / "a.xml"], info))
