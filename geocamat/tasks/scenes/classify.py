"""Classify images with a scene model: one class per image.

Writes ``scenes.csv`` (one row per image: its class, the confidence and every class's probability),
``report.json`` (counts per class, settings, timings) and, when images are georeferenced (GeoTIFF chips of a
grid, EuroSAT-style), ``scenes.gpkg``: their footprints with the class, styled by class colours in QGIS (and
``scenes.qml``). An image much larger than the training images (a whole scene) is classified in chips of their
size, one row and one footprint per chip: a land-use map in cells. Images and chips are read, resized and
classified a batch at a time and rows are written as they come, so memory does not grow with their number.
"""

from __future__ import annotations

import csv
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import batched, chain
from pathlib import Path

import numpy as np

from geocamat.data.scenes import IMAGE_SUFFIXES
from geocamat.errors import InputNotFoundError, InvalidRasterError
from geocamat.tasks.scenes.cell_maps import FOLDER as CELLS
from geocamat.tasks.scenes.cell_maps import CellMaps
from geocamat.tasks.scenes.ground import SCALE_WARNING, auto_chip, describe, training_side

#: the results ``geocamat predict`` writes for a scene model
SCENE_RESULTS = ("scenes.csv", "scenes.csvt", "scenes.gpkg", "scenes.qml", "cells", "report.json")
LAYER = "scenes"
#: the footprints' fill opacity in the stored style: the imagery under each chip shows through
FILL_OPACITY = 0.55
#: footprints buffered before they are appended to the GeoPackage
FLUSH_ROWS = 20_000


@dataclass
class Unit:
    """What one row classifies: a whole image (``window`` None) or a chip of it.

    ``window``: the (col, row, width, height) read (full chip size, shifted inside the image at its right and
    bottom edges); ``cell``: the part of the image the row stands for (the chips' cells tile the image).
    """

    path: Path
    window: tuple[int, int, int, int] | None = None
    cell: tuple[int, int, int, int] | None = None


def chip_units(path: Path, width: int, height: int, chip: int) -> Iterator[Unit]:
    """The chips of an image: cells of ``chip`` px tiling it (the last ones cut by the edges), each classified
    from a full ``chip`` window containing it (flush with the edge where the cell is cut)."""
    for row in range(0, height, chip):
        for col in range(0, width, chip):
            cell = (col, row, min(chip, width - col), min(chip, height - row))
            c0, r0 = max(0, min(col, width - chip)), max(0, min(row, height - chip))
            yield Unit(path, (c0, r0, min(chip, width), min(chip, height)), cell)


@dataclass
class Plan:
    """How one image is classified: whole (``chip`` 0) or in cells of ``chip`` px."""

    path: Path
    width: int
    height: int
    chip: int = 0

    @property
    def count(self) -> int:
        """Rows this image gives."""
        return -(-self.width // self.chip) * -(-self.height // self.chip) if self.chip else 1

    def units(self) -> Iterator[Unit]:
        return chip_units(self.path, self.width, self.height, self.chip) if self.chip else iter([Unit(self.path)])


def plan_units(paths: list[Path], chip_size: int | None, source_side: int | None,
               source_metres: float | None = None) -> tuple[list[Plan], list[str]]:
    """Each image whole, or in chips when much larger than the training ones (:func:`.ground.auto_chip`).

    Args:
        chip_size: chip side in pixels for every image larger than it; 0: never chip; None: chip images whose
            side exceeds ``CHIP_FACTOR`` x the training images' side, in cells of that side: the same ground
            when both the image and the model have a ground size (``source_metres``), else the same pixels.
        source_side: the training images' median side (None for models trained before it was recorded).
        source_metres: the training images' median pixel side in metres (None: not georeferenced, or a model
            trained before it was recorded).

    Returns:
        (one plan per image, notes on the images chipped automatically and on images at another scale).
    """
    from geocamat.data.scenes import scene_header

    plans, notes, off_scale = [], [], []
    for path in paths:
        _, w, h, metres = scene_header(path)
        metres = metres if source_metres else None
        side = training_side(source_side, source_metres, metres)
        chip = chip_size
        if chip is None and (chip := auto_chip(w, h, side)):
            trained = describe(int(source_side), source_metres if metres else None)
            notes.append(f"note: {path.name} is {w}x{h} px{f' at {metres:.3g} m' if metres else ''}, "
                         f"{max(w, h) / side:.0f}x the training images ({trained}): classified in cells of "
                         f"{describe(chip, metres)}; --chip-size sets another size, --chip-size 0 "
                         "classifies it whole")
        chip = int(chip) if chip and max(w, h) > chip else 0
        if not chip and side and metres and not SCALE_WARNING ** -1 <= max(w, h) / side <= SCALE_WARNING:
            off_scale.append((path, max(w, h) * metres))
        plans.append(Plan(path, w, h, chip))
    if off_scale:
        (path, ground), many = off_scale[0], len(off_scale) != 1
        trained = source_side * source_metres
        notes.append(f"warning: {len(off_scale)} image{'s' if many else ''} cover{'' if many else 's'} "
                     f"under 1/{SCALE_WARNING:g} or over {SCALE_WARNING:g}x the ground of a training image (e.g. "
                     f"{path.name}: {ground:.4g} m a side, training images {trained:.4g} m): the model sees "
                     "them at a scale it never learnt")
    return plans, notes


class UnitReader:
    """Reads units in order, keeping the image of the last chip open (a scene's chips come one after another)."""

    def __init__(self, size: int) -> None:
        self.size, self.path, self.src = size, None, None

    def read(self, unit: Unit):
        """(float (C, size, size) pixels, share of the unit's pixels with data)."""
        from geocamat.data.scenes import load_image, load_window

        if unit.window is None:
            return load_image(unit.path, self.size), 1.0
        if unit.path != self.path:
            from geocamat.data.detection_images import open_image

            self.close()
            self.src, self.path = open_image(str(unit.path)), unit.path  # a plain PNG/JPG scene is chipped as well
        return load_window(self.src, unit.window, self.size)

    def close(self) -> None:
        if self.src is not None:
            self.src.close()
        self.src = self.path = None


def scene_files(items: list[str]) -> list[Path]:
    """Image files from paths, globs and folders (searched recursively: a folder per class works), in argument
    order, each part sorted, without repeats."""
    from geocamat.data.paths import expand_paths
    from geocamat.data.scenes import hidden

    found: list[Path] = []
    for item in items:
        if Path(item).is_dir():
            root = Path(item)
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(hidden(part) for part in p.relative_to(root).parents) and not hidden(p))
            if not files:
                raise InputNotFoundError(f"no image ({', '.join(IMAGE_SUFFIXES)}) in folder {item} or below it")
            found.extend(files)
        else:
            found.extend(expand_paths(item, IMAGE_SUFFIXES, "image"))
    return list(dict.fromkeys(found))


class Places:
    """Where units lie: each image's CRS and transform, read once per image (a scene has thousands of cells)."""

    def __init__(self) -> None:
        self._images: dict[Path, tuple[str, object, object] | None] = {}

    def _image(self, path: Path):
        if path not in self._images:
            from geocamat.data.detection_images import open_image
            from geocamat.errors import GeocamatError

            try:
                with open_image(str(path)) as src:
                    self._images[path] = (src.crs.to_wkt(), src.transform, src.bounds) if src.crs else None
            except GeocamatError:  # a plain image Pillow reads but GDAL does not: no footprint
                self._images[path] = None
        return self._images[path]

    def grid(self, path: Path) -> tuple[str, object] | None:
        """(CRS as WKT, transform) of a georeferenced image; None for a plain one."""
        image = self._image(path)
        return None if image is None else image[:2]

    def bounds(self, unit: Unit) -> tuple[str, tuple[float, float, float, float]] | None:
        """(CRS as WKT, bounds) of a unit of a georeferenced image (the image, or its chip's cell); None for a
        plain image."""
        from rasterio.windows import Window, bounds

        image = self._image(unit.path)
        if image is None:
            return None
        wkt, transform, whole = image
        return wkt, (tuple(whole) if unit.cell is None else bounds(Window(*unit.cell), transform))


class Footprints:
    """The georeferenced units' footprints with their predicted class, appended to the GeoPackage layer every
    :data:`FLUSH_ROWS` rows (in the first image's CRS, others reprojected), so memory does not grow with them.

    Args:
        gpkg: the layer's file (created on the first flush).
        classes: the model's classes (the stored style).
    """

    def __init__(self, gpkg: Path, classes) -> None:
        self.gpkg, self.classes, self.places = gpkg, classes, Places()
        self.rows: list[tuple] = []  # image, folder, cell (col, row, width, height) or None, class, probabilities
        self.target: str | None = None
        self.written = 0

    def add(self, unit: Unit, class_id: int, name: str, confidence: float, probabilities) -> None:
        """One classified unit (its row of scenes.csv: the same columns, and its footprint)."""
        where = self.places.bounds(unit)
        if where is not None:
            self.rows.append((str(unit.path), unit.path.parent.name, unit.cell, class_id, name, confidence,
                              [float(v) for v in probabilities], *where))
            if len(self.rows) >= FLUSH_ROWS:
                self.flush()

    def flush(self) -> None:
        """Append the buffered rows to the layer."""
        import geopandas as gpd
        import pandas as pd
        import pyogrio
        import shapely

        if not self.rows:
            return
        image, folder, cell, class_id, name, confidence, prob, wkt, bounds = (
            list(c) for c in zip(*self.rows, strict=True))
        self.target = self.target or wkt[0]
        cells = [c or (None,) * 4 for c in cell]  # a whole image has no cell: null, as scenes.csv leaves it empty
        parts = []
        for crs in dict.fromkeys(wkt):
            idx = [i for i, c in enumerate(wkt) if c == crs]
            columns = {"image": [image[i] for i in idx], "folder": [folder[i] for i in idx]}
            for k, key in enumerate(("col", "row", "width", "height")):
                columns[key] = pd.array([cells[i][k] for i in idx], dtype="Int32")
            columns |= {"class_id": np.array([class_id[i] for i in idx], np.int32),
                        "class_name": [name[i] for i in idx],
                        "confidence": np.array([confidence[i] for i in idx], float)}
            columns |= {f"p_{c.name}": np.array([prob[i][k] for i in idx], float) for k, c in enumerate(self.classes)}
            frame = gpd.GeoDataFrame(columns, geometry=shapely.box(*np.array([bounds[i] for i in idx], float).T),
                                     crs=crs)
            parts.append(frame.to_crs(self.target) if crs != self.target else frame)
        layer = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=self.target)
        options = {"append": True} if self.written else {"dataset_options": {"VERSION": "1.2"}}  # QGIS 3.22's GDAL
        pyogrio.write_dataframe(layer, self.gpkg, layer=LAYER, driver="GPKG", geometry_type="Polygon",
                                promote_to_multi=False, **options)
        self.written += len(layer)
        self.rows = []

    def close(self) -> None:
        """Write what is left and the class style (stored in the GeoPackage, and beside it as .qml)."""
        from geocamat.outputs.qml import categorized_polygon_qml
        from geocamat.outputs.style import ClassStyle
        from geocamat.outputs.vector import store_layer_style

        self.flush()
        if self.written:
            style = ClassStyle.from_classes(self.classes)
            store_layer_style(self.gpkg, LAYER, style, FILL_OPACITY)
            self.gpkg.with_suffix(".qml").write_text(categorized_polygon_qml(style, opacity=FILL_OPACITY),
                                                     encoding="utf-8")


class FolderAgreement:
    """How often a whole image's predicted class is the name of its folder, when every whole image sits in a
    folder named after a class (a labelled folder per class); counted as rows come."""

    def __init__(self, names: list[str]) -> None:
        self.names, self.images, self.agree, self.all_in_class_folders = set(names), 0, 0, True

    def add(self, path: Path, predicted: str) -> None:
        self.images += 1
        self.agree += path.parent.name == predicted
        self.all_in_class_folders &= path.parent.name in self.names

    def report(self) -> dict | None:
        if not self.images or not self.all_in_class_folders:
            return None
        return {"images": self.images, "agree": self.agree, "share": round(self.agree / self.images, 4)}


def predict_scenes(bundle, images: list[str], stage: Path, *, batch_size: int = 64, device: str = "auto",
                   chip_size: int | None = None, progress: bool = True, model_path: str | None = None) -> dict:
    """Classify every image of ``images`` (or its chips, see :func:`plan_units`) and write the results into
    ``stage`` (a staged output folder).

    Returns:
        The report (also written to ``report.json``).
    """
    import sys

    import torch

    from geocamat.allocator import fix_mmap_threshold
    from geocamat.data.chunks import bound_gdal_cache
    from geocamat.data.scenes import same_bands
    from geocamat.data.value_check import scaling_warning
    from geocamat.devices import resolve_device
    from geocamat.inference.telemetry import progress_bar
    from geocamat.outputs.jsonfile import write_json

    bound_gdal_cache()  # GDAL's block cache (5% of the machine's memory by default) would grow with the scene
    fix_mmap_threshold()  # thousands of windows read and freed would otherwise fragment the heap
    t0 = time.perf_counter()
    paths = scene_files(images)
    plans, notes = plan_units(paths, chip_size, bundle.extra.get("source_side"), bundle.extra.get("source_metres"))
    total = sum(p.count for p in plans)
    dev = resolve_device(device)
    model = bundle.build_model().to(dev).eval()
    names = [c.name for c in bundle.classes]
    bands, size = len(bundle.mean), int(bundle.tile_size)
    mean = torch.tensor(bundle.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std, dtype=torch.float32).view(1, -1, 1, 1)
    counts = dict.fromkeys(names, 0)
    agreement = FolderAgreement(names)
    greys = empty = 0
    places = Footprints(stage / "scenes.gpkg", bundle.classes)
    cell_maps, plan_of = CellMaps(stage / CELLS, bundle.classes), {p.path: p for p in plans}
    reader = UnitReader(size)
    bar = progress_bar(total=total, unit="image" if total == len(paths) else "chip", desc="classify",
                       file=sys.stderr, disable=None if progress else True, dynamic_ncols=True, leave=False)
    try:
        with open(stage / "scenes.csv", "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["image", "folder", "col", "row", "width", "height", "class_id", "class_name", "confidence",
                          *[f"p_{n}" for n in names]])
            from geocamat.outputs.csv_types import write_csvt

            types = ["String"] * 2 + ["Integer"] * 5 + ["String"] + ["Real"] * (len(names) + 1)
            write_csvt(stage / "scenes.csv", types)
            with torch.inference_mode():
                for first, batch in enumerate(batched(chain.from_iterable(p.units() for p in plans), batch_size)):
                    read = [(u, *reader.read(u)) for u in batch]
                    empty += sum(v == 0 for _, _, v in read)
                    chunk = [(u, x) for u, x, v in read if v > 0]  # a chip of nodata only is not classified
                    bar.update(len(read))
                    if not chunk:
                        continue
                    x, grey = same_bands([x for _, x in chunk], [u.path for u, _ in chunk], bands)
                    greys += grey
                    if first == 0:  # the first batch's values against the training images' (a scaling: wrong classes)
                        notes += scaling_warning(torch.stack(x).double().mean(dim=(0, 2, 3)).numpy(),
                                                 bundle.bands, bundle.mean, bundle.std)
                    prob = torch.softmax(model(((torch.stack(x) - mean) / std).to(dev)).float(), 1).cpu().numpy()
                    for (u, _), row in zip(chunk, prob, strict=True):
                        k = int(row.argmax())
                        cls = bundle.classes[k]
                        counts[cls.name] += 1
                        if u.cell is None:
                            agreement.add(u.path, cls.name)
                        elif u.path != cell_maps.path:  # the first classified cell of an image
                            cell_maps.start(plan_of[u.path], *(places.places.grid(u.path) or (None, None)))
                        cell_maps.add(u, cls.id)
                        out.writerow([str(u.path), u.path.parent.name, *(u.cell or ("", "", "", "")), cls.id,
                                      cls.name, f"{row[k]:.4f}", *[f"{v:.4f}" for v in row]])
                        places.add(u, cls.id, cls.name, float(row[k]), row)
        places.close()
        cell_maps.finish()
    finally:
        reader.close()
        bar.close()
    outputs = {"csv": "scenes.csv"}
    if places.written:
        outputs |= {"gpkg": "scenes.gpkg", "qml": "scenes.qml"}
    if cell_maps.written:
        outputs["cell_rasters"] = cell_maps.written
    if greys:
        notes.append(f"note: {greys} grey image{'s' if greys != 1 else ''} repeated into the model's 3 bands")
    classified = sum(counts.values())
    if not classified:  # every unit was a cell of nodata only: an empty result would read as "nothing there"
        raise InvalidRasterError(f"every cell of {', '.join(p.name for p in paths[:3])} is nodata: check the "
                                 "images' nodata value (gdalinfo) or give other images")
    if places.written and places.written < classified:
        notes.append(f"note: {classified - places.written} of {classified} images are not georeferenced: they are "
                     "in scenes.csv only, not in scenes.gpkg")
    if empty:
        notes.append(f"note: {empty} chip{'s' if empty != 1 else ''} without data (nodata only) not classified")
    chips = sum(p.count for p in plans if p.chip)
    report = {
        "task": "scenes", "images": len(paths), "chips": chips, "classified": classified, "counts": counts,
        "outputs": outputs, "georeferenced": places.written, "grey_images": greys, "empty_chips": empty,
        "folder_agreement": agreement.report(),
        "model": {"path": str(Path(model_path).resolve()) if model_path else None, "classes": names,
                  "image_size": size, "source_side": bundle.extra.get("source_side"),
                  "source_metres": bundle.extra.get("source_metres")},
        "settings": {"batch_size": batch_size, "device": str(dev), "chip_size": chip_size},
        "notes": notes, "timings": {"seconds": round(time.perf_counter() - t0, 3)}, "machine": platform.node(),
    }
    write_json(stage / "report.json", report)
    return report
