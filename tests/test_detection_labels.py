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


def _as_coco(ib, names: list[str], file_name: str) -> dict:
    """A COCO document of one image's boxes (categories numbered from 1, as COCO does)."""
    cats = {n: i + 1 for i, n in enumerate(names)}
    anns = [{"id": k, "image_id": 7, "category_id": cats[n], "bbox": [float(b[0]), float(b[1]),
             float(b[2] - b[0]), float(b[3] - b[1])], "iscrowd": 0, "area": 1.0}
            for k, (b, n) in enumerate(zip(ib.boxes, ib.names, strict=True))]
    return {"info": {}, "images": [{"id": 7, "file_name": file_name, "width": ib.width, "height": ib.height}],
            "annotations": anns, "categories": [{"id": i, "name": n} for n, i in cats.items()]}


def _as_yolo(ib, names: list[str]) -> str:
    """YOLO lines of one image's boxes (fractions of the image size)."""
    rows = []
    for b, n in zip(ib.boxes, ib.names, strict=True):
        cx, cy = (b[0] + b[2]) / 2 / ib.width, (b[1] + b[3]) / 2 / ib.height
        w, h = (b[2] - b[0]) / ib.width, (b[3] - b[1]) / ib.height
        rows.append(f"{names.index(n)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return "\n".join(rows) + "\n"


@needs_data
def test_coco_and_yolo_files_give_the_voc_boxes(tmp_path):
    """DOTA's two-class sample written as COCO and as YOLO (with the dataset's data.yaml two folders up) gives
    the same boxes and class names as the DOTA file it came from."""
    import json

    info = [image_info(str(DOTA / "images" / "P1888.png"))]
    (ref,), names = load_boxes([DOTA / "labelTxt" / "P1888.txt"], info)
    (tmp_path / "instances.json").write_text(json.dumps(_as_coco(ref, names, "images/P1888.png")))
    (coco,), coco_names = load_boxes([tmp_path / "instances.json"], info)
    assert coco_names == names and coco.names == ref.names
    np.testing.assert_allclose(coco.boxes, ref.boxes, atol=1e-3)

    labels = tmp_path / "yolo" / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "P1888.txt").write_text(_as_yolo(ref, names))
    (labels / "P0000.txt").write_text("")  # an image without objects: no boxes, no error
    (tmp_path / "yolo" / "data.yaml").write_text("path: .\ntrain: images/train\nnames:\n  0: " + names[0]
                                                 + "\n  1: " + names[1] + "\n")
    (yolo,), yolo_names = load_boxes([labels / "P1888.txt", labels / "P0000.txt"], info)
    assert yolo_names == names and yolo.names == ref.names
    np.testing.assert_allclose(yolo.boxes, ref.boxes, atol=0.02)
    # without a names file, the class ids are the names
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "P1888.txt").write_text(_as_yolo(ref, names))
    (bare,), bare_names = load_boxes([tmp_path / "bare" / "P1888.txt"], info)
    assert bare_names == ["0", "1"] and len(bare.boxes) == len(ref.boxes)


def test_a_geojson_with_an_images_field_stays_a_vector_file(tmp_path):
    """COCO is told from GeoJSON by content: a FeatureCollection is read as a vector layer."""
    import geopandas as gpd
    from shapely.geometry import box

    img = geotiff(tmp_path / "a.tif")
    gpd.GeoDataFrame({"label": ["car"], "images": ["x"]}, geometry=[box(404001, 3284997, 404003, 3284998)],
                     crs="EPSG:32617").to_file(tmp_path / "cars.json", driver="GeoJSON")
    (ib,), names = load_boxes([tmp_path / "cars.json"], [image_info(str(img))])
    assert names == ["car"] and len(ib.boxes) == 1


def test_bad_coco_and_yolo_files_raise_one_line_errors(tmp_path):
    img = geotiff(tmp_path / "a.tif")
    info = [image_info(str(img))]
    coco = {"images": [{"id": 1, "file_name": "a.tif"}], "categories": [{"id": 1, "name": "car"}],
            "annotations": [{"image_id": 2, "bbox": [1, 1, 5, 5], "category_id": 1}]}
    import json

    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert "image_id 2" in _one_line_error(lambda: load_boxes([tmp_path / "c.json"], info))
    coco["annotations"] = [{"image_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]], "category_id": 1}]
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert "bbox" in _one_line_error(lambda: load_boxes([tmp_path / "c.json"], info))
    coco["annotations"] = [{"image_id": 1, "bbox": [1, 1, 5, 5], "category_id": 9}]
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert "category_id 9" in _one_line_error(lambda: load_boxes([tmp_path / "c.json"], info))
    (tmp_path / "c.json").write_text('{"images": [1, 2')
    assert "JSON" in _one_line_error(lambda: load_boxes([tmp_path / "c.json"], info))
    # YOLO: pixel numbers where fractions belong; a class the names file does not name
    (tmp_path / "a.txt").write_text("0 50 40 10 10\n")
    assert "fractions" in _one_line_error(lambda: load_boxes([tmp_path / "a.txt"], info))
    (tmp_path / "classes.txt").write_text("car\n")
    (tmp_path / "a.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    assert "class 3" in _one_line_error(lambda: load_boxes([tmp_path / "a.txt"], info))
    # only empty label files: no boxes at all
    (tmp_path / "a.txt").write_text("")
    assert "no boxes" in _one_line_error(lambda: load_boxes([tmp_path / "a.txt"], info))


def test_info_describes_box_label_files_and_tells_a_box_csv_from_a_points_table(tmp_path):
    from geocamat.describe import describe

    for name, fmt in (("OSBS_029.csv", "DeepForest CSV"), ("OSBS_029.xml", "Pascal VOC")):
        info = describe(TREES / name)  # were refused ("no coordinate columns", "neither a raster, a vector ...")
        assert info["format"] == fmt and info["boxes"] == 61 and info["classes"] == {"Tree": 61}
    dota = describe(DOTA / "labelTxt" / "P1888.txt")
    assert dota["format"] == "DOTA" and dota["boxes"] == sum(dota["classes"].values()) > 0
    (tmp_path / "plots.csv").write_text("plot,lon,lat,class\n1,-78.6,35.7,forest\n")
    assert describe(tmp_path / "plots.csv")["kind"] == "points table"


def test_a_layer_is_read_around_images_in_two_crs_only(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    from geocamat.data.boxes import images_ground
    from geocamat.data.vector_layers import read_vector

    a = geotiff(tmp_path / "a.tif")  # UTM 17N, (404000, 3285000), 10 m x 8 m
    b = geotiff(tmp_path / "b.tif", crs="EPSG:32618")  # the same numbers in UTM 18N: ~600 km east
    near_a = gpd.GeoDataFrame({"label": ["car"]}, geometry=[box(404001, 3284997, 404003, 3284998)], crs="EPSG:32617")
    near_b = gpd.GeoDataFrame({"label": ["bus"]}, geometry=[box(404004, 3284996, 404006, 3284997)],
                              crs="EPSG:32618").to_crs("EPSG:32617")
    far = gpd.GeoDataFrame({"label": ["far"] * 50}, geometry=[box(300000 + 100 * i, 3000000, 300010 + 100 * i,
                                                                    3000010) for i in range(50)], crs="EPSG:32617")
    gpd.GeoDataFrame(gpd.pd.concat([near_a, near_b, far], ignore_index=True), crs="EPSG:32617").to_file(
        tmp_path / "boxes.gpkg")
    infos = [image_info(str(a)), image_info(str(b))]
    assert len(images_ground(infos)) == 2
    part = read_vector(tmp_path / "boxes.gpkg", within=images_ground(infos))
    assert sorted(part.label) == ["bus", "car"] and part.attrs["layer_features"] == 52  # the far ones not read
    found, names = load_boxes([tmp_path / "boxes.gpkg"], infos)
    assert names == ["bus", "car"] and [f.names for f in found] == [["car"], ["bus"]]


@needs_data
def test_label_files_as_other_tools_write_them(tmp_path):
    """Excel's CSV UTF-8 (byte-order mark), DeepForest's rows of zeros for an image without objects, YOLO-OBB
    corners: the same boxes as the plain files. Boxes drawn on another size of the image, and points instead of
    boxes, are refused in one line."""
    import json

    import pandas as pd

    info = [image_info(str(TREES / "OSBS_029.tif")), image_info(str(TREES / "SOAP_061.png"))]
    (ref, _), names = load_boxes([TREES / "OSBS_029.csv"], info)
    table = pd.read_csv(TREES / "OSBS_029.csv")
    empty_row = pd.DataFrame([{"image_path": "SOAP_061.png", "xmin": 0, "ymin": 0, "xmax": 0, "ymax": 0,
                               "label": "Tree"}])
    pd.concat([table, empty_row]).to_csv(tmp_path / "excel.csv", index=False, encoding="utf-8-sig")
    (bom, soap), bom_names = load_boxes([tmp_path / "excel.csv"], info)
    assert bom_names == names and len(soap.boxes) == 0
    np.testing.assert_array_equal(bom.boxes, ref.boxes)

    obb = tmp_path / "obb" / "OSBS_029.txt"
    obb.parent.mkdir()
    w, h = ref.width, ref.height
    obb.write_text("".join(f"0 {x0 / w} {y0 / h} {x1 / w} {y0 / h} {x1 / w} {y1 / h} {x0 / w} {y1 / h}\n"
                           for x0, y0, x1, y1 in ref.boxes))
    (obb.parent / "classes.txt").write_text("Tree\n")
    (from_obb, _), obb_names = load_boxes([obb], info)
    assert obb_names == names
    np.testing.assert_allclose(from_obb.boxes, ref.boxes, atol=1e-3)

    coco = {"images": [{"id": 1, "file_name": "OSBS_029.tif", "width": w // 2, "height": h // 2}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
            "categories": [{"id": 1, "name": "Tree"}]}
    (tmp_path / "half.json").write_text(json.dumps(coco))
    with pytest.raises(InvalidLabelsError, match=rf"boxes of OSBS_029.tif were drawn on a {w // 2}x{h // 2} px image "
                                                 rf".* but OSBS_029.tif is {w}x{h} px"):
        load_boxes([tmp_path / "half.json"], info)
    voc = (TREES / "OSBS_029.xml").read_text().replace(f"<width>{w}</width>", f"<width>{w * 2}</width>")
    assert f"<width>{w * 2}</width>" in voc
    (tmp_path / "double.xml").write_text(voc)
    with pytest.raises(InvalidLabelsError, match=rf"drawn on a {w * 2}x{h} px image"):
        load_boxes([tmp_path / "double.xml"], info)

    import geopandas as gpd

    tops = gpd.GeoSeries(gpd.points_from_xy([404_005.0, 404_008.0], [3_285_000.0 - 5, 3_285_000.0 - 7]),
                         crs="EPSG:32617")
    gpd.GeoDataFrame({"label": ["Tree", "Tree"]}, geometry=tops).to_file(tmp_path / "tops.gpkg")
    with pytest.raises(InvalidLabelsError, match=r"tops.gpkg: 2 of its 2 features are Point, not areas: .*buffer "
                                                 r"the points"):
        load_boxes([tmp_path / "tops.gpkg"], [image_info(str(geotiff(tmp_path / "a.tif")))])
