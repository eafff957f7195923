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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geocamat.data.scenes import IMAGE_SUFFIXES
from geocamat.errors import InputNotFoundError

#: the results ``geocamat predict`` writes for a scene model
SCENE_RESULTS = ("scenes.csv", "scenes.gpkg", "scenes.qml", "report.json")
LAYER = "scenes"
#: the footprints' fill opacity in the stored style: the imagery under each chip shows through
FILL_OPACITY = 0.55
#: an image whose side exceeds this many times the training images' median side is classified in chips
CHIP_FACTOR = 2.0


@dataclass
class Unit:
    """What one row classifies: a whole image (``window`` None) or a chip of it.

    ``window``: the (col, row, width, height) read (full chip size, shifted inside the image at its right and
    bottom edges); ``cell``: the part of the image the row stands for (the chips' cells tile the image).
    """

    path: Path
    window: tuple[int, int, int, int] | None = None
    cell: tuple[int, int, int, int] | None = None


def chip_units(path: Path, width: int, height: int, chip: int) -> list[Unit]:
    """The chips of an image: cells of ``chip`` px tiling it (the last ones cut by the edges), each classified
    from a full ``chip`` window containing it (flush with the edge where the cell is cut)."""
    units = []
    for row in range(0, height, chip):
        for col in range(0, width, chip):
            cell = (col, row, min(chip, width - col), min(chip, height - row))
            c0, r0 = max(0, min(col, width - chip)), max(0, min(row, height - chip))
            units.append(Unit(path, (c0, r0, min(chip, width), min(chip, height)), cell))
    return units


def plan_units(paths: list[Path], chip_size: int | None, source_side: int | None) -> tuple[list[Unit], list[str]]:
    """Whole images, or chips of the images much larger than the training ones (see :data:`CHIP_FACTOR`).

    Args:
        chip_size: chip side in pixels for every image larger than it; 0: never chip; None: chip images whose
            side exceeds :data:`CHIP_FACTOR` x ``source_side``, at ``source_side``.
        source_side: the training images' median side (None for models trained before it was recorded).

    Returns:
        (units, notes on the images chipped automatically).
    """
    from geocamat.data.scenes import scene_header

    units, notes = [], []
    for path in paths:
        _, w, h = scene_header(path)
        chip = chip_size
        if chip is None and source_side and max(w, h) > CHIP_FACTOR * source_side:
            chip = int(source_side)
            notes.append(f"note: {path.name} is {w}x{h} px, {max(w, h) / source_side:.0f}x the training images "
                         f"({source_side} px): classified in {chip}-px chips; --chip-size sets another size, "
                         "--chip-size 0 classifies it whole")
        if chip and max(w, h) > chip:
            units.extend(chip_units(path, w, h, int(chip)))
        else:
            units.append(Unit(path))
    return units, notes


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
            self.close()
            import warnings

            import rasterio
            from rasterio.errors import NotGeoreferencedWarning

            with warnings.catch_warnings():  # a plain PNG/JPG scene is chipped as well
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.src, self.path = rasterio.open(unit.path), unit.path
        return load_window(self.src, unit.window, self.size)

    def close(self) -> None:
        if self.src is not None:
            self.src.close()
        self.src = self.path = None


def scene_files(items: list[str]) -> list[Path]:
    """Image files from paths, globs and folders (searched recursively: a folder per class works), in argument
    order, each part sorted, without repeats."""
    from geocamat.data.paths import expand_paths

    found: list[Path] = []
    for item in items:
        if Path(item).is_dir():
            files = sorted(p for p in Path(item).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
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
            import warnings

            import rasterio
            from rasterio.errors import NotGeoreferencedWarning

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    with rasterio.open(path) as src:
                        self._images[path] = (src.crs.to_wkt(), src.transform, src.bounds) if src.crs else None
            except Exception:  # noqa: BLE001 - a plain image Pillow reads but GDAL does not: no footprint
                self._images[path] = None
        return self._images[path]

    def bounds(self, unit: Unit) -> tuple[str, tuple[float, float, float, float]] | None:
        """(CRS as WKT, bounds) of a unit of a georeferenced image (the image, or its chip's cell); None for a
        plain image."""
        from rasterio.windows import Window, bounds

        image = self._image(unit.path)
        if image is None:
            return None
        wkt, transform, whole = image
        return wkt, (tuple(whole) if unit.cell is None else bounds(Window(*unit.cell), transform))


@dataclass
class Footprints:
    """Footprints of the georeferenced units with their predicted class, kept until the GeoPackage is written."""

    rows: list[tuple[str, int, str, float]] = field(default_factory=list)
    geoms: list[object] = field(default_factory=list)
    crs: list[str] = field(default_factory=list)
    places: Places = field(default_factory=Places)

    def add(self, unit: Unit, class_id: int, name: str, confidence: float) -> None:
        from shapely.geometry import box

        where = self.places.bounds(unit)
        if where is not None:
            self.rows.append((str(unit.path), class_id, name, confidence))
            self.geoms.append(box(*where[1]))
            self.crs.append(where[0])

    def write(self, gpkg: Path, classes) -> None:
        """Write the layer (in the first image's CRS, the others reprojected) with a stored class style."""
        import geopandas as gpd
        import pandas as pd
        import pyogrio

        from geocamat.outputs.qml import categorized_polygon_qml
        from geocamat.outputs.style import ClassStyle
        from geocamat.outputs.vector import store_layer_style

        crs = np.array(self.crs, dtype=object)
        rows = list(zip(*self.rows, strict=True))
        columns = {"image": np.array(rows[0], dtype=object), "class_id": np.array(rows[1], np.int32),
                   "class_name": np.array(rows[2], dtype=object), "confidence": np.array(rows[3], float)}
        geoms = np.array(self.geoms, dtype=object)
        target = self.crs[0]
        parts = []
        for wkt in dict.fromkeys(self.crs):
            idx = np.flatnonzero(crs == wkt)
            frame = gpd.GeoDataFrame({k: v[idx] for k, v in columns.items()}, geometry=list(geoms[idx]), crs=wkt)
            parts.append(frame.to_crs(target) if wkt != target else frame)
        layer = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=target)
        pyogrio.write_dataframe(layer, gpkg, layer=LAYER, driver="GPKG", geometry_type="Polygon",
                                promote_to_multi=False, dataset_options={"VERSION": "1.2"})
        style = ClassStyle.from_classes(classes)
        store_layer_style(gpkg, LAYER, style, FILL_OPACITY)
        gpkg.with_suffix(".qml").write_text(categorized_polygon_qml(style, opacity=FILL_OPACITY), encoding="utf-8")


def folder_agreement(paths: list[Path], predicted: list[str], names: list[str]) -> dict | None:
    """Share of images whose predicted class is the name of their folder, when every image sits in a folder
    named after a class (a labelled folder per class); None otherwise."""
    folders = [p.parent.name for p in paths]
    if not paths or any(f not in names for f in folders):
        return None
    right = sum(f == c for f, c in zip(folders, predicted, strict=True))
    return {"images": len(paths), "agree": right, "share": round(right / len(paths), 4)}


def predict_scenes(bundle, images: list[str], stage: Path, *, batch_size: int = 64, device: str = "auto",
                   chip_size: int | None = None, progress: bool = True, model_path: str | None = None) -> dict:
    """Classify every image of ``images`` (or its chips, see :func:`plan_units`) and write the results into
    ``stage`` (a staged output folder).

    Returns:
        The report (also written to ``report.json``).
    """
    import sys

    import torch

    from geocamat.data.scenes import same_bands
    from geocamat.data.value_check import scaling_warning
    from geocamat.devices import resolve_device
    from geocamat.inference.telemetry import progress_bar
    from geocamat.outputs.jsonfile import write_json

    t0 = time.perf_counter()
    paths = scene_files(images)
    units, notes = plan_units(paths, chip_size, bundle.extra.get("source_side"))
    dev = resolve_device(device)
    model = bundle.build_model().to(dev).eval()
    names = [c.name for c in bundle.classes]
    bands, size = len(bundle.mean), int(bundle.tile_size)
    mean = torch.tensor(bundle.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std, dtype=torch.float32).view(1, -1, 1, 1)
    counts = dict.fromkeys(names, 0)
    whole: list[tuple[Path, str]] = []
    greys = empty = 0
    places = Footprints()
    reader = UnitReader(size)
    bar = progress_bar(total=len(units), unit="image" if len(units) == len(paths) else "chip", desc="classify",
                       file=sys.stderr, disable=None if progress else True, dynamic_ncols=True, leave=False)
    try:
        with open(stage / "scenes.csv", "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["image", "folder", "col", "row", "width", "height", "class_id", "class_name", "confidence",
                          *[f"p_{n}" for n in names]])
            with torch.inference_mode():
                for b0 in range(0, len(units), batch_size):
                    read = [(u, *reader.read(u)) for u in units[b0:b0 + batch_size]]
                    empty += sum(v == 0 for _, _, v in read)
                    chunk = [(u, x) for u, x, v in read if v > 0]  # a chip of nodata only is not classified
                    bar.update(len(read))
                    if not chunk:
                        continue
                    x, grey = same_bands([x for _, x in chunk], [u.path for u, _ in chunk], bands)
                    greys += grey
                    if b0 == 0:  # the first batch's values against the training images' (a scaling: wrong classes)
                        notes += scaling_warning(torch.stack(x).double().mean(dim=(0, 2, 3)).numpy(),
                                                 bundle.bands, bundle.mean, bundle.std)
                    prob = torch.softmax(model(((torch.stack(x) - mean) / std).to(dev)).float(), 1).cpu().numpy()
                    for (u, _), row in zip(chunk, prob, strict=True):
                        k = int(row.argmax())
                        cls = bundle.classes[k]
                        counts[cls.name] += 1
                        if u.cell is None:
                            whole.append((u.path, cls.name))
                        out.writerow([str(u.path), u.path.parent.name, *(u.cell or ("", "", "", "")), cls.id,
                                      cls.name, f"{row[k]:.4f}", *[f"{v:.4f}" for v in row]])
                        places.add(u, cls.id, cls.name, float(row[k]))
    finally:
        reader.close()
        bar.close()
    outputs = {"csv": "scenes.csv"}
    if places.rows:
        places.write(stage / "scenes.gpkg", bundle.classes)
        outputs |= {"gpkg": "scenes.gpkg", "qml": "scenes.qml"}
    if greys:
        notes.append(f"note: {greys} grey image{'s' if greys != 1 else ''} repeated into the model's 3 bands")
    classified = sum(counts.values())
    if places.rows and len(places.rows) < classified:
        notes.append(f"note: {classified - len(places.rows)} of {classified} images are not georeferenced: they are "
                     "in scenes.csv only, not in scenes.gpkg")
    if empty:
        notes.append(f"note: {empty} chip{'s' if empty != 1 else ''} without data (nodata only) not classified")
    chips = sum(u.cell is not None for u in units)
    report = {
        "task": "scenes", "images": len(paths), "chips": chips, "classified": classified, "counts": counts,
        "outputs": outputs, "georeferenced": len(places.rows), "grey_images": greys, "empty_chips": empty,
        "folder_agreement": folder_agreement([p for p, _ in whole], [c for _, c in whole], names),
        "model": {"path": str(Path(model_path).resolve()) if model_path else None, "classes": names,
                  "image_size": size, "source_side": bundle.extra.get("source_side")},
        "settings": {"batch_size": batch_size, "device": str(dev), "chip_size": chip_size},
        "notes": notes, "timings": {"seconds": round(time.perf_counter() - t0, 3)}, "machine": platform.node(),
    }
    write_json(stage / "report.json", report)
    return report
