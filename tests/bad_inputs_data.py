"""The files of the bad-input table (tests/test_bad_inputs.py): tiny rasters and layers, each wrong in one way."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.conftest import write_raster

SIZE = 64


def _scene_arrays(rng) -> tuple[np.ndarray, np.ndarray]:
    labels = np.ones((SIZE, SIZE), dtype=np.uint8)
    labels[:, SIZE // 2:] = 2
    image = np.where(labels == 1, 50.0, 150.0)[None].repeat(3, axis=0) + rng.normal(0, 5, (3, SIZE, SIZE))
    return image.astype("float32"), labels


def _tiled(path: Path, array: np.ndarray, **kw) -> Path:
    """A tiled, deflated GeoTIFF (blocks at the end of the file, as GDAL writes them)."""
    import rasterio
    from rasterio.transform import from_origin

    profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0],
                   dtype=array.dtype.name, crs="EPSG:32617", transform=from_origin(500000.0, 4000000.0, 10.0, 10.0),
                   tiled=True, blockxsize=16, blockysize=16, compress="deflate", **kw)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def _truncate(src: Path, dst: Path, keep: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _no_crs(path: Path, array: np.ndarray) -> Path:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0],
                       dtype=array.dtype.name) as dst:
        dst.write(array)
    return path


def _polygons(path: Path, crs: str | None = "EPSG:32617", where=(500000.0, 4000000.0), bowtie: bool = False,
              names=("field", "wood"), layer: str | None = None, codes=(1, 2)) -> Path:
    import geopandas as gpd
    from shapely.geometry import Polygon, box

    x0, y1 = where
    half = SIZE * 10 / 2
    left = box(x0 + 20, y1 - SIZE * 10 + 20, x0 + half - 20, y1 - 20)
    right = box(x0 + half + 20, y1 - SIZE * 10 + 20, x0 + SIZE * 10 - 20, y1 - 20)
    if bowtie:  # self-intersecting
        left = Polygon([(x0 + 20, y1 - 20), (x0 + half - 20, y1 - SIZE * 10 + 20), (x0 + half - 20, y1 - 20),
                        (x0 + 20, y1 - SIZE * 10 + 20)])
    frame = gpd.GeoDataFrame({"cls": list(names), "code": list(codes)}, geometry=[left, right], crs=crs)
    if crs is None:
        frame.to_file(path, driver="ESRI Shapefile")
    else:
        frame.to_file(path, layer=layer)
    return path


def _scene_folder(root: Path) -> Path:
    """A scene-classification folder: two classes of four small RGB JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / name / f"{i}.jpg")
    return root


def make_inputs(d: Path) -> dict[str, Path]:
    """Write every input file of the table into ``d``; return them by name."""
    rng = np.random.default_rng(0)
    image, labels = _scene_arrays(rng)
    image[:, :4, :] = -9999.0
    f: dict[str, Path] = {}
    f["scene"] = _tiled(d / "scene.tif", image, nodata=-9999.0)
    f["labels"] = write_raster(d / "labels.tif", labels, nodata=0)
    f["trunc"] = _truncate(f["scene"], d / "truncated.tif")
    f["complex"] = _tiled(d / "complex.tif", image.astype(np.complex64))  # a SAR SLC
    f["trunc_labels"] = _truncate(_tiled(d / "labels_tiled.tif", labels[None], nodata=0), d / "truncated_labels.tif")
    f["garbage"] = d / "garbage.tif"
    f["garbage"].write_bytes(b"II*\x00" + rng.bytes(2000))
    f["nocrs"] = _no_crs(d / "nocrs.tif", image)
    f["nocrs_labels"] = _no_crs(d / "nocrs_labels.tif", labels[None])
    f["far_labels"] = write_raster(d / "far_labels.tif", labels, origin=(900000.0, 100000.0), nodata=0)
    f["one_class"] = write_raster(d / "one_class.tif", np.full((SIZE, SIZE), 3, "uint8"), nodata=0)
    palette = np.array([[0, 0, 0], [215, 25, 28], [26, 120, 55], [43, 131, 186]], "uint8")  # the classes' colours
    f["rgb_labels"] = write_raster(d / "rendered_labels.tif", np.moveaxis(palette[labels % 4], -1, 0))
    f["other_codes"] = write_raster(d / "other_codes.tif", (labels * 10).astype("uint8"), nodata=0)
    f["float_labels"] = write_raster(d / "float_labels.tif", labels.astype("float32") + 0.5, nodata=0)
    f["nodata"] = write_raster(d / "all_nodata.tif", np.full((3, SIZE, SIZE), -9999.0, "float32"), nodata=-9999.0)
    f["nodata_map"] = write_raster(d / "nodata_map.tif", np.zeros((SIZE, SIZE), "uint8"), nodata=0)
    f["two_band"] = write_raster(d / "two_band.tif", image[:2], nodata=-9999.0)
    f["coarse"] = write_raster(d / "coarse_100m.tif", image, res=100.0, nodata=-9999.0)
    f["fine"] = write_raster(d / "fine_1m.tif", image, res=1.0, nodata=-9999.0)
    bands = d / "bands"
    bands.mkdir()
    for b in range(2):
        write_raster(bands / f"b{b + 1}.tif", image[b], nodata=-9999.0)
    write_raster(bands / "b3.tif", image[2], origin=(500005.0, 4000000.0), nodata=-9999.0)  # half a pixel off
    f["bands"] = bands
    f["scenes_mixed"], f["scenes_broken"] = _scene_folder(d / "scenes_mixed"), _scene_folder(d / "scenes_broken")
    write_raster(d / "scenes_mixed" / "a" / "rgbn.tif", np.ones((4, 20, 20), "uint16"))  # 4 bands among RGB
    (d / "scenes_broken" / "b" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    f["polygons"] = _polygons(d / "polygons.gpkg")
    f["bowtie"] = _polygons(d / "bowtie.gpkg", bowtie=True)
    f["far_polygons"] = _polygons(d / "far_polygons.gpkg", where=(900000.0, 100000.0))
    f["nocrs_polygons"] = _polygons(d / "nocrs_polygons.shp", crs=None)
    f["odd_classes"] = _polygons(d / "odd_classes.gpkg", names=("lake", "moon"))
    f["minus_one"] = _polygons(d / "minus_one.gpkg", codes=(-1, 0))
    for layer in ("aoi", "training"):  # a QGIS-style GeoPackage: the AOI beside the training polygons
        f["layers"] = _polygons(d / "layers.gpkg", layer=layer)
    import geopandas as gpd

    empty = gpd.GeoDataFrame({"cls": []}, geometry=[], crs="EPSG:32617")
    f["empty_polygons"] = d / "empty.gpkg"
    empty.to_file(f["empty_polygons"])
    f["not_a_bundle"] = d / "broken.geocamat"
    f["not_a_bundle"].write_bytes(b"not a bundle")
    f["notes"] = d / "notes.txt"
    f["notes"].write_text("a user's file\n")
    f["boxes"] = d / "boxes.csv"
    f["boxes"].write_text("image_path,xmin,ymin,xmax,ymax,label\nscene.tif,5,5,20,20,tree\n"
                          "truncated.tif,5,5,20,20,tree\nall_nodata.tif,5,5,20,20,tree\n")
    for key, image in (("trunc_boxes", "truncated.tif"), ("two_band_boxes", "two_band.tif")):
        f[key] = d / f"{key}.csv"
        f[key].write_text(f"image_path,xmin,ymin,xmax,ymax,label\n{image},5,5,20,20,Tree\n")
    f["plots_xy"] = d / "plots_xy.csv"  # projected coordinates, no .prj to place them
    f["plots_xy"].write_text("plot,x,y,cls\n1,500050,3999950,field\n2,500150,3999950,wood\n")
    f["dbf"] = d / "reference.dbf"
    f["dbf"].write_bytes(b"not a dataset")
    return f


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
