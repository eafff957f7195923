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
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"no such file: {path}")
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
    from geocamat.preflight import check_blocks

    try:
        with rasterio.open(path) as src:
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
                info["warning"] = "no CRS: geocamat cannot use this raster until one is assigned"
        check_blocks(path)  # a truncated or corrupt file is broken, whatever its header says
        return info
    except rasterio.errors.RasterioIOError as exc:
        if path.suffix.lower() in RASTER_SUFFIXES:
            raise CorruptInputError(f"{path} is broken: GDAL cannot open it ({one_line(str(exc), 200)}); "
                                    "re-download or re-export it") from exc
    try:
        import geopandas as gpd
        import pyogrio

        layers = [name for name, _ in pyogrio.list_layers(path)]
        frame = gpd.read_file(path, layer=layers[0])
    except Exception as exc:  # noqa: BLE001 - any failure means "not a readable vector file"
        raise InvalidRasterError(f"{path} is neither a raster, a vector layer nor a geocamat bundle") from exc
    info = {"kind": "vector", "layers": layers, "crs": crs_label(frame.crs), "features": len(frame),
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
