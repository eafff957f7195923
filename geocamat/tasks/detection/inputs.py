"""What detection runs over: the images (or mosaics of sheets) checked against the model, their normalisation,
an area of interest in their pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocamat.bundle import Bundle
from geocamat.errors import BundleError, ConfigError, InvalidRasterError


def load_labelled(images: list[str], labels: list[str], label_field: str, classes: list[str] | None):
    """The images' :class:`ImageInfo`, their boxes from the label files, and the class names."""
    from geocamat.data.boxes import load_boxes
    from geocamat.data.detection_images import image_info

    infos = [image_info(p) for p in images]
    return infos, *load_boxes([Path(p) for p in labels], infos, label_field, classes)


def labelled_units(images: list[str], labels: list[str], label_field: str, classes: list[str] | None):
    """The training images as detection runs over them (sheets of one grid as one mosaic, see
    :func:`detection_units`), their :class:`ImageInfo`, their boxes in each one's pixel grid, and the classes.

    In a mosaic, a vector layer's object gives one box, whole, however many sheets it spans; pixel boxes (each
    sheet's own CSV/XML/...) are moved into the mosaic's grid as they are (an object a labeller cut at a sheet edge
    stays two boxes)."""
    from geocamat.data.boxes import ImageBoxes, load_boxes, pixel_labels
    from geocamat.data.detection_images import image_info

    infos = [image_info(p) for p in images]
    units, unit_infos = detection_units(images, infos)
    if len(units) == len(images):
        boxes, classes = load_boxes([Path(p) for p in labels], infos, label_field, classes)
        return units, infos, boxes, classes
    where = {}  # image -> (unit, col, row) of its top-left pixel in the unit
    for k, u in enumerate(units):
        where.update({u: (k, 0, 0)} if isinstance(u, str) else {s.path: (k, s.col, s.row) for s in u.sheets})
    pixel = [Path(p) for p in labels if pixel_labels(p)]
    vector = [Path(p) for p in labels if Path(p) not in pixel]
    rows: list[list] = [[] for _ in units]
    found: list[str] = []
    if vector:
        unit_boxes, names = load_boxes(vector, unit_infos, label_field, classes)
        found += names
        for k, ib in enumerate(unit_boxes):
            rows[k] += [(*b, n) for b, n in zip(ib.boxes.tolist(), ib.names, strict=True)]
    if pixel:
        sheet_boxes, names = load_boxes(pixel, infos, label_field, classes)
        found += names
        for ib in sheet_boxes:
            k, c, r = where[ib.image]
            rows[k] += [(b[0] + c, b[1] + r, b[2] + c, b[3] + r, n) for b, n in zip(ib.boxes.tolist(), ib.names,
                                                                                    strict=True)]
    classes = [str(c) for c in classes] if classes is not None else sorted(set(found))
    boxes = [ImageBoxes(i.path, i.width, i.height, np.array([r[:4] for r in rs], np.float32).reshape(-1, 4),
                        [r[4] for r in rs]) for i, rs in zip(unit_infos, rows, strict=True)]
    return units, unit_infos, boxes, classes


def check_bundle(bundle: Bundle) -> None:
    """Refuse a model of another task."""
    if bundle.task != "detection":
        raise BundleError(f"this model was trained for {bundle.task!r}, not detection; use a detection model")


def read_bands(bundle: Bundle) -> int | tuple[int, ...]:
    """How a detection model reads an image's bands: the 1-based bands it was trained on (``bands`` at training,
    e.g. (3, 2, 1)), else all of them (their count)."""
    selection = bundle.extra.get("band_selection")
    return tuple(int(b) for b in selection) if selection else len(bundle.bands)


def check_bands(bundle: Bundle, path: str) -> bool:
    """Refuse an image without the model's bands; True when it is a grey image a colour model reads as 3
    equal bands."""
    from geocamat.data.detection_images import band_names
    from geocamat.data.grey import fits, grey_for_colour

    n, want, bands = len(band_names(path)), len(bundle.bands), read_bands(bundle)
    if isinstance(bands, tuple) and n >= max(bands):
        return False
    if not fits(n, want):
        picked = f", its bands {', '.join(map(str, bands))}" if isinstance(bands, tuple) else ""
        raise InvalidRasterError(f"{path} has {n} bands but the model expects {want} "
                                 f"({', '.join(bundle.bands)}{picked}); give imagery with the training bands")
    return grey_for_colour(n, want)


def normalisation_for(bundle: Bundle, path) -> tuple[list[float], list[float]]:
    """The band mean/std that normalise ``path`` for this model (its own, or the image's; a mosaic's images
    pooled, as one image)."""
    from geocamat.data.detection_images import band_stats, normalisation
    from geocamat.data.image_mosaic import ImageMosaic

    mode = bundle.extra.get("normalise", "dataset")
    if isinstance(path, ImageMosaic) and mode == "image":
        return band_stats(path.paths, bands=read_bands(bundle))
    return normalisation(path, mode, bundle.mean, bundle.std, read_bands(bundle))


def detection_units(paths: list[str], infos: list) -> tuple[list, list]:
    """What detection runs over: each image alone (its path), or a mosaic of images that tile one pixel grid and
    touch (:mod:`geocamat.data.image_mosaic`), so that objects on their edges are seen whole; and the
    :class:`ImageInfo` of each."""
    from geocamat.data.image_mosaic import build_mosaic, mosaic_groups

    units, unit_infos = [], []
    for group in mosaic_groups(infos):
        if len(group) == 1:
            units.append(paths[group[0]])
            unit_infos.append(infos[group[0]])
        else:
            units.append(build_mosaic([infos[i] for i in group]))
            unit_infos.append(units[-1].info)
    return units, unit_infos


def evaluation_units(paths: list[str], infos: list, label_paths: list[str]) -> tuple[list, list, list[str]]:
    """What evaluation scores over, their :class:`ImageInfo` (what the reference boxes are read for) and a
    note: mosaics as in predict when every reference is in map coordinates (a vector layer: each object's box
    whole in the mosaic); with pixel boxes (each image's own) image by image, said in the note."""
    from geocamat.data.boxes import pixel_labels

    units, unit_infos = detection_units(paths, infos)
    if len(units) == len(paths):
        return units, infos, []
    if any(pixel_labels(p) for p in label_paths):
        return paths, infos, ["note: the images tile one pixel grid, but the reference boxes are in each image's "
                              "pixels: scored image by image, so objects on image edges count as pieces in both "
                              "(a vector reference scores the mosaic, as predict detects it)"]
    mosaics = [u for u in units if not isinstance(u, str)]
    return units, unit_infos, [
        f"note: {sum(len(m.sheets) for m in mosaics)} images tile one pixel grid and touch: scored as {len(mosaics)} "
        f"mosaic{'s' if len(mosaics) > 1 else ''}, as predict detects them, each reference object whole"]


def check_map_options(opts: dict, georef: list[bool]) -> None:
    """Refuse map-coordinate options (an AOI, an output CRS) for plain images, which have none, and a region field
    without its region."""
    if opts.get("region_field") is not None and opts.get("region") is None:
        raise ConfigError("--region-field needs --region: the vector layer whose field names the areas to count in")
    if all(georef):
        return
    if opts.get("region") is not None or opts.get("bbox") is not None:
        raise ConfigError("--region and --bbox need georeferenced images (GeoTIFFs with a CRS); these are plain "
                          "images: crop them instead")
    if opts.get("crs") is not None:
        raise ConfigError("--crs needs georeferenced images (GeoTIFFs with a CRS); plain images give pixel "
                          "coordinates")


def area_of_interest(opts: dict, crs, infos: list):
    """The AOI (``region`` and/or ``bbox``: their intersection) as a geometry in ``crs``; None: none given."""
    return regions_of_interest(opts, crs, infos)[0]


@dataclass
class CountRegions:
    """The areas objects are counted in (``--region-field``), in the AOI's CRS: each value's part that the images
    cover (what is counted, and what its area and density are of), the share of the value's area that part is,
    the values read near the images whose polygons the images miss, and how many of the layer's features miss the
    images (not read)."""

    parts: list[tuple[str, object]]
    imaged_share: list[float]
    skipped: list[str]
    not_read: int = 0  # the layer's features that miss the images (not read, not counted)


def regions_of_interest(opts: dict, crs, infos: list):
    """(the AOI as in :func:`area_of_interest`, and with ``region_field`` the :class:`CountRegions`, each value's
    polygons cut to the bbox; else None). Only the region layer's features whose bounding box meets the images are
    read."""
    import shapely

    from geocamat.data.boxes import images_ground
    from geocamat.inference.grid import RegionParts, bbox_geometry, load_region

    check_map_options(opts, [i.crs is not None for i in infos])
    if opts.get("region") is None and opts.get("bbox") is None:
        return None, None
    parts = None
    if opts.get("region") is not None:
        parts = load_region(opts["region"], crs, opts.get("region_field"), within=images_ground(infos))
    if opts.get("bbox") is not None:
        box = bbox_geometry(tuple(opts["bbox"]), opts.get("bbox_crs"), crs)
        parts = RegionParts([(None, box)] if parts is None else [(v, g.intersection(box)) for v, g in parts],
                            getattr(parts, "not_read", 0))  # the count of features not read stays
    geom = shapely.union_all([g for _, g in parts])
    return geom, imaged_regions(parts, infos, crs) if opts.get("region_field") is not None else None


def imaged_regions(parts: list, infos: list, crs) -> CountRegions:
    """The regions cut to the images' footprint (:func:`images_footprint`), as :class:`CountRegions`: a stand half
    outside the orthophoto is counted, and its density given, over the half the images show."""
    from geocamat.inference.grid import areas_of

    footprint = images_footprint(infos, crs)
    kept, share, skipped = [], [], []
    for value, geometry in parts:
        inside = geometry.intersection(footprint)
        if inside.is_empty or inside.area <= 0:
            skipped.append(value)
            continue
        kept.append((value, areas_of(inside)))
        share.append(float(inside.area / geometry.area) if geometry.area > 0 else 1.0)
    return CountRegions(kept, share, skipped, getattr(parts, "not_read", 0))


def images_footprint(infos: list, crs):
    """The union of the images' extents (each its four corners, edges densified) in ``crs``."""
    import geopandas as gpd
    import shapely

    polygons = []
    for info in infos:
        t = info.transform
        ring = shapely.Polygon([t @ (0, 0), t @ (info.width, 0), t @ (info.width, info.height), t @ (0, info.height)])
        if info.crs != crs:
            ring = shapely.segmentize(ring, max(ring.length / 256, 1e-9))
            ring = gpd.GeoSeries([ring], crs=info.crs).to_crs(crs).iloc[0]
        polygons.append(ring)
    return shapely.union_all(polygons)


def aoi_in_pixels(aoi, aoi_crs, info):
    """The AOI in an image's (or mosaic's) pixel grid: (window filter for detect_image, centre filter, whether
    it meets the image at all)."""
    import shapely

    px = info.to_pixels(aoi, aoi_crs)
    shapely.prepare(px)

    def window(size: int):
        return lambda col, row: bool(px.intersects(shapely.box(col, row, col + size, row + size)))

    def centres(boxes: np.ndarray) -> np.ndarray:
        return shapely.intersects_xy(px, (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2)

    return window, centres, bool(px.intersects(shapely.box(0, 0, info.width, info.height)))


def unit_name(unit) -> str:
    """An image's file name, or a mosaic's description."""
    return Path(unit).name if isinstance(unit, str) else unit.name
