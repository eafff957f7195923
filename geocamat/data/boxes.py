"""Object boxes for detection: read labels in any supported format as axis-aligned pixel boxes.

Supported label files:

- vector files in map coordinates (GeoPackage, GeoJSON, Shapefile, ...; polygons or boxes, any CRS):
  each geometry becomes the axis-aligned box of its footprint in the pixel grid of every georeferenced
  image it overlaps (reprojected once per image CRS);
- DeepForest-style CSV ``image_path,xmin,ymin,xmax,ymax,label`` (pixel coordinates);
- Pascal VOC ``.xml`` (pixel coordinates; ``<filename>`` names the image);
- DOTA ``.txt`` (``x1 y1 ... x4 y4 class difficult`` quadrilaterals, pixel coordinates; the file stem
  names the image);
- COCO ``.json`` and YOLO ``.txt`` (:mod:`geocamat.data.box_formats`).

A ``.txt`` file without boxes (YOLO's and DOTA's way of saying "no object in this image") adds none.

Every problem a user can cause raises :class:`geocamat.errors.InvalidLabelsError` with a one-line message.
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from geocamat.data.box_formats import YOLO_NAME_FILES, is_coco, is_yolo, read_coco, read_yolo
from geocamat.data.vector_layers import VECTOR_SUFFIXES, read_vector, vector_file
from geocamat.errors import InvalidLabelsError

PIXEL_SUFFIXES = {".csv", ".xml", ".txt"}


def pixel_labels(path: str | Path) -> bool:
    """Whether a label file holds boxes in image pixels (CSV, VOC, DOTA/YOLO text, COCO), not map coordinates."""
    path = Path(path)
    return path.suffix.lower() in PIXEL_SUFFIXES or is_coco(path)


def _one_spelling(merged: dict[str, list], classes: list[str] | None) -> dict[str, list]:
    """The boxes with one spelling per class name (:func:`geocamat.data.classes.one_spelling`: spaces dropped,
    names differing only in case merged, with a warning); names matching ``classes`` but for case take its
    spelling."""
    from collections import Counter

    from geocamat.data.classes import spellings

    mapping = spellings(dict(Counter(str(b[4]) for v in merged.values() for b in v)), "labels", classes)
    return {k: [(*b[:4], mapping[str(b[4])], *b[5:]) for b in v] for k, v in merged.items()}


def expand_label_paths(items: str | list[str], what: str = "labels") -> list[str]:
    """Label files (paths, globs, folders) as strings, in argument order: from a folder, its box files of
    every format (a DOTA ``labelTxt`` or YOLO ``labels`` folder, VOC ``.xml``, vector layers), not the images
    beside them nor the class-name files (``classes.txt``, ``data.yaml``) that YOLO keeps there."""
    from geocamat.data.paths import expand_paths

    suffixes = tuple(PIXEL_SUFFIXES) + tuple(VECTOR_SUFFIXES)
    files = expand_paths(items, suffixes, what)
    kept = [p for p in files if p.name.lower() not in YOLO_NAME_FILES]
    if not kept:
        raise InvalidLabelsError(f"no box files among {', '.join(p.name for p in files[:3])}: give the label files "
                                 "(.xml, .csv, .txt, .json, .gpkg ...)")
    return [str(p) for p in kept]


@dataclass
class ImageBoxes:
    """The boxes of one image, in pixel coordinates (x to the right, y down, origin at the top-left corner).

    Attributes:
        image: path of the image.
        width: image width in pixels.
        height: image height in pixels.
        boxes: (M, 4) float32 array of xmin, ymin, xmax, ymax.
        names: M class names.
    """

    image: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    names: list[str] = field(default_factory=list)

    def near(self, col: float, width: float) -> np.ndarray:
        """Indices (increasing) of the boxes that may meet the columns [col, col + width): every box that does,
        found by bisection over the boxes sorted by xmin, so that a window of an image with 100,000 boxes
        looks at the few hundred in its column range instead of all of them."""
        lo, hi = self.column_index.ranges(np.array([col], float), np.array([col + width], float))
        return np.sort(self.column_index.order[lo[0]:hi[0]])

    @cached_property
    def column_index(self) -> ColumnIndex:
        """The boxes sorted by xmin (built on first use; the boxes of an image are not changed after loading)."""
        return ColumnIndex(self.boxes)


class ColumnIndex:
    """Boxes sorted by xmin, to find those that may meet a range of columns by bisection.

    A box meets the columns [start, end) only if its xmin lies in (start - widest, end), ``widest`` being the
    widest box's width; :meth:`ranges` gives, per query, the slice of :attr:`order` that holds those boxes.
    """

    def __init__(self, boxes: np.ndarray) -> None:
        boxes = np.asarray(boxes).reshape(-1, 4)
        self.order = np.argsort(boxes[:, 0], kind="stable")
        self.xmin = boxes[self.order, 0]
        self.widest = float((boxes[:, 2] - boxes[:, 0]).max()) if len(boxes) else 0.0

    def ranges(self, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) bounds into :attr:`order` of the boxes that may meet each range [starts[i], ends[i])."""
        return (np.searchsorted(self.xmin, starts - self.widest, "left"),
                np.searchsorted(self.xmin, ends, "left"))


@dataclass
class RawBox:
    """A pixel box read from a label file, before it is matched to an image."""

    image_key: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    name: str
    source: str
    relative: bool = False  # coordinates are fractions of the image's width and height (YOLO)
    drawn_on: tuple[int, int] | None = None  # (width, height) of the image the file says the boxes were drawn on


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _keys(path: str) -> tuple[str, str]:
    """Basename and stem of a path, lower-cased, to match label files to images."""
    p = Path(str(path).replace("\\", "/"))
    return p.name.lower(), p.stem.lower()


def read_voc(path: Path) -> list[RawBox]:
    """Boxes of a Pascal VOC annotation file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InvalidLabelsError(f"{path} is not a valid Pascal VOC xml file ({_one_line(exc)})") from exc
    filename = (root.findtext("filename") or "").strip() or path.stem
    drawn_on = declared_size(root.findtext("size/width"), root.findtext("size/height"))
    out = []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if bb is None or not name:
            raise InvalidLabelsError(f"{path}: object {i + 1} has no <name> or <bndbox>; fix or remove it")
        try:
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError) as exc:
            raise InvalidLabelsError(f"{path}: object {i + 1} has a non-numeric box; fix the <bndbox>") from exc
        out.append(RawBox(filename, *coords, name, str(path), drawn_on=drawn_on))
    return out


def declared_size(width, height) -> tuple[int, int] | None:
    """The image size a label file declares (VOC ``<size>``, COCO ``width``/``height``), None when it gives none
    (or zeros, as some exporters write)."""
    try:
        size = int(float(width)), int(float(height))
    except (TypeError, ValueError):
        return None
    return size if min(size) > 0 else None


def read_csv_boxes(path: Path) -> list[RawBox]:
    """Boxes of a DeepForest-style CSV (``image_path,xmin,ymin,xmax,ymax,label``); a row of four zeros is
    DeepForest's way of listing an image without objects and adds no box."""
    with open(path, newline="", encoding="utf-8-sig") as fh:  # Excel's "CSV UTF-8" starts with a byte-order mark
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        need = ["image_path", "xmin", "ymin", "xmax", "ymax", "label"]
        missing = [f for f in need if f not in fields]
        if missing:
            raise InvalidLabelsError(
                f"{path} lacks column(s) {', '.join(missing)}; a box CSV needs {','.join(need)}")
        out = []
        for i, row in enumerate(reader):
            row = {k.strip(): v for k, v in row.items() if k is not None}
            try:
                coords = [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError) as exc:
                raise InvalidLabelsError(f"{path}: row {i + 2} has a non-numeric box coordinate") from exc
            if not any(coords):
                continue
            out.append(RawBox(row["image_path"].strip(), *coords, str(row["label"]).strip(), str(path)))
    return out


def read_dota(path: Path, lines: list[str] | None = None) -> list[RawBox]:
    """Axis-aligned boxes (min/max of the 4 corners) of a DOTA ``labelTxt`` file."""
    out = []
    for i, line in enumerate(path.read_text().splitlines() if lines is None else lines):
        parts = line.split()
        if not parts or line.startswith(("imagesource:", "gsd:")):
            continue
        if len(parts) < 9:
            raise InvalidLabelsError(f"{path}: line {i + 1} is not `x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]`")
        try:
            xy = np.array([float(v) for v in parts[:8]]).reshape(4, 2)
        except ValueError as exc:
            raise InvalidLabelsError(f"{path}: line {i + 1} has a non-numeric corner") from exc
        out.append(RawBox(path.stem, xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max(), parts[8],
                          str(path)))
    return out


def read_pixel_boxes(path: Path) -> list[RawBox]:
    """Read a pixel-coordinate label file by its suffix (.csv, .xml, .txt: YOLO or DOTA by its lines, COCO .json)."""
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return read_voc(path)
    if suffix == ".csv":
        return read_csv_boxes(path)
    if suffix == ".txt":
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError as exc:
            raise InvalidLabelsError(f"{path} is not a text file; a .txt label file is YOLO or DOTA text") from exc
        return read_yolo(path, lines) if is_yolo(lines) else read_dota(path, lines)
    if is_coco(path):
        return read_coco(path)
    raise InvalidLabelsError(
        f"{path}: unknown pixel label format {suffix!r}; use .csv, .xml (VOC), .json (COCO) or .txt (YOLO, DOTA)")


def _check_box(b: RawBox, width: int, height: int, image: str) -> tuple[float, float, float, float] | None:
    """Validate one pixel box; clip it to the image. Raises on a degenerate box or one entirely outside."""
    vals = tuple(round(float(v), 1) for v in (b.xmin, b.ymin, b.xmax, b.ymax))
    if not all(math.isfinite(v) for v in vals) or b.xmax <= b.xmin or b.ymax <= b.ymin:
        raise InvalidLabelsError(
            f"{b.source}: box {vals} of {Path(image).name} is empty or inverted; xmax > xmin and ymax > ymin needed")
    if b.xmax <= 0 or b.ymax <= 0 or b.xmin >= width or b.ymin >= height:
        raise InvalidLabelsError(
            f"{b.source}: box {vals} lies outside image {Path(image).name} "
            f"({width}x{height} px); are these the labels of another image?")
    x0, y0 = max(0.0, b.xmin), max(0.0, b.ymin)
    x1, y1 = min(float(width), b.xmax), min(float(height), b.ymax)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return x0, y0, x1, y1


@dataclass
class ImageInfo:
    """What the label readers need to know about an image."""

    path: str
    width: int
    height: int
    crs: object | None = None  # rasterio CRS
    transform: object | None = None  # affine.Affine

    def to_pixels(self, geometry, crs):
        """A shapely geometry in ``crs`` (map coordinates) in this image's pixel grid (x = column, y = row)."""
        from shapely import affinity

        if crs != self.crs:
            import geopandas as gpd

            geometry = gpd.GeoSeries([geometry], crs=crs).to_crs(self.crs).iloc[0]
        inv = ~self.transform
        return affinity.affine_transform(geometry, [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff])


def match_pixel_boxes(raw: list[RawBox], images: list[ImageInfo], source: Path) -> dict[str, list]:
    """Assign pixel boxes to images by file name (basename first, then stem).

    Returns:
        ``{image path: [(xmin, ymin, xmax, ymax, name), ...]}``.
    """
    by_name = {_keys(im.path)[0]: im for im in images}
    by_stem: dict[str, list[ImageInfo]] = {}
    for im in images:
        by_stem.setdefault(_keys(im.path)[1], []).append(im)
    out: dict[str, list] = {}
    unmatched = set()
    for b in raw:
        name, stem = _keys(b.image_key)
        im = by_name.get(name)
        if im is None and len(by_stem.get(stem, [])) == 1:
            im = by_stem[stem][0]
        if im is None:
            unmatched.add(b.image_key)
            continue
        if b.drawn_on is not None and b.drawn_on != (im.width, im.height):
            raise InvalidLabelsError(
                f"{b.source}: its boxes of {Path(im.path).name} were drawn on a {b.drawn_on[0]}x{b.drawn_on[1]} px "
                f"image (the size the file declares) but {Path(im.path).name} is {im.width}x{im.height} px: give the "
                "image they were drawn on, or labels drawn on this one")
        if b.relative:
            b = RawBox(b.image_key, b.xmin * im.width, b.ymin * im.height, b.xmax * im.width, b.ymax * im.height,
                       b.name, b.source)
        box = _check_box(b, im.width, im.height, im.path)
        if box is not None:
            out.setdefault(im.path, []).append((*box, b.name))
    if unmatched and not out:
        raise InvalidLabelsError(
            f"{source}: its boxes name image(s) {', '.join(sorted(unmatched)[:3])} that are not among the "
            f"given images; add them to `images` or fix the image names")
    return out


#: ``label_field`` value for vector layers whose features are all one class of objects (buildings, tree crowns)
ONE_CLASS = "none"
ONE_CLASS_NAME = "object"
#: fields named in the message when the class field is missing
MAX_FIELDS_SHOWN = 6


#: features read to tell a layer in the wrong CRS from one of another area, when none meets the images
CRS_CHECK_FEATURES = 1000


def images_ground(images: list[ImageInfo]) -> list | None:
    """``[(bounds, CRS)]`` of each georeferenced image (the parts of a label layer to read), or None (read it all)
    when none is georeferenced."""
    from rasterio.transform import array_bounds

    return [(array_bounds(im.height, im.width, im.transform), im.crs) for im in images
            if im.crs is not None and im.transform is not None] or None


def vector_boxes(path: Path, images: list[ImageInfo], label_field: str) -> dict[str, list]:
    """Boxes from a vector file in map coordinates, in the pixel grid of each georeferenced image.

    Args:
        path: vector file (anything pyogrio reads).
        images: images with their CRS and transform.
        label_field: attribute holding the class name; :data:`ONE_CLASS` (``none``): every feature is one
            class of objects, named :data:`ONE_CLASS_NAME`.

    Returns:
        ``{image path: [(xmin, ymin, xmax, ymax, name), ...]}``.
    """
    gdf = read_vector(path, "label file", field=None if label_field == ONE_CLASS else label_field,
                      within=images_ground(images))
    if len(gdf) == 0 and gdf.attrs.get("layer_features"):  # elsewhere, or in a CRS they do not fit (told below)
        gdf = read_vector(path, "label file", rows=CRS_CHECK_FEATURES)
    if len(gdf) == 0:
        raise InvalidLabelsError(f"{path} has no features; draw boxes or polygons around the objects")
    if gdf.crs is None:
        raise InvalidLabelsError(f"{path} has no CRS; assign one (e.g. in QGIS: Layer > Assign Projection)")
    if label_field == ONE_CLASS and ONE_CLASS not in gdf.columns:
        gdf = gdf.assign(**{ONE_CLASS: ONE_CLASS_NAME})
    if label_field not in gdf.columns:
        cols = [c for c in gdf.columns if c != "geometry"]
        shown = ", ".join(cols[:MAX_FIELDS_SHOWN]) + (f" (and {len(cols) - MAX_FIELDS_SHOWN} more)"
                                                       if len(cols) > MAX_FIELDS_SHOWN else "")
        raise InvalidLabelsError(
            f"{path.name} has no field {label_field!r}: give --label-field with each object's class (fields: "
            f"{shown or 'none'}), or --label-field {ONE_CLASS} for one class of objects")
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    flat = gdf[~gdf.geom_type.isin(["Polygon", "MultiPolygon"])]
    if len(flat):
        kinds = ", ".join(sorted(set(flat.geom_type)))
        raise InvalidLabelsError(
            f"{path.name}: {len(flat)} of its {len(gdf)} features are {kinds}, not areas: detection learns a box "
            "around each object; draw polygons or boxes, or buffer the points to the objects' size (QGIS: "
            "Vector > Geoprocessing Tools > Buffer, or Rectangles, Ovals, Diamonds)")
    geo = [im for im in images if im.crs is not None]
    if not geo:
        raise InvalidLabelsError(
            f"{path} is in map coordinates but no training image is georeferenced; use pixel labels "
            f"(CSV/VOC/DOTA) or georeferenced GeoTIFFs")
    out: dict[str, list] = {}
    cache: dict[str, object] = {}
    for im in geo:
        key = im.crs.to_string()
        if key not in cache:
            cache[key] = gdf.to_crs(im.crs)  # reprojected once per CRS
            if not np.isfinite(cache[key].total_bounds).all():
                raise InvalidLabelsError(
                    f"{path}: coordinates do not fit its CRS {gdf.crs.to_string()} (they cannot be reprojected); "
                    f"is the CRS of the file wrong?")
        local = cache[key]
        inv = ~im.transform
        for geom, name in zip(local.geometry, local[label_field], strict=True):
            x0, y0, x1, y1 = geom.bounds
            corners = np.array([inv @ (x, y) for x, y in ((x0, y0), (x0, y1), (x1, y0), (x1, y1))])
            px0, py0 = corners.min(axis=0)
            px1, py1 = corners.max(axis=0)
            if px1 <= 0 or py1 <= 0 or px0 >= im.width or py0 >= im.height:
                continue
            b = RawBox(im.path, px0, py0, px1, py1, str(name), str(path))
            box = _check_box(b, im.width, im.height, im.path)
            if box is not None:
                out.setdefault(im.path, []).append((*box, str(name)))
    if not out:
        raise InvalidLabelsError(
            f"{path}: no feature overlaps the training images (checked in each image's CRS); "
            f"are the labels for another area?")
    return out


def load_boxes(
    label_paths: list[Path], images: list[ImageInfo], label_field: str = "label",
    classes: list[str] | None = None,
) -> tuple[list[ImageBoxes], list[str]]:
    """Read every label file and return the boxes per image and the class list.

    Args:
        label_paths: label files (vector or pixel formats, may be mixed).
        images: the images the labels belong to.
        label_field: class attribute of vector files.
        classes: the allowed classes, in output order; inferred (sorted names) when None.

    Returns:
        (one :class:`ImageBoxes` per image, in the order of ``images``; class names).

    Raises:
        InvalidLabelsError: empty or unreadable files, boxes outside the image, unknown classes, missing CRS,
            unknown field, or no box at all.
    """
    merged: dict[str, list] = {}
    for spec in label_paths:
        path = vector_file(spec)  # a vector file's layer is named as FILE:LAYER
        if not path.is_file():
            raise InvalidLabelsError(f"label file not found: {path}")
        txt = path.suffix.lower() == ".txt"
        if path.stat().st_size == 0 and not txt:
            raise InvalidLabelsError(f"{path} is empty; it must hold at least one box")
        if pixel_labels(path):
            raw = read_pixel_boxes(path)
            if not raw and txt:  # an image without objects
                continue
            if not raw:
                raise InvalidLabelsError(f"{path} holds no boxes; it must hold at least one box")
            found = match_pixel_boxes(raw, images, path)
        else:
            found = vector_boxes(Path(spec), images, label_field)
        for k, v in found.items():
            merged.setdefault(k, []).extend(v)
    merged = _one_spelling(merged, classes)
    names = sorted({b[4] for v in merged.values() for b in v})
    if classes is None:
        classes = names
    else:
        classes = [str(c) for c in classes]
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise InvalidLabelsError(
                f"labels use class(es) {', '.join(unknown[:5])} not in `classes` ({', '.join(classes)}); "
                f"add them to `classes` or fix the labels")
    if not classes:
        raise InvalidLabelsError("no boxes found in the label files; check the files and the image names")
    result = []
    for im in images:
        rows = merged.get(im.path, [])
        boxes = np.array([r[:4] for r in rows], np.float32).reshape(-1, 4)
        result.append(ImageBoxes(im.path, im.width, im.height, boxes, [r[4] for r in rows]))
    return result, classes
