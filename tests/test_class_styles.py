"""Class names and colours of a classified raster from the files beside it (QGIS style, GDAL .aux.xml, ArcGIS
.vat.dbf), carried into the labels a land-use model is trained on."""

import shutil

import pandas as pd
import pyogrio

from geocamat.data.class_styles import raster_classes
from geocamat.data.labels import grid_of_dataset, labels_on_grid
from geocamat.data.stack import open_stack
from geocamat.describe import describe
from geocamat.outputs.qml import write_paletted_qml
from geocamat.outputs.style import ClassStyle
from geocamat.tasks.landuse.config import LandUseConfig
from geocamat.tasks.landuse.workflow import _classes
from tests.conftest import SAMPLES

NC = SAMPLES / "nc_landsat"
NAMES = ["developed", "agriculture", "herbaceous", "shrubland", "forest", "water", "sediment"]
COLOURS = ["#d7191c", "#f4d03f", "#a6d96a", "#8c6d31", "#1a7837", "#2b83ba", "#d9c89e"]

#: A GDAL attribute table as GDAL writes it into ``.aux.xml`` (value by usage 5, name by usage 2, colours as 0-1
#: reals), for classes 1-3 only.
PAM_RAT = """<PAMDataset>
  <PAMRasterBand band="1">
    <GDALRasterAttributeTable tableType="thematic">
      <FieldDefn index="0"><Name>V</Name><Type>0</Type><Usage>5</Usage></FieldDefn>
      <FieldDefn index="1"><Name>Px</Name><Type>0</Type><Usage>1</Usage></FieldDefn>
      <FieldDefn index="2"><Name>N</Name><Type>2</Type><Usage>2</Usage></FieldDefn>
      <FieldDefn index="3"><Name>R</Name><Type>1</Type><Usage>6</Usage></FieldDefn>
      <FieldDefn index="4"><Name>G</Name><Type>1</Type><Usage>7</Usage></FieldDefn>
      <FieldDefn index="5"><Name>B</Name><Type>1</Type><Usage>8</Usage></FieldDefn>
      <Row index="0"><F>1</F><F>900</F><F>Urban</F><F>1</F><F>0</F><F>0</F></Row>
      <Row index="1"><F>2</F><F>40</F><F>Crops</F><F>1</F><F>1</F><F>0</F></Row>
      <Row index="2"><F>3</F><F>700</F><F>Grass</F><F>0.5</F><F>1</F><F>0.5</F></Row>
    </GDALRasterAttributeTable>
  </PAMRasterBand>
</PAMDataset>
"""
#: The table as GDAL 3.6 writes it (``band.SetDefaultRAT`` with integer colours, beside category names).
GDAL_RAT = """<PAMDataset>
  <PAMRasterBand band="1">
    <CategoryNames>
      <Category></Category>
      <Category>developed</Category>
    </CategoryNames>
    <GDALRasterAttributeTable tableType="thematic">
      <FieldDefn index="0">
        <Name>Value</Name>
        <Type>0</Type>
        <Usage>5</Usage>
      </FieldDefn>
      <FieldDefn index="1">
        <Name>Class_Name</Name>
        <Type>2</Type>
        <Usage>2</Usage>
      </FieldDefn>
      <FieldDefn index="2">
        <Name>Red</Name>
        <Type>0</Type>
        <Usage>6</Usage>
      </FieldDefn>
      <FieldDefn index="3">
        <Name>Green</Name>
        <Type>0</Type>
        <Usage>7</Usage>
      </FieldDefn>
      <FieldDefn index="4">
        <Name>Blue</Name>
        <Type>0</Type>
        <Usage>8</Usage>
      </FieldDefn>
      <Row index="0">
        <F>1</F>
        <F>developed</F>
        <F>215</F>
        <F>25</F>
        <F>28</F>
      </Row>
      <Row index="1">
        <F>5</F>
        <F>forest</F>
        <F>26</F>
        <F>120</F>
        <F>55</F>
      </Row>
    </GDALRasterAttributeTable>
  </PAMRasterBand>
</PAMDataset>
"""
#: GDAL's category names (class n is the n-th name; class 0 has none).
PAM_CATEGORIES = """<PAMDataset>
  <PAMRasterBand band="1">
    <CategoryNames>
      <Category></Category>
      <Category>Urban</Category>
      <Category>Crops</Category>
    </CategoryNames>
  </PAMRasterBand>
</PAMDataset>
"""


def _strata(tmp_path):
    path = tmp_path / "strata.tif"
    shutil.copy(NC / "strata.tif", path)
    return path


def _grid(tmp_path):
    return grid_of_dataset(open_stack([str(NC / "lsat7_2000_*.tif")], tmp_path).dataset())


def test_a_qgis_style_beside_the_label_raster_names_the_model_classes(tmp_path):
    strata = _strata(tmp_path)
    write_paletted_qml(strata.with_suffix(".qml"), ClassStyle(list(range(1, 8)), NAMES, COLOURS))
    labels = labels_on_grid(strata, _grid(tmp_path), tmp_path)
    assert labels.names == dict(zip(range(1, 8), NAMES, strict=True))
    assert labels.colours == dict(zip(range(1, 8), COLOURS, strict=True))
    assert any("class names from strata.qml (7 of 7 classes)" in n for n in labels.notes)
    assert describe(strata)["classes"][4] == {"id": 5, "name": "forest", "color": "#1a7837"}
    # the bundle's classes: these names, unless the settings give others
    classes = _classes(LandUseConfig(classes={7: "sand"}), labels)
    assert [c.name for c in classes] == NAMES[:6] + ["sand"] and classes[4].color == "#1a7837"


def test_a_gdal_attribute_table_or_category_names_name_the_classes(tmp_path):
    strata = _strata(tmp_path)
    (tmp_path / "strata.tif.aux.xml").write_text(PAM_RAT)
    found = raster_classes(strata)
    assert found.names == {1: "Urban", 2: "Crops", 3: "Grass"} and found.sources == ["strata.tif.aux.xml"]
    assert found.colours == {1: "#ff0000", 2: "#ffff00", 3: "#80ff80"}  # GDAL's 0-1 colours scaled
    labels = labels_on_grid(strata, _grid(tmp_path), tmp_path)
    assert labels.names == {1: "Urban", 2: "Crops", 3: "Grass"}  # 4-7 keep their codes
    assert any("(3 of 7 classes; 4 keep their codes)" in n for n in labels.notes)
    (tmp_path / "strata.tif.aux.xml").write_text(PAM_CATEGORIES)
    assert raster_classes(strata).names == {1: "Urban", 2: "Crops"}
    (tmp_path / "strata.tif.aux.xml").write_text(GDAL_RAT)  # the table wins over the category names
    found = raster_classes(strata)
    assert found.names == {1: "developed", 5: "forest"} and found.colours == {1: "#d7191c", 5: "#1a7837"}


def test_the_table_geocamat_writes_is_read_back_as_gdal_writes_it(tmp_path):
    from geocamat.outputs.attribute_table import attribute_table_xml

    style = ClassStyle([1, 5], ["developed", "forest"], ["#d7191c", "#1a7837"])
    mine = attribute_table_xml(style)
    gdal = GDAL_RAT.split("<GDALRasterAttributeTable")[1]
    assert mine.split("<GDALRasterAttributeTable")[1].split() == gdal.split()  # the same table, token for token


def test_an_arcgis_value_table_and_the_order_of_the_sources(tmp_path):
    strata = _strata(tmp_path)
    table = pd.DataFrame({"Value": [1, 2, 6], "Count": [10, 20, 30], "ClassName": ["Built", "Farm", "Lake"],
                          "Red": [255, 0, 0], "Green": [0, 128, 0], "Blue": [0, 0, 255]})
    pyogrio.write_dataframe(table, f"{strata}.vat.dbf", driver="ESRI Shapefile")
    found = raster_classes(strata)
    assert found.names == {1: "Built", 2: "Farm", 6: "Lake"}
    assert found.colours == {1: "#ff0000", 2: "#008000", 6: "#0000ff"}
    # what QGIS shows comes first, then the GDAL table, then ArcGIS's
    write_paletted_qml(strata.with_suffix(".qml"), ClassStyle([1], ["developed"], ["#d7191c"]))
    (tmp_path / "strata.tif.aux.xml").write_text(PAM_RAT)
    found = raster_classes(strata)
    assert found.names == {1: "developed", 2: "Crops", 3: "Grass", 6: "Lake"}
    assert found.sources == ["strata.qml", "strata.tif.aux.xml", "strata.tif.vat.dbf"]


def test_a_broken_sidecar_costs_the_names_not_the_run(tmp_path):
    strata = _strata(tmp_path)
    strata.with_suffix(".qml").write_text("<qgis><pipe><rasterrenderer")
    labels = labels_on_grid(strata, _grid(tmp_path), tmp_path)
    assert labels.names == {} and labels.class_ids == list(range(1, 8))
    assert any("strata.qml cannot be read" in n for n in labels.notes)
