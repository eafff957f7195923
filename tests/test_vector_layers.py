"""A layer of a vector file with several (FILE:LAYER): read where named, refused where not, everywhere a vector
path is taken (land-use labels and references, detection labels, regions, labelled areas, YAML settings)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio

from geocamat.data.boxes import expand_label_paths, load_boxes
from geocamat.data.detection_images import image_info
from geocamat.data.labels import grid_of_dataset, labels_on_grid
from geocamat.data.stack import open_stack
from geocamat.data.vector_layers import VectorSource, parse_source, read_vector, spatial_layers
from geocamat.errors import ConfigError, InputNotFoundError, InvalidLabelsError
from geocamat.inference.grid import load_region
from geocamat.settings import read_yaml
from tests.conftest import SAMPLES, SHARED_DATA

NC = SAMPLES / "nc_landsat"
SHARED_NC = SHARED_DATA / "nc_landsat7_landcover"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A QGIS-style GeoPackage: an AOI first, the training polygons, the points, and QGIS's style table."""
    import geopandas as gpd
    from shapely.geometry import box

    folder = tmp_path_factory.mktemp("layers")
    polygons = gpd.read_file(SHARED_NC / "landsat96_polygons.shp")
    points = gpd.read_file(SHARED_NC / "landsat96_points.shp")
    path = folder / "project.gpkg"
    aoi = gpd.GeoDataFrame({"name": ["aoi"]}, geometry=[box(*polygons.total_bounds)], crs=polygons.crs)
    aoi.to_file(path, layer="aoi")
    polygons.to_file(path, layer="training")
    points.to_file(path, layer="points")
    pyogrio.write_dataframe(pd.DataFrame({"styleName": ["default"]}), path, layer="layer_styles", driver="GPKG")
    polygons.to_file(folder / "training.gpkg")  # the same layer alone in its file
    return path


def test_paths_name_their_layer_and_keep_other_colons(tmp_path, project):
    assert parse_source(f"{project}:training") == VectorSource(project, "training")
    assert parse_source(f"{project}|layername=points|subset=x") == VectorSource(project, "points", "x")
    assert parse_source(project) == VectorSource(project, None)
    odd = tmp_path / "a:b.gpkg"  # a file whose own name holds a colon stays a file
    odd.write_bytes(b"")
    assert parse_source(odd) == VectorSource(odd, None)
    assert parse_source("C:/data/scene.tif") == VectorSource(Path("C:/data/scene.tif"), None)
    assert str(parse_source(f"{project}:aoi")) == f"{project}:aoi"
    assert parse_source(f"{project}:plots:2024") == VectorSource(project, "plots:2024")  # a colon in the layer name
    assert parse_source(tmp_path / "x.shp.zip:crowns") == VectorSource(tmp_path / "x.shp.zip", "crowns")


def test_tables_without_geometry_are_not_layers_to_choose(project):
    assert spatial_layers(project) == ["aoi", "training", "points"]
    assert "layer_styles" in [name for name, _ in pyogrio.list_layers(project)]
    from geocamat.describe import describe

    info = describe(project)  # `geocamat info`: every layer with its geometry and count, the first described
    assert info["layers"][1] == {"name": "training", "geometry": "Polygon", "features": 34}
    assert info["layer"] == "aoi" and "project.gpkg:training" in info["note"]
    assert describe(f"{project}:points")["features"] == 1000
    filtered = describe(f"{project}|layername=points|subset=label = 'water'")  # info shows what geocamat reads
    assert filtered["filter"] == "label = 'water'" and 0 < filtered["features"] == len(
        read_vector(f"{project}|layername=points|subset=label = 'water'")) < 1000


def test_the_named_layer_is_read_and_an_unnamed_one_is_refused_with_the_layers_to_choose(project):
    assert len(read_vector(f"{project}:points")) == 1000
    assert read_vector(f"{project}:aoi").columns.tolist() == ["name", "geometry"]
    expected = (r"holds 3 layers \(aoi, training, points; training, points have the field 'label'\): name the one to "
                r"use as .*project.gpkg:training")
    with pytest.raises(InvalidLabelsError, match=expected):
        read_vector(project, field="label")
    with pytest.raises(ConfigError, match="no layer 'roads': its layers are aoi, training, points"):
        read_vector(f"{project}:roads", error=ConfigError)
    with pytest.raises(InputNotFoundError, match="nothing.gpkg"):
        read_vector(f"{project.parent / 'nothing.gpkg'}:aoi")


def test_land_use_labels_from_a_layer_equal_those_from_its_own_file(tmp_path, project):
    stack = open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path)
    grid = grid_of_dataset(stack.dataset())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    named = labels_on_grid(f"{project}:training", grid, tmp_path / "a", field="label")
    alone = labels_on_grid(project.parent / "training.gpkg", grid, tmp_path / "b", field="label")
    assert named.class_ids == alone.class_ids and named.names == alone.names
    with rasterio.open(named.path) as a, rasterio.open(alone.path) as b:
        assert np.array_equal(a.read(1), b.read(1)) and (a.read(1) >= 0).sum() > 1000
    with pytest.raises(InvalidLabelsError, match="holds 3 layers"):
        labels_on_grid(project, grid, tmp_path, field="label")


def test_regions_and_detection_labels_take_a_layer(tmp_path, project):
    import geopandas as gpd
    from shapely.geometry import box

    (name, aoi), = load_region(f"{project}:aoi", "EPSG:3358")
    assert name is None and aoi.area == pytest.approx(gpd.read_file(project, layer="aoi").area[0])
    with pytest.raises(ConfigError, match="region file project.gpkg holds 3 layers"):
        load_region(project, "EPSG:3358")
    # detection: boxes drawn in a layer of a GeoPackage over a georeferenced image
    image = NC / "lsat7_2000_10.tif"
    with rasterio.open(image) as src:
        left, top = src.transform @ (10, 10)
        right, bottom = src.transform @ (30, 25)
    boxes = gpd.GeoDataFrame({"label": ["pond"]}, geometry=[box(left, bottom, right, top)],
                             crs="EPSG:32119")
    trees = tmp_path / "objects.gpkg"
    boxes.to_file(trees, layer="ponds")
    gpd.read_file(project, layer="aoi").to_file(trees, layer="aoi")
    spec = f"{trees}:ponds"
    assert expand_label_paths([spec]) == [spec]
    (found,), names = load_boxes(expand_label_paths([spec]), [image_info(str(image))])
    assert names == ["pond"] and np.allclose(found.boxes, [[10, 10, 30, 25]], atol=0.01)
    with pytest.raises(InvalidLabelsError, match="holds 2 layers"):
        load_boxes([trees], [image_info(str(image))])


def test_layers_in_a_yaml_file_are_found_beside_it(tmp_path, project):
    config = project.parent / "run.yaml"
    config.write_text("labels: project.gpkg:training\nlabelled_area: project.gpkg:aoi\nimages: [scene.tif]\n")
    loaded = read_yaml(config)
    assert parse_source(loaded["labels"]) == VectorSource(project, "training")
    assert parse_source(loaded["labelled_area"]) == VectorSource(project, "aoi")  # was left relative to the cwd


def test_a_zipped_shapefile_is_read_as_the_shapefile(tmp_path):
    import zipfile

    from geocamat.data.vector_layers import is_vector

    archive = tmp_path / "polygons.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for part in sorted(SHARED_NC.glob("landsat96_polygons.*")):
            z.write(part, part.name)
    assert is_vector(archive) and is_vector(f"{archive}:landsat96_polygons")
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as z:
        z.write(NC / "strata.tif", "strata.tif")
    assert not is_vector(tmp_path / "images.zip")
    grid = grid_of_dataset(open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path).dataset())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    zipped = labels_on_grid(archive, grid, tmp_path / "a", field="label")  # was refused as a corrupt raster
    plain = labels_on_grid(SHARED_NC / "landsat96_polygons.shp", grid, tmp_path / "b", field="label")
    with rasterio.open(zipped.path) as a, rasterio.open(plain.path) as b:
        assert zipped.names == plain.names and np.array_equal(a.read(1), b.read(1))


def test_only_the_part_of_a_layer_over_the_imagery_is_read_and_it_burns_the_same(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    grid = grid_of_dataset(open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path).dataset())
    with rasterio.open(NC / "lsat7_2000_10.tif") as src:
        left, bottom, right, top = src.bounds
    xs = np.arange(left - 20_000, right + 20_000, 400.0)  # a layer spreading far beyond the scene
    squares = [box(x, y, x + 200, y + 200) for x in xs for y in np.arange(bottom - 20_000, top + 20_000, 400.0)]
    layer = gpd.GeoDataFrame({"cls": ["field", "wood"] * (len(squares) // 2) + ["field"] * (len(squares) % 2)},
                             geometry=squares, crs="EPSG:32119")
    layer.to_file(tmp_path / "region.gpkg")
    part = read_vector(tmp_path / "region.gpkg", within=((left, bottom, right, top), "EPSG:32119"))
    assert part.attrs["layer_features"] == len(layer) and len(part) < len(layer) / 5
    inside = layer[layer.intersects(box(left, bottom, right, top))]
    assert set(inside.geometry.to_wkb()) <= set(part.geometry.to_wkb())  # every feature on the scene is read
    grown = box(left, bottom, right, top).buffer(0.02 * (right - left) + 400)
    assert part.geometry.intersects(grown).all()  # and none far from it
    (tmp_path / "a").mkdir()
    labels = labels_on_grid(tmp_path / "region.gpkg", grid, tmp_path / "a", field="cls")
    from rasterio.features import rasterize

    codes = {"field": 1, "wood": 2}
    expected = rasterize(((g, codes[c]) for g, c in zip(layer.geometry, layer.cls, strict=True)),
                         out_shape=grid.shape, transform=grid.transform, fill=-1, dtype="int32")
    with rasterio.open(labels.path) as src:
        assert np.array_equal(src.read(1), expected)
    far = layer.translate(xoff=500_000)
    far.to_file(tmp_path / "far.gpkg")
    with pytest.raises(InvalidLabelsError, match=f"none of its {len(layer)} features meets it"):
        labels_on_grid(tmp_path / "far.gpkg", grid, tmp_path, field="cls")


def test_geoparquet_without_pyarrow_says_how_to_read_it(tmp_path, monkeypatch):
    import geopandas as gpd

    def no_pyarrow(*args, **kwargs):
        raise ImportError("Missing optional dependency 'pyarrow.parquet'")

    monkeypatch.setattr(gpd, "read_parquet", no_pyarrow)
    (tmp_path / "parcels.parquet").write_bytes(b"PAR1")
    with pytest.raises(InvalidLabelsError, match=r"parcels.parquet is GeoParquet, which needs pyarrow: `pip install "
                                                 r"pyarrow`, or convert it \(ogr2ogr parcels.gpkg parcels.parquet\)"):
        read_vector(tmp_path / "parcels.parquet")


def test_a_qgis_layer_filter_reads_the_features_qgis_shows(tmp_path, project):
    spec = f"{project}|layername=training|subset=\"label\" IN ('forest', 'water')"
    assert parse_source(spec) == VectorSource(project, "training", "\"label\" IN ('forest', 'water')")
    frame = read_vector(spec)
    assert set(frame.label) == {"forest", "water"} and 0 < len(frame) < 34
    assert len(read_vector(f"{project.parent / 'training.gpkg'}|subset=label = 'forest'")) == (frame.label ==
                                                                                              "forest").sum()
    with pytest.raises(InvalidLabelsError, match="the filter 'klass = 1' cannot be applied .*no such column: klass"):
        read_vector(f"{project}|layername=training|subset=klass = 1")


def test_a_layer_filter_applies_to_csv_and_parquet_tables_as_gdal_applies_it(tmp_path, project, monkeypatch):
    import geopandas as gpd

    points = gpd.read_file(project, layer="points")
    clause = "\"label\" IN ('forest', 'water') AND id > 2"
    by_gdal = read_vector(f"{project}|layername=points|subset={clause}")
    assert 0 < len(by_gdal) < len(points)
    lonlat = points.to_crs("EPSG:4326")
    table = pd.DataFrame({"lon": lonlat.geometry.x, "lat": lonlat.geometry.y, "label": points.label, "id": points.id})
    table.to_csv(tmp_path / "plots.csv", index=False)
    by_table = read_vector(f"{tmp_path / 'plots.csv'}|subset={clause}")
    assert list(by_table.label) == list(by_gdal.label) and list(by_table.id) == list(by_gdal.id)
    assert len(read_vector(f"{tmp_path / 'plots.csv'}|subset=label LIKE 'FOR%'")) == (points.label == "forest").sum()
    with pytest.raises(InvalidLabelsError, match=r"plots.csv: the filter 'klass = 1' cannot be applied \(no such "
                                                 r"column: klass\): .*columns \(label, id\)"):
        read_vector(f"{tmp_path / 'plots.csv'}|subset=klass = 1")
    monkeypatch.setattr(gpd, "read_parquet", lambda path: points.copy())  # no pyarrow here: the frame it would read
    (tmp_path / "plots.parquet").write_bytes(b"PAR1")
    by_parquet = read_vector(f"{tmp_path / 'plots.parquet'}|subset={clause}")
    assert list(by_parquet.id) == list(by_gdal.id) and by_parquet.crs == points.crs


def test_none_of_a_filtered_layer_meets_the_scene_counts_the_features_the_filter_keeps(tmp_path, project):
    import geopandas as gpd

    polygons = gpd.read_file(project, layer="training")
    polygons.assign(geometry=polygons.translate(xoff=500_000)).to_file(tmp_path / "far.gpkg")
    left, bottom, right, top = polygons.total_bounds
    within = ((left, bottom, right, top), polygons.crs)
    far = read_vector(f"{tmp_path / 'far.gpkg'}|subset=label = 'water'", within=within)
    assert far.empty and far.attrs["layer_features"] == (polygons.label == "water").sum() < len(polygons)
    near = read_vector(f"{project}|layername=training|subset=label = 'water'", within=within)
    assert len(near) == near.attrs["layer_features"] == (polygons.label == "water").sum()


def test_a_layer_or_a_file_per_class_with_label_field_layer(tmp_path, project):
    import geopandas as gpd

    polygons = gpd.read_file(project, layer="training")
    per_class = tmp_path / "classes.gpkg"
    for name, group in polygons.groupby("label"):
        group[["id", "geometry"]].to_file(per_class, layer=name)  # no class field: the layer is the class
        group[["id", "geometry"]].to_file(tmp_path / f"{name}.shp")
    grid = grid_of_dataset(open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path).dataset())
    burnt = {}
    for key, labels, field in (("field", project.parent / "training.gpkg", "label"), ("layers", per_class, "layer"),
                               ("files", sorted(str(p) for p in tmp_path.glob("*.shp")), "layer")):
        (tmp_path / key).mkdir()
        result = labels_on_grid(labels, grid, tmp_path / key, field=field)
        with rasterio.open(result.path) as src:
            burnt[key] = (result.names, src.read(1))
    assert burnt["layers"][0] == burnt["field"][0] == burnt["files"][0]  # the same classes, the same codes
    assert np.array_equal(burnt["layers"][1], burnt["field"][1])
    assert np.array_equal(burnt["files"][1], burnt["field"][1])
    # QGIS's Merge vector layers keeps each feature's layer in a `layer` field: that field is the class
    merged = polygons.rename(columns={"label": "layer"})
    merged.to_file(tmp_path / "merged.gpkg")
    (tmp_path / "merged").mkdir()
    assert labels_on_grid(tmp_path / "merged.gpkg", grid, tmp_path / "merged", field="layer").names == \
        burnt["field"][0]
    with pytest.raises(InvalidLabelsError, match="a layer per class: --label-field layer"):
        labels_on_grid(per_class, grid, tmp_path, field="label")


def test_info_check_reads_a_layer_per_class(tmp_path, project):
    import geopandas as gpd

    from geocamat.bundle import Bundle, ClassInfo
    from geocamat.check import check_against_bundle

    polygons = gpd.read_file(project, layer="training")
    per_class = tmp_path / "classes.gpkg"
    for name, group in polygons.groupby("label"):
        group[["geometry"]].to_file(per_class, layer=name)
    names = sorted(polygons.label.unique())
    bundle = tmp_path / "model.geocamat"
    Bundle(task="landuse", model={"name": "camnet", "in_channels": 1, "num_classes": len(names), "tile_size": 16,
                                  "arch": "camnet-xs"}, state_dict={}, bands=["b1"], mean=[0.0], std=[1.0],
           classes=[ClassInfo(i + 1, n, "#808080") for i, n in enumerate(names)], tile_size=16).save(bundle)
    image = str(NC / "lsat7_2000_10.tif")
    found = check_against_bundle(bundle, [image], str(per_class), "layer")
    assert [f.message for f in found if f.subject == str(per_class)] == ["34 features overlapping the images"]
    (tmp_path / "wetland.gpkg").write_bytes((tmp_path / "classes.gpkg").read_bytes())
    polygons[["geometry"]].head(1).to_file(tmp_path / "wetland.gpkg", layer="wetland")  # a class the model lacks
    found = check_against_bundle(bundle, [image], str(tmp_path / "wetland.gpkg"), "layer")
    assert any(f.level == "problem" and "wetland" in f.message for f in found)


def test_detection_labels_named_by_layer_as_strings_get_one_line_errors(tmp_path, project):
    from geocamat.data.detection_images import image_info

    image = image_info(str(NC / "lsat7_2000_10.tif"))
    with pytest.raises(InvalidLabelsError, match="training.gpkg has no field 'kind'"):  # was an AttributeError
        load_boxes([f"{project.parent / 'training.gpkg'}"], [image], label_field="kind")
    with pytest.raises(InvalidLabelsError, match="has no field 'kind'"):
        load_boxes([f"{project}:training"], [image], label_field="kind")


def test_scenes_far_apart_read_their_own_parts_of_a_layer_not_the_land_between(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    squares = [box(x, y, x + 50, y + 50) for x in np.arange(0, 100_000, 1000.0) for y in np.arange(0, 5_000, 1000.0)]
    layer = gpd.GeoDataFrame({"cls": ["tree"] * len(squares)}, geometry=squares, crs="EPSG:32617")
    layer.to_file(tmp_path / "crowns.gpkg")
    west, east = (0, 0, 3_000, 3_000), (96_000, 0, 99_000, 3_000)
    within = [(west, "EPSG:32617"), (east, "EPSG:32617"), ((1_000, 1_000, 4_000, 4_000), "EPSG:32617")]
    frame = read_vector(tmp_path / "crowns.gpkg", within=within)
    expected = layer[layer.intersects(box(*west).buffer(60)) | layer.intersects(box(*east).buffer(60))
                     | layer.intersects(box(1_000, 1_000, 4_000, 4_000).buffer(60))]
    read = list(frame.geometry.to_wkb())
    assert set(expected.geometry.to_wkb()) <= set(read) and len(set(read)) == len(read)  # every one, each once
    assert (frame.intersects(box(0, 0, 4_000, 4_000).buffer(100)) | frame.intersects(box(*east).buffer(100))).all()
    assert frame.attrs["layer_features"] == len(layer) and len(frame) < len(layer) / 10
    in_degrees = (gpd.GeoSeries([box(*east)], crs="EPSG:32617").to_crs("EPSG:4326").total_bounds, "EPSG:4326")
    both = read_vector(tmp_path / "crowns.gpkg", within=[(west, "EPSG:32617"), in_degrees])
    assert len(both) < len(layer) / 10 and both.geometry.intersects(box(*east).buffer(100)).any()


def test_a_self_intersecting_region_is_repaired_with_a_warning_not_a_crash(tmp_path):
    import geopandas as gpd
    from shapely.geometry import Polygon

    from geocamat.errors import GeocamatWarning

    bowtie = Polygon([(0, 0), (100, 100), (100, 0), (0, 100)])  # two triangles crossing at (50, 50)
    gpd.GeoDataFrame({"zone": ["a"]}, geometry=[bowtie], crs="EPSG:32617").to_file(tmp_path / "aoi.gpkg")
    with pytest.warns(GeocamatWarning, match="1 of 1 geometries in .*aoi.gpkg were invalid"):
        ((name, geometry),) = load_region(tmp_path / "aoi.gpkg", "EPSG:32617")
    assert name is None and geometry.is_valid and geometry.area == pytest.approx(5000)
    assert geometry.intersection(Polygon([(0, 0), (100, 0), (100, 100), (0, 100)])).area == pytest.approx(5000)


def test_region_values_get_a_folder_each_and_features_without_one_are_told(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    from geocamat.errors import GeocamatWarning
    from geocamat.inference.landuse import region_folders

    assert region_folders(["Nord/Est", "Nord_Est", "nord est", "Süd"]) == {
        "Nord/Est": "Nord_Est", "Nord_Est": "Nord_Est_2", "nord est": "nord_est_3", "Süd": "Süd"}
    zones = gpd.GeoDataFrame({"zone": ["a", None, "b"]}, geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1)],
                             crs="EPSG:32617")
    zones.to_file(tmp_path / "zones.gpkg")
    with pytest.warns(GeocamatWarning, match="1 of 3 features of .*zones.gpkg have no 'zone' value: they are left out"):
        assert [name for name, _ in load_region(tmp_path / "zones.gpkg", "EPSG:32617", "zone")] == ["a", "b"]


def test_thousands_of_chips_at_three_sites_read_three_parts_of_a_layer():
    from geocamat.data.vector_layers import _boxes_in

    rng = np.random.default_rng(0)
    sites = [(0, 0), (100_000, 0), (0, 100_000)]
    within = []
    for i in range(3000):
        x, y = np.add(sites[i % 3], rng.uniform(0, 5000, 2))
        within.append(((x, y, x + 100, y + 100), "EPSG:32617"))
    boxes = _boxes_in("EPSG:32617", within)
    assert len(boxes) == 3 and all(b[2] - b[0] < 6000 and b[3] - b[1] < 6000 for b in boxes)
    scattered = [((x, y, x + 100, y + 100), "EPSG:32617") for x, y in rng.uniform(0, 1e6, (3000, 2))]
    assert len(_boxes_in("EPSG:32617", scattered)) == 1  # too many places: one box around them
