"""Output writers: class COG with palette and category names, QML styles, polygons merged across seams."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from geocamat.outputs.qml import categorized_polygon_qml, paletted_qml
from geocamat.outputs.raster import ClassStyle, class_dtype_nodata, write_class_raster
from geocamat.outputs.vector import merge_seams, polygonise_unit

STYLE = ClassStyle([1, 2, 5], ["water", "forest", "urban area & roads"], ["#0000ff", "#00aa00", "#ff0000"])


def tiff_ifd_offsets_and_first_data(path: Path) -> tuple[list[int], int]:
    """Offsets of every IFD of a classic/Big TIFF and the smallest tile/strip data offset."""
    data = path.read_bytes()
    endian = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(endian + "H", data[2:4])[0] == 43
    offset = struct.unpack(endian + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]
    ifds, first_data = [], None
    types = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}
    while offset:
        ifds.append(offset)
        if big:
            n = struct.unpack(endian + "Q", data[offset:offset + 8])[0]
            pos, entry, nxt_fmt = offset + 8, 20, "Q"
        else:
            n = struct.unpack(endian + "H", data[offset:offset + 2])[0]
            pos, entry, nxt_fmt = offset + 2, 12, "I"
        for k in range(n):
            e = pos + k * entry
            tag, typ = struct.unpack(endian + "HH", data[e:e + 4])
            if tag in (273, 324) and typ in types:  # StripOffsets / TileOffsets
                fmt, size = types[typ]
                count = struct.unpack(endian + ("Q" if big else "I"), data[e + 4:e + (12 if big else 8)])[0]
                inline = count * size <= (8 if big else 4)
                vstart = e + (12 if big else 8)
                if not inline:
                    vstart = struct.unpack(endian + ("Q" if big else "I"), data[vstart:vstart + (8 if big else 4)])[0]
                values = struct.unpack(endian + fmt * count, data[vstart:vstart + count * size])
                nonzero = [v for v in values if v]
                if nonzero:
                    first_data = min(nonzero) if first_data is None else min(first_data, min(nonzero))
        end = pos + n * entry
        offset = struct.unpack(endian + nxt_fmt, data[end:end + (8 if big else 4)])[0]
    return ifds, first_data


def assert_cog(path: Path) -> None:
    """COG layout: tiled, overviews, GDAL's COG ghost header, and every IFD before the image data."""
    import rasterio

    with rasterio.open(path) as src:
        assert src.profile["tiled"]
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        if max(src.width, src.height) > 512:
            assert src.overviews(1)
    assert b"LAYOUT=IFDS_BEFORE_DATA" in path.read_bytes()[:400]
    ifds, first_data = tiff_ifd_offsets_and_first_data(path)
    assert first_data is not None and max(ifds) < first_data


def category_names(path: Path) -> list[str]:
    """GDAL category names of band 1 (from the PAM side-car that GDAL writes for GeoTIFFs)."""
    aux = Path(str(path) + ".aux.xml")
    root = ET.parse(aux).getroot()
    return [c.text or "" for c in root.iter("Category")]


def test_class_dtype_nodata():
    assert class_dtype_nodata([1, 2, 7]) == ("uint8", 0)
    assert class_dtype_nodata([0, 1, 2]) == ("uint8", 255)
    assert class_dtype_nodata([0, 255]) == ("uint8", 254)
    assert class_dtype_nodata([0, 300]) == ("uint16", 65535)
    assert class_dtype_nodata([1, 300]) == ("uint16", 0)


def test_paletted_qml_lists_every_class():
    root = ET.fromstring(paletted_qml(STYLE).split("\n", 1)[1])
    renderer = root.find("./pipe/rasterrenderer")
    assert renderer.get("type") == "paletted"
    entries = [(e.get("value"), e.get("label"), e.get("color")) for e in renderer.iter("paletteEntry")]
    assert entries == [("1", "water", "#0000ff"), ("2", "forest", "#00aa00"), ("5", "urban area & roads", "#ff0000")]
    root = ET.fromstring(categorized_polygon_qml(STYLE).split("\n", 1)[1])
    assert [c.get("label") for c in root.iter("category")] == STYLE.names


def test_write_class_raster_cog_palette_categories(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    arr = rng.choice([1, 2, 5], size=(700, 900)).astype(np.uint8)
    arr[:50] = 0
    path = write_class_raster(tmp_path / "map.tif", arr, transform=from_origin(300000, 5000000, 30, 30),
                              crs="EPSG:32617", style=STYLE)
    assert_cog(path)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32617
        assert src.transform == from_origin(300000, 5000000, 30, 30)
        assert src.nodata == 0 and src.dtypes[0] == "uint8"
        np.testing.assert_array_equal(src.read(1), arr)
        cmap = src.colormap(1)
        assert cmap[1][:3] == (0, 0, 255) and cmap[5][:3] == (255, 0, 0)
    names = category_names(path)
    assert names[1] == "water" and names[2] == "forest" and names[5] == "urban area & roads"
    assert (tmp_path / "map.qml").exists()


def test_polygons_merge_across_seams():
    import shapely

    rng = np.random.default_rng(1)
    arr = np.kron(rng.choice([1, 2, 3], size=(6, 8)), np.ones((7, 5), np.uint8)).astype(np.uint8)
    arr[:3, :4] = 0  # nodata
    whole = polygonise_unit(arr, 0, 0, 0, arr.shape)
    parts = [polygonise_unit(arr[r0:r1, c0:c1], 0, r0, c0, arr.shape)
             for r0, r1 in ((0, 20), (20, 42)) for c0, c1 in ((0, 13), (13, 40))]
    geoms = np.concatenate([p["geoms"] for p in parts])
    ids = np.concatenate([p["ids"] for p in parts])
    edge = np.concatenate([p["edge"] for p in parts])
    merged, merged_ids = merge_seams(geoms[edge], ids[edge])
    final = np.concatenate([geoms[~edge], merged])
    final_ids = np.concatenate([ids[~edge], merged_ids])
    assert len(final) == len(whole["geoms"])
    for cid in (1, 2, 3):
        a = shapely.union_all(final[final_ids == cid])
        b = shapely.union_all(whole["geoms"][whole["ids"] == cid])
        assert a.symmetric_difference(b).area == pytest.approx(0)
        assert a.area == (arr == cid).sum()


def test_write_polygons_gpkg_min_pixels_and_style(tmp_path):
    import sqlite3

    import geopandas as gpd
    from rasterio.transform import from_origin

    from geocamat.outputs.vector import save_unit_polygons, write_polygons_gpkg

    arr = np.full((20, 30), 1, np.uint8)
    arr[2:4, 2:4] = 2  # 4-pixel island, inside the first unit
    arr[10:20, 0:30] = 5  # a band crossing the unit seam at column 15
    units = []
    for k, (c0, c1) in enumerate(((0, 15), (15, 30))):
        polys = polygonise_unit(arr[:, c0:c1], 0, 0, c0, arr.shape)
        units.append(save_unit_polygons(tmp_path / f"u{k}.npz", polys))
    transform = from_origin(1000, 2000, 10, 10)
    n = write_polygons_gpkg(tmp_path / "p.gpkg", units, transform=transform, crs_wkt="EPSG:32618", style=STYLE,
                            min_pixels=5, unit_metres=1.0)
    frame = gpd.read_file(tmp_path / "p.gpkg", layer="landuse")
    assert n == len(frame) == 2  # the island is dropped; class 1 (with a hole) and class 5 (merged across the seam)
    assert sorted(frame.class_id) == [1, 5] and set(frame.class_name) == {"water", "urban area & roads"}
    assert frame.loc[frame.class_id == 5, "pixels"].item() == 300
    assert frame.loc[frame.class_id == 5, "area_ha"].item() == pytest.approx(300 * 100 / 1e4)
    assert frame.total_bounds.tolist() == [1000, 1800, 1300, 2000]
    with sqlite3.connect(tmp_path / "p.gpkg") as db:
        assert db.execute("SELECT count(*) FROM layer_styles WHERE useAsDefault = 1").fetchone()[0] == 1


def test_write_polygons_gpkg_empty(tmp_path):
    import geopandas as gpd
    from rasterio.transform import from_origin

    from geocamat.outputs.vector import save_unit_polygons, write_polygons_gpkg

    unit = save_unit_polygons(tmp_path / "u.npz", polygonise_unit(np.zeros((5, 5), np.uint8), 0, 0, 0, (5, 5)))
    n = write_polygons_gpkg(tmp_path / "e.gpkg", [unit], transform=from_origin(0, 0, 1, 1), crs_wkt="EPSG:32618",
                            style=STYLE)
    frame = gpd.read_file(tmp_path / "e.gpkg", layer="landuse")
    assert n == 0 and len(frame) == 0 and "class_name" in frame.columns and frame.crs.to_epsg() == 32618


def test_merge_seams_dissolves_chains_of_touching_polygons_only_within_a_class():
    import shapely

    box = shapely.box
    geoms = np.array([box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1),  # a chain of class 1
                      box(3, 1, 4, 2),  # class 1, touches the chain at a corner only
                      box(0, 1, 3, 2),  # class 2, touches the chain along an edge
                      box(10, 10, 11, 11)], dtype=object)  # class 1, alone
    ids = np.array([1, 1, 1, 1, 2, 1])
    merged, merged_ids = merge_seams(geoms, ids, workers=2)
    assert sorted(merged_ids.tolist()) == [1, 1, 1, 2]
    areas = sorted(round(float(g.area), 6) for g, i in zip(merged, merged_ids, strict=True) if i == 1)
    assert areas == [1.0, 1.0, 3.0]
    assert all(shapely.get_type_id(g) == 3 for g in merged)
