"""What a GeoTIFF, vector layer or model bundle holds (for ``geocamat info``)."""

from __future__ import annotations

from pathlib import Path

from geocamat.data.crs import crs_label
from geocamat.errors import CorruptInputError, InputNotFoundError, InvalidRasterError

BUNDLE_SUFFIXES = (".geocamat",)


def describe(path: str | Path) -> dict:
    """A summary dict of the file at ``path``: kind, CRS, size, bands or fields, classes.

    Raises:
        InputNotFoundError: no such file.
        InvalidRasterError: the file is neither a raster, a vector layer nor a bundle.
    """
    from geocamat.data.vector_layers import parse_source

    source = parse_source(path)
    if not source.file.exists():
        raise InputNotFoundError(f"no such file: {source.file}")
    if source.layer is not None or source.where:
        return _describe_vector(source.file, source.layer, source.where)
    path = source.file
    if path.is_dir() and path.suffix.lower() != ".gdb":  # a File Geodatabase is a folder GDAL reads as vectors
        raise InvalidRasterError(f"{path} is a folder: give one file (a raster, a vector layer, box labels or a "
                                 "model bundle); a folder of class folders is read by `geocamat train --scenes`")
    if _box_labels(path):
        return _describe_boxes(path)
    if path.suffix in BUNDLE_SUFFIXES:
        from geocamat.bundle import Bundle, file_sha256
        from geocamat.tasks import task_of_bundle

        b = Bundle.load(path)
        return {"kind": "geocamat model bundle", "task": b.task, "model": b.model, "bands": b.bands,
                "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in b.classes],
                "tile_size": b.tile_size, "resolution": b.resolution, "crs": _bundle_crs(b.crs),
                "regulariser": b.regulariser, "metrics": _headline(b.metrics), "sha256": file_sha256(path),
                **task_of_bundle(b).describe(b), **_started_from(b)}
    import rasterio

    from geocamat.data.stack import RASTER_SUFFIXES
    from geocamat.failures import one_line
    from geocamat.preflight import check_blocks, refuse_bandless

    try:
        with rasterio.open(path) as src:
            refuse_bandless(src, path)
            info = {"kind": "raster", "driver": src.driver, "crs": crs_label(src.crs), "width": src.width,
                    "height": src.height, "bands": src.count, "dtypes": sorted(set(src.dtypes)),
                    "nodata": src.nodata, "resolution": list(src.res), "bounds": list(src.bounds),
                    "band_descriptions": [d for d in src.descriptions if d]}
            from geocamat.data.stack import mask_kind

            masked, alpha = mask_kind(src)
            if alpha:
                info["alpha_bands"] = [b + 1 for b in alpha]  # a mask, not an input band
            elif masked:
                info["mask"] = "internal mask (masked pixels are nodata)"
            try:
                info["colour_table_entries"] = len(src.colormap(1))
            except ValueError:
                pass
            if src.crs is None:
                info["bounds"] = [0.0, 0.0, float(src.width), float(src.height)]  # pixels: no map coordinates
                info["warning"] = ("no CRS: fine as a scene image or a photo for detection with pixel labels; land "
                                   "use and maps need one (gdal_edit.py -a_srs EPSG:XXXX -a_ullr ...)")
                from geocamat.preflight import refuse_unrectified

                try:
                    refuse_unrectified(src, path)
                except InvalidRasterError as exc:  # GCPs or RPCs: what to do with it instead
                    info["warning"] = str(exc).replace(f"{path} is", "no geotransform:", 1)
        info |= _named_classes(path)
        check_blocks(path)  # a truncated or corrupt file is broken, whatever its header says
        return info
    except rasterio.errors.RasterioIOError as exc:
        if path.suffix.lower() in RASTER_SUFFIXES:
            raise CorruptInputError(f"{path} is broken: GDAL cannot open it ({one_line(str(exc), 200)}); "
                                    "re-download or re-export it") from exc
    return _describe_vector(path, None)


#: box-label files (image pixels) listed by ``info``: the first images they name
IMAGES_SHOWN = 10


def _box_labels(path: Path) -> bool:
    """Whether ``path`` is a detection label file in image pixels (VOC, DOTA/YOLO text, COCO, DeepForest CSV)."""
    from geocamat.data.boxes import pixel_labels

    if path.suffix.lower() == ".csv":  # a DeepForest CSV has box columns; a table of points has coordinates
        with open(path, errors="replace") as fh:
            return "xmin" in fh.readline().lower()
    return path.is_file() and pixel_labels(path)


def _describe_boxes(path: Path) -> dict:
    """A box-label file: its format, boxes, classes (with counts) and the images it names."""
    from collections import Counter

    from geocamat.data.box_formats import is_coco, is_yolo
    from geocamat.data.boxes import read_pixel_boxes
    from geocamat.errors import InvalidLabelsError

    try:
        boxes = read_pixel_boxes(path)
    except InvalidLabelsError as exc:  # a text or XML file that is no label file either
        raise InvalidRasterError(f"{path} is neither a raster, a vector layer, a box-label file nor a geocamat bundle "
                                 f"(read as box labels: {exc})") from exc
    suffix = path.suffix.lower()
    if suffix == ".txt":
        kind = "YOLO" if is_yolo(path.read_text(errors="replace").splitlines()) else "DOTA"
    else:
        kind = {".xml": "Pascal VOC", ".csv": "DeepForest CSV"}.get(suffix, "COCO" if is_coco(path) else suffix)
    images = sorted({b.image_key for b in boxes})
    return {"kind": "boxes in image pixels (detection labels)", "format": kind, "boxes": len(boxes),
            "classes": dict(Counter(b.name for b in boxes).most_common()),
            "images": images[:IMAGES_SHOWN] + ([f"... {len(images) - IMAGES_SHOWN} more"]
                                               if len(images) > IMAGES_SHOWN else [])}


def _named_classes(path: Path) -> dict:
    """The classes a label raster's QGIS style or attribute table names (what training would call them)."""
    from geocamat.data.class_styles import raster_classes

    found = raster_classes(path)
    if not found.names:
        return {}
    return {"classes": [{"id": code, "name": name, "color": found.colours.get(code, "")}
                        for code, name in sorted(found.names.items())],
            "class_names_from": found.sources}


def _describe_vector(path: Path, layer: str | None, where: str | None = None) -> dict:
    """A vector file's ``layer`` (None: its first spatial layer), with the names of all its layers; a CSV table as
    its points. With ``where`` (a layer filter, ``|subset=``), the features it keeps, as geocamat reads them."""
    from geocamat.data.vector_layers import TABLE_SUFFIX, VectorSource, read_vector

    filtered = {"filter": where} if where else {}
    if path.suffix.lower() == TABLE_SUFFIX:
        return _summary(read_vector(VectorSource(path, None, where), "table", InvalidRasterError),
                        {"kind": "points table", **filtered})
    try:
        import geopandas as gpd
        import pyogrio

        listed = pyogrio.list_layers(path)
        layers = [str(name) for name, _ in listed]
        spatial = [str(name) for name, geometry in listed if geometry is not None] or layers
    except Exception as exc:  # noqa: BLE001 - any failure means "not a readable vector file"
        raise InvalidRasterError(f"{path} is neither a raster, a vector layer nor a geocamat bundle") from exc
    if layer is not None and layer not in layers:
        raise InvalidRasterError(f"{path.name} has no layer {layer!r}: its layers are {', '.join(layers)}")
    named = layer or spatial[0]
    if where:
        frame = read_vector(VectorSource(path, named, where), "layer", InvalidRasterError)
    else:
        try:
            frame = gpd.read_file(path, layer=named)
        except Exception as exc:  # noqa: BLE001 - any failure means "not a readable vector file"
            raise InvalidRasterError(f"{path} is neither a raster, a vector layer nor a geocamat bundle") from exc
    info = {"kind": "vector", "layer": named, "layers": _layer_list(path, listed) if len(layers) > 1 else layers,
            **filtered}
    if layer is None and len(spatial) > 1:
        info["note"] = (f"{len(spatial)} layers with geometry: this describes the first; geocamat reads one named "
                        f"as {path}:LAYER (e.g. {path}:{spatial[1]})")
    return _summary(frame, info)


def _layer_list(path: Path, listed) -> list[dict]:
    """Each layer of a file of several: name, geometry type and feature count (a table without geometry: none)."""
    import pyogrio

    out = []
    for name, geometry in listed:
        try:
            features = int(pyogrio.read_info(path, layer=str(name))["features"])
        except Exception:  # noqa: BLE001 - a layer GDAL cannot describe is listed without its count
            features = None
        out.append({"name": str(name), "geometry": geometry or "none (a table)", "features": features})
    return out


def _summary(frame, info: dict) -> dict:
    """``info`` with a vector frame's CRS, features, geometry types, bounds, fields and warnings."""
    info |= {"crs": crs_label(frame.crs), "features": len(frame),
            "geometry_types": sorted(set(frame.geom_type.dropna())), "bounds": list(map(float, frame.total_bounds)),
            "fields": {c: str(frame[c].dtype) for c in frame.columns if c != frame.geometry.name}}
    invalid = int((~frame.geometry.is_valid & frame.geometry.notna()).sum())
    if invalid:
        info["warning"] = (f"{invalid} invalid (e.g. self-intersecting) geometries: geocamat repairs them with "
                           "make_valid when it uses them")
    if frame.crs is None:
        info["warning"] = "no CRS: geocamat cannot use this layer until one is set"
    return info


def _started_from(bundle) -> dict:
    """Where a bundle's training started from (:mod:`geocamat.models.weights`), if not from scratch."""
    init = bundle.extra.get("init")
    if not init:
        return {}
    return {"started_from": {k: init[k] for k in ("source", "name", "url", "sha256", "scope", "first_conv")
                             if init.get(k) is not None}}


def _bundle_crs(wkt: str | None) -> str | None:
    if not wkt:
        return None
    from rasterio.crs import CRS

    return crs_label(CRS.from_wkt(wkt))


def _headline(metrics: dict) -> dict:
    vm = metrics.get("validation_map") or {}
    out = {k: vm.get(k) for k in ("overall_accuracy", "kappa", "macro_f1", "scope", "map_offset_px") if k in vm}
    return out or {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
