"""``geocamat info --check``: would this model run well on these inputs? (What would go wrong, before it does.)

Checks a bundle against a user's images (and optionally labels or an AOI): every file readable (first and
last block), georeferenced, the bands the model expects, a pixel size within 4x of the model's, labels or
AOI overlapping the images, label classes the model knows, label geometries valid.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocamat.data.crs import crs_label
from geocamat.errors import GeocamatError

LEVELS = ("ok", "warning", "problem")


@dataclass
class Finding:
    """One line of a check: level (ok, warning, problem), what it is about, and what was found."""

    level: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.subject}: {self.message}"


def check_against_bundle(bundle_path: str | Path, images: list[str], labels: str | None = None,
                         label_field: str | None = None) -> list[Finding]:
    """Check ``images`` (and ``labels``: a label raster, label layer or AOI) against the bundle.

    Returns:
        The findings, in order; any with level ``problem`` means predict/evaluate would fail or mislead.
    """
    from geocamat.bundle import Bundle

    out: list[Finding] = []
    try:
        bundle = Bundle.load(bundle_path)
    except GeocamatError as exc:
        return [Finding("problem", str(bundle_path), str(exc))]
    out.append(Finding("ok", str(bundle_path), f"{bundle.task} model, {len(bundle.bands)} bands "
                       f"({', '.join(bundle.bands)}), {len(bundle.classes)} classes"))
    if bundle.task == "scenes":
        _scene_images(bundle, images, out)
        return out
    files = _images(bundle, images, out)
    if not files:
        return out
    if bundle.task != "detection":
        _bands(bundle, files, out)
    else:
        _mosaics(files, out)
    _resolution(bundle, files[0], out)
    if labels and bundle.task == "detection":
        _box_labels(bundle, labels, files, label_field, out)
    elif labels:
        _labels(bundle, Path(labels), files, label_field, out)
    return out


def _images(bundle, images: list[str], out: list[Finding]) -> list[Path]:
    import rasterio

    from geocamat.preflight import check_blocks

    try:
        if bundle.task == "detection":
            from geocamat.data.detection_images import expand_paths

            files = [Path(p) for p in expand_paths(list(images), "image")]
        else:
            from geocamat.data.stack import resolve_inputs

            files = resolve_inputs(list(images))
    except GeocamatError as exc:
        out.append(Finding("problem", "images", str(exc)))
        return []
    good = []
    for path in files:
        try:
            check_blocks(path)
        except GeocamatError as exc:
            out.append(Finding("problem", "image", str(exc)))
            continue
        with rasterio.open(path) as src:
            crs = crs_label(src.crs)
            if crs is None:
                out.append(Finding("problem", str(path), "no CRS (no georeference): assign one with gdal_edit.py "
                                   "-a_srs, or predict with --force for pixel coordinates"))
                continue
            out.append(Finding("ok", str(path), f"readable, {src.count} band{'s' if src.count != 1 else ''}, "
                                                   f"{src.width} x {src.height} px, {crs}"))
        good.append(path)
    return good


def _mosaics(files: list[Path], out: list[Finding]) -> None:
    """Detection: which of the images predict will read as one mosaic (sheets of one grid that touch)."""
    from geocamat.data.detection_images import image_info
    from geocamat.data.image_mosaic import mosaic_groups

    groups = [g for g in mosaic_groups([image_info(str(p)) for p in files]) if len(g) > 1]
    if groups:
        n = sum(len(g) for g in groups)
        out.append(Finding("ok", "images", f"{n} images tile one pixel grid and touch: predict detects them as "
                           f"{len(groups)} mosaic{'s' if len(groups) > 1 else ''}, so objects on their edges are "
                           "found once"))


#: scene images whose problems are listed one by one (the rest are counted)
MAX_LISTED = 10
#: scene images decoded to compare their values with the training images'
VALUE_SAMPLE = 64


def _scene_images(bundle, images: list[str], out: list[Finding]) -> None:
    """A scene model's inputs: every header readable with the model's bands (grey repeated for colour), whether
    images will be classified in cells, and the values of the first images against the training images'."""
    import torch

    from geocamat.data.grey import fits, grey_for_colour
    from geocamat.data.scenes import load_image, same_bands, scene_header
    from geocamat.data.value_check import scaling_warning
    from geocamat.tasks.scenes.classify import scene_files
    from geocamat.tasks.scenes.ground import CHIP_FACTOR, auto_chip, training_side

    try:
        files = scene_files(list(images))
    except GeocamatError as exc:
        out.append(Finding("problem", "images", str(exc)))
        return
    want, side, metres = len(bundle.bands), bundle.extra.get("source_side"), bundle.extra.get("source_metres")
    good, greys, big, problems = [], 0, 0, []
    sizes = []
    for path in files:
        try:
            bands, w, h, pixel = scene_header(path)
        except GeocamatError as exc:
            problems.append(Finding("problem", "image", str(exc)))
            continue
        if not fits(bands, want):
            problems.append(Finding("problem", str(path), f"{bands} bands but the model expects {want}"))
            continue
        greys += grey_for_colour(bands, want)
        big += bool(auto_chip(w, h, training_side(side, metres, pixel)))
        sizes.append(max(w, h))
        good.append(path)
    out.extend(problems[:MAX_LISTED])
    if len(problems) > MAX_LISTED:
        out.append(Finding("problem", "images", f"{len(problems) - MAX_LISTED} more images with problems"))
    if not good:
        return
    sides = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"
    said = f"{len(good)} image{'s' if len(good) != 1 else ''} readable with the model's bands, {sides} px a side"
    if greys:
        said += f"; {greys} grey, repeated into 3 bands"
    if big:
        ground = f" ({side * metres:.4g} m)" if metres else ""
        said += (f"; {big} over {CHIP_FACTOR:g}x the training images' {side} px{ground}, classified in cells of "
                 f"that {'ground' if metres else 'size'}")
    out.append(Finding("ok", "images", said))
    x, _ = same_bands([load_image(p, int(bundle.tile_size)) for p in good[:VALUE_SAMPLE]], good[:VALUE_SAMPLE], want)
    warned = scaling_warning(torch.stack(x).double().mean(dim=(0, 2, 3)).numpy(), bundle.bands, bundle.mean,
                             bundle.std)
    values = f"the first {len(x)} images' values" if len(x) > 1 else "the image's values"
    out.append(Finding("warning", "values", warned[0].removeprefix("warning: ")) if warned else
               Finding("ok", "values", f"{values} are like the training images'"))


def _bands(bundle, files: list[Path], out: list[Finding]) -> None:
    from geocamat.inference.landuse import model_stack

    with tempfile.TemporaryDirectory(prefix="geocamat-check-") as tmp:
        try:
            stack = model_stack(bundle, [str(p) for p in files], Path(tmp))
        except GeocamatError as exc:
            out.append(Finding("problem", "bands", str(exc)))
            return
    warned = [n for n in stack.notes if n.startswith("warning:")]
    if warned:
        out.append(Finding("warning", "bands", "; ".join(w.removeprefix("warning: ") for w in warned)))
    else:
        out.append(Finding("ok", "bands", "; ".join([", ".join(stack.band_names), *stack.notes])))


def _resolution(bundle, path: Path, out: list[Finding]) -> None:
    from geocamat.preflight import check_resolution

    try:
        ratio = check_resolution(bundle, path)
    except GeocamatError as exc:
        out.append(Finding("problem", "resolution", str(exc)))
        return
    if ratio is None:
        out.append(Finding("warning", "resolution", "not compared (the model or the image has no georeference)"))
    else:
        out.append(Finding("ok", "resolution", f"image pixels are {ratio:.2f}x the model's training pixels"))


def _image_bounds(files: list[Path], crs):
    """Union of the images' bounds, in ``crs``."""
    import rasterio
    from rasterio.warp import transform_bounds

    boxes = []
    for path in files:
        with rasterio.open(path) as src:
            boxes.append(transform_bounds(src.crs, crs, *src.bounds))
    b = np.array(boxes)
    return b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _box_labels(bundle, labels: str, files: list[Path], field: str | None, out: list[Finding]) -> None:
    """Boxes of any format (files, globs, folders, FILE:LAYER) as ``train --task detection`` reads them: how many
    fall on the images, of which classes, and classes the model does not know."""
    from collections import Counter

    from geocamat.data.boxes import expand_label_paths, load_boxes
    from geocamat.data.detection_images import image_info

    try:
        found, _ = load_boxes(expand_label_paths(labels), [image_info(str(f)) for f in files], field or "label")
    except GeocamatError as exc:
        out.append(Finding("problem", str(labels), str(exc)))
        return
    counts = Counter(name for image in found for name in image.names)
    known = {c.name.casefold() for c in bundle.classes}  # as training and evaluate match them
    unknown = sorted(name for name in counts if name.casefold() not in known)
    if unknown:
        out.append(Finding("problem", str(labels), f"holds classes the model does not know ({', '.join(unknown[:10])});"
                           f" the model's: {', '.join(c.name for c in bundle.classes)}"))
        return
    per_image = sum(1 for image in found if image.names)
    out.append(Finding("ok", str(labels), f"{sum(counts.values())} boxes on {per_image} of {len(found)} images; "
                       + ", ".join(f"{name} {n}" for name, n in counts.most_common())))


def _labels(bundle, path: Path, files: list[Path], field: str | None, out: list[Finding]) -> None:
    from geocamat.data.vector_layers import is_vector, vector_file

    if not vector_file(path).exists():
        out.append(Finding("problem", str(path), "no such file"))
        return
    if is_vector(path):
        _vector_labels(bundle, path, files, field, out)
    else:
        _raster_labels(bundle, path, files, out)


def _raster_labels(bundle, path: Path, files: list[Path], out: list[Finding]) -> None:
    import rasterio

    from geocamat.data.labels import check_class_bands
    from geocamat.preflight import check_blocks

    try:
        check_blocks(path)
    except GeocamatError as exc:
        out.append(Finding("problem", str(path), str(exc)))
        return
    with rasterio.open(path) as src:
        if src.crs is None:
            out.append(Finding("problem", str(path), "no CRS: assign one with gdal_edit.py -a_srs"))
            return
        try:
            check_class_bands(src, path, "label raster")
        except GeocamatError as exc:
            out.append(Finding("problem", str(path), str(exc)))
            return
        if not _overlaps(src.bounds, _image_bounds(files, src.crs)):
            out.append(Finding("problem", str(path), "does not overlap the images (check both extents and CRS)"))
            return
        values = src.read(1, masked=True).compressed()
    from geocamat.tasks.landuse.reference_classes import UNSCORED, reference_codes

    codes = sorted(int(v) for v in np.unique(values))
    matching = reference_codes(path, bundle.class_ids, [c.name for c in bundle.classes])  # by name, if named
    unknown = [c for c in codes if matching.lookup.get(c, c) not in bundle.class_ids + [UNSCORED]]
    if unknown:
        out.append(Finding("problem", str(path), f"holds class codes the model does not know "
                           f"({', '.join(map(str, unknown[:10]))}); the model's: "
                           f"{', '.join(map(str, bundle.class_ids))}"))
    else:
        by_name = " (matched to the model's by name)" if matching.lookup else ""
        out.append(Finding("ok", str(path), f"overlaps the images; classes {', '.join(map(str, codes))}{by_name}"))


def _vector_labels(bundle, path: Path, files: list[Path], field: str | None, out: list[Finding]) -> None:
    from geocamat.data.vector_layers import LAYER_FIELD, read_label_layers, read_vector

    try:
        if field == LAYER_FIELD:  # each layer a class
            frame = read_label_layers([path], "labels", field, None, None)
        else:
            frame = read_vector(path, "labels", field=field)
    except GeocamatError as exc:
        out.append(Finding("problem", str(path), str(exc)))
        return
    if frame.crs is None:
        out.append(Finding("problem", str(path), "no CRS: set one (a .prj file or ogr2ogr -a_srs)"))
        return
    if frame.empty or not _overlaps(frame.total_bounds, _image_bounds(files, frame.crs)):
        out.append(Finding("problem", str(path), "no feature overlaps the images (check both extents and CRS)"))
        return
    invalid = int((~frame.geometry.is_valid).sum())
    if invalid:
        out.append(Finding("warning", str(path), f"{invalid} invalid (e.g. self-intersecting) geometries: they are "
                           "repaired with make_valid when used"))
    if field:
        if field not in frame.columns:
            out.append(Finding("problem", str(path), f"no field {field!r}; fields: "
                               f"{', '.join(c for c in frame.columns if c != frame.geometry.name)}"))
            return
        known = {str(c) for c in bundle.class_ids} | {c.name for c in bundle.classes}
        values = {str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in frame[field].dropna()}
        unknown = sorted(values - known)
        if unknown:
            out.append(Finding("problem", str(path), f"field {field!r} holds classes the model does not know "
                               f"({', '.join(unknown[:10])})"))
            return
    out.append(Finding("ok", str(path), f"{len(frame)} features overlapping the images"))
