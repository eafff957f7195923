"""Classify images with a scene model: one class per image.

Writes ``scenes.csv`` (one row per image: its class, the confidence and every class's probability),
``report.json`` (counts per class, settings, timings) and, when images are georeferenced (GeoTIFF chips of a
grid, EuroSAT-style), ``scenes.gpkg``: their footprints with the class, styled by class colours in QGIS (and
``scenes.qml``). Images are read, resized and classified a batch at a time and rows are written as they come,
so memory does not grow with the number of images.
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


def footprint(path: Path) -> tuple[object, tuple[float, float, float, float]] | None:
    """(CRS, bounds) of a georeferenced image; None for a plain one (or one rasterio cannot place)."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return (src.crs, tuple(src.bounds)) if src.crs else None
    except Exception:  # noqa: BLE001 - a plain image Pillow reads but GDAL does not: no footprint
        return None


@dataclass
class Footprints:
    """Footprints of the georeferenced images with their predicted class, kept until the GeoPackage is written."""

    rows: list[tuple[str, int, str, float]] = field(default_factory=list)
    geoms: list[object] = field(default_factory=list)
    crs: list[object] = field(default_factory=list)

    def add(self, path: Path, class_id: int, name: str, confidence: float) -> None:
        from shapely.geometry import box

        place = footprint(path)
        if place is not None:
            self.rows.append((str(path), class_id, name, confidence))
            self.geoms.append(box(*place[1]))
            self.crs.append(place[0])

    def write(self, gpkg: Path, classes) -> None:
        """Write the layer (in the first image's CRS, the others reprojected) with a stored class style."""
        import geopandas as gpd
        import pyogrio

        from geocamat.outputs.style import ClassStyle
        from geocamat.outputs.vector import store_layer_style

        target = self.crs[0]
        parts = []
        for crs in dict.fromkeys(c.to_string() for c in self.crs):
            idx = [i for i, c in enumerate(self.crs) if c.to_string() == crs]
            frame = gpd.GeoDataFrame(
                {"image": [self.rows[i][0] for i in idx],
                 "class_id": np.array([self.rows[i][1] for i in idx], np.int32),
                 "class_name": [self.rows[i][2] for i in idx],
                 "confidence": np.array([self.rows[i][3] for i in idx], float)},
                geometry=[self.geoms[i] for i in idx], crs=self.crs[idx[0]])
            parts.append(frame.to_crs(target) if frame.crs != target else frame)
        import pandas as pd

        layer = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=target)
        pyogrio.write_dataframe(layer, gpkg, layer=LAYER, driver="GPKG", geometry_type="Polygon",
                                promote_to_multi=False, dataset_options={"VERSION": "1.2"})
        style = ClassStyle.from_classes(classes)
        store_layer_style(gpkg, LAYER, style, FILL_OPACITY)
        from geocamat.outputs.qml import categorized_polygon_qml

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
                   progress: bool = True, model_path: str | None = None) -> dict:
    """Classify every image of ``images`` and write the results into ``stage`` (a staged output folder).

    Returns:
        The report (also written to ``report.json``).
    """
    import sys

    import torch

    from geocamat.data.scenes import load_image, same_bands
    from geocamat.devices import resolve_device
    from geocamat.inference.telemetry import progress_bar
    from geocamat.outputs.jsonfile import write_json

    t0 = time.perf_counter()
    paths = scene_files(images)
    dev = resolve_device(device)
    model = bundle.build_model().to(dev).eval()
    names = [c.name for c in bundle.classes]
    bands, size = len(bundle.mean), int(bundle.tile_size)
    mean = torch.tensor(bundle.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std, dtype=torch.float32).view(1, -1, 1, 1)
    counts = dict.fromkeys(names, 0)
    predicted: list[str] = []
    greys = 0
    places = Footprints()
    bar = progress_bar(total=len(paths), unit="image", desc="classify", file=sys.stderr,
                       disable=None if progress else True, dynamic_ncols=True, leave=False)
    with open(stage / "scenes.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["image", "folder", "class_id", "class_name", "confidence", *[f"p_{n}" for n in names]])
        with torch.inference_mode():
            for b0 in range(0, len(paths), batch_size):
                chunk = paths[b0:b0 + batch_size]
                x, grey = same_bands([load_image(p, size) for p in chunk], chunk, bands)
                greys += grey
                prob = torch.softmax(model(((torch.stack(x) - mean) / std).to(dev)).float(), 1).cpu().numpy()
                for p, row in zip(chunk, prob, strict=True):
                    k = int(row.argmax())
                    cls = bundle.classes[k]
                    counts[cls.name] += 1
                    predicted.append(cls.name)
                    out.writerow([str(p), p.parent.name, cls.id, cls.name, f"{row[k]:.4f}",
                                  *[f"{v:.4f}" for v in row]])
                    places.add(p, cls.id, cls.name, float(row[k]))
                bar.update(len(chunk))
    bar.close()
    outputs = {"csv": "scenes.csv"}
    if places.rows:
        places.write(stage / "scenes.gpkg", bundle.classes)
        outputs |= {"gpkg": "scenes.gpkg", "qml": "scenes.qml"}
    notes = []
    if greys:
        notes.append(f"note: {greys} grey image{'s' if greys != 1 else ''} repeated into the model's 3 bands")
    if places.rows and len(places.rows) < len(paths):
        notes.append(f"note: {len(paths) - len(places.rows)} of {len(paths)} images are not georeferenced: they are "
                     "in scenes.csv only, not in scenes.gpkg")
    agreement = folder_agreement(paths, predicted, names)
    report = {
        "task": "scenes", "images": len(paths), "counts": counts, "outputs": outputs,
        "georeferenced": len(places.rows), "grey_images": greys, "folder_agreement": agreement,
        "model": {"path": str(Path(model_path).resolve()) if model_path else None, "classes": names,
                  "image_size": size},
        "settings": {"batch_size": batch_size, "device": str(dev)},
        "notes": notes, "timings": {"seconds": round(time.perf_counter() - t0, 3)}, "machine": platform.node(),
    }
    write_json(stage / "report.json", report)
    return report
