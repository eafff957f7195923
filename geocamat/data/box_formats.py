"""Pixel box files of the two common deep-learning formats: COCO ``.json`` and YOLO ``.txt``.

- COCO: one JSON file with ``images`` (``id``, ``file_name``), ``annotations`` (``image_id``, ``bbox`` as
  ``[x, y, width, height]`` in pixels, ``category_id``) and ``categories`` (``id``, ``name``); boxes find their
  image by ``file_name``.
- YOLO: one ``.txt`` per image, named after it, lines ``class x_centre y_centre width height`` as fractions of
  the image's width and height (YOLO-OBB's ``class x1 y1 ... x4 y4``: the box around the four corners); class
  names come from the dataset's ``data.yaml``/``dataset.yaml`` (``names``),
  ``classes.txt`` or ``obj.names`` in the label folder or up to three folders above it, else the class ids.

Both give :class:`geocamat.data.boxes.RawBox` lists (YOLO boxes flagged ``relative``: scaled by the matched
image's size). Every problem raises :class:`geocamat.errors.InvalidLabelsError` with a one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path

from geocamat.errors import InvalidLabelsError

#: bytes read from the start of a ``.json`` file to tell COCO from GeoJSON
SNIFF_BYTES = 65536
#: folders above a YOLO label file searched for its class names
NAME_FILE_LEVELS = 4
YOLO_NAME_FILES = ("data.yaml", "dataset.yaml", "data.yml", "classes.txt", "obj.names")


def is_coco(path: Path) -> bool:
    """Whether a ``.json`` file is a COCO annotation file rather than GeoJSON (sniffed from its start)."""
    if path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES).decode("utf-8", "replace")
    if '"FeatureCollection"' in head or '"Feature"' in head:
        return False
    return any(f'"{k}"' in head for k in ("annotations", "categories", "images"))


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def read_coco(path: Path) -> list:
    """Boxes of a COCO annotation file (``bbox`` ``[x, y, w, h]`` in pixels)."""
    from geocamat.data.boxes import RawBox

    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidLabelsError(f"{path} is not valid JSON ({_one_line(exc)[:100]})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list) \
            or not isinstance(doc.get("images"), list):
        raise InvalidLabelsError(f"{path}: a COCO file needs the lists 'images' and 'annotations' (and 'categories')")
    from geocamat.data.boxes import declared_size

    try:
        files = {im["id"]: str(im["file_name"]) for im in doc["images"]}
        sizes = {im["id"]: declared_size(im.get("width"), im.get("height")) for im in doc["images"]}
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidLabelsError(f"{path}: every entry of 'images' needs 'id' and 'file_name'") from exc
    try:
        names = {c["id"]: str(c.get("name", c["id"])) for c in doc.get("categories") or []}
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidLabelsError(f"{path}: every entry of 'categories' needs 'id' and 'name'") from exc
    out = []
    for i, ann in enumerate(doc["annotations"]):
        where = f"{path}: annotation {i + 1}"
        if not isinstance(ann, dict) or ann.get("image_id") not in files:
            raise InvalidLabelsError(f"{where} names image_id {ann.get('image_id') if isinstance(ann, dict) else '?'}"
                                     f" that is not in its 'images'; fix the file")
        bbox = ann.get("bbox")
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError) as exc:
            raise InvalidLabelsError(f"{where} has no 'bbox' [x, y, width, height] of numbers") from exc
        cat = ann.get("category_id")
        if names and cat not in names:
            raise InvalidLabelsError(f"{where} has category_id {cat} that is not in its 'categories'; fix the file")
        out.append(RawBox(files[ann["image_id"]], x, y, x + w, y + h, names.get(cat, str(cat)), str(path),
                          drawn_on=sizes[ann["image_id"]]))
    return out


#: fields of a YOLO line: class and box (5), with a confidence (6), class and 4 corners (YOLO-OBB, 9)
YOLO_FIELDS = (5, 6, 9)


def is_yolo(lines: list[str]) -> bool:
    """Whether the lines of a ``.txt`` label file are YOLO's (5 or 6 numbers; YOLO-OBB's 9: a class id then four
    corners in fractions) rather than DOTA's (four corners in pixels, then a class name)."""
    for line in lines:
        parts = line.split()
        if parts and not line.startswith(("imagesource:", "gsd:")):
            return len(parts) in (5, 6) or len(parts) == 9 and _yolo_obb(parts)
    return False


def _yolo_obb(parts: list[str]) -> bool:
    """Whether nine fields are YOLO-OBB's (an integer class, then eight numbers none above 1.5)."""
    try:
        values = [float(v) for v in parts]
    except ValueError:
        return False
    return values[0] == int(values[0]) and max(values[1:]) <= 1.5


def _names_from_yaml(path: Path) -> list[str] | dict | None:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidLabelsError(f"{path} is not valid YAML ({_one_line(exc)[:100]})") from exc
    names = doc.get("names") if isinstance(doc, dict) else None
    return names if isinstance(names, (list, dict)) else None


def yolo_class_names(label: Path) -> tuple[dict[int, str], Path | None]:
    """Class id -> name of a YOLO label file, from the first names file found at or above its folder.

    Returns:
        (names, the file they came from); ``({}, None)`` when no names file is found (ids are the names).
    """
    folder = label.resolve().parent
    for _ in range(NAME_FILE_LEVELS):
        for fname in YOLO_NAME_FILES:
            f = folder / fname
            if not f.is_file():
                continue
            if f.suffix in (".yaml", ".yml"):
                names = _names_from_yaml(f)
                if names is None:
                    continue
                items = names.items() if isinstance(names, dict) else enumerate(names)
                return {int(k): str(v) for k, v in items}, f
            lines = [s.strip() for s in f.read_text().splitlines()]
            return {i: s for i, s in enumerate(lines) if s}, f
        if folder.parent == folder:
            break
        folder = folder.parent
    return {}, None


def read_yolo(path: Path, lines: list[str]) -> list:
    """Boxes of a YOLO label file (``relative``: fractions of the image size), named by :func:`yolo_class_names`."""
    from geocamat.data.boxes import RawBox

    names, source = yolo_class_names(path)
    out = []
    for i, line in enumerate(lines):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in YOLO_FIELDS:
            raise InvalidLabelsError(f"{path}: line {i + 1} is not 'class x_centre y_centre width height' (YOLO) "
                                     "nor 'class x1 y1 x2 y2 x3 y3 x4 y4' (YOLO-OBB)")
        try:
            cls = int(float(parts[0]))
            values = [float(v) for v in parts[1:]]
        except ValueError as exc:
            raise InvalidLabelsError(f"{path}: line {i + 1} has a non-numeric value") from exc
        if len(parts) == 9:  # YOLO-OBB: the box around the four corners
            xs, ys = values[0::2], values[1::2]
            cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
        else:
            cx, cy, w, h = values[:4]
        if max(cx, cy, w, h) > 1.5 or len(parts) == 9 and max(values) > 1.5:
            raise InvalidLabelsError(
                f"{path}: line {i + 1} has coordinates above 1; YOLO boxes are fractions of the image size "
                f"(for pixel boxes use CSV, VOC or COCO)")
        if names and cls not in names:
            raise InvalidLabelsError(f"{path}: line {i + 1} has class {cls}, which {source.name} does not name "
                                     f"(it names {len(names)} classes)")
        out.append(RawBox(path.stem, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, names.get(cls, str(cls)),
                          str(path), relative=True))
    return out
