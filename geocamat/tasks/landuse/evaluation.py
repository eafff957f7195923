"""``geocamat evaluate`` for land use: map the images (or take an existing map) and score it against a reference."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from geocamat.errors import ConfigError
from geocamat.tasks.landuse.options import MIN_MAPPING_UNIT, EvaluateOptions


def label_offset(text: str, bundle) -> tuple[int, int] | None:
    """``--label-offset``: none, model (the offset training found, from the bundle) or DY,DX."""
    if text == "none":
        return None
    if text == "model":
        found = bundle.extra.get("label_offset")
        return tuple(found) if found else None
    try:
        dy, dx = (int(v) for v in str(text).split(","))
    except ValueError:
        raise ConfigError(f"--label-offset must be none, model or DY,DX (pixels, e.g. 1,1), not {text!r}") from None
    return dy, dx


def evaluate_map(bundle, images: list[str], options: EvaluateOptions, *, progress: bool = True,
                 log: Callable[[str], None] = print) -> dict:
    """Score a land-use map of ``images`` (or ``options.map``) against ``options.reference``.

    Returns:
        The metrics (OA, kappa, per class P/R/F1, scope, coverage); also written to ``options.out``/metrics.json.
    """
    from geocamat.inference.landuse import predict_landuse
    from geocamat.inference.ranks import Ranks
    from geocamat.preflight import before_evaluate
    from geocamat.tasks.landuse import map_settings
    from geocamat.tasks.landuse.scoring import score_map

    o = options
    if not o.reference or not (images or o.map):
        raise ConfigError("give --reference and IMAGES or --map (or --scenes DIR for a scene-classification model)")
    offset = label_offset(o.label_offset, bundle)
    before_evaluate(images, o.map, o.reference, o.mask, bundle=bundle, force=o.force)
    with tempfile.TemporaryDirectory(prefix=".geocamat-evaluate-", dir=_staging_parent(o.out)) as tmp:
        folder = Path(tmp) / "map"  # moved to --out only once scored: a failed scoring leaves no map behind
        mapped = {}
        if not o.map:
            mapped = predict_landuse(bundle, list(images), folder,
                            **map_settings(bundle, o.overlap, o.tta, o.window, o.tta_views),
                            device=o.device, vectorise=False, min_polygon_pixels=MIN_MAPPING_UNIT, overwrite=True,
                            progress=progress, ranks=Ranks())  # this process alone, even under a launcher
        metrics = score_map(Path(o.map) if o.map else folder / "landuse.tif", Path(o.reference), bundle.class_ids,
                            [c.name for c in bundle.classes], blocks=o.blocks, parity=o.parity,
                            mask=Path(o.mask) if o.mask else None, offset=offset, reference_field=o.reference_field)
        if o.out:  # made only now: a reference that cannot be scored leaves no empty folder
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
            if "area_estimates" in metrics:
                write_area_table(folder / "area_estimates.csv", metrics["area_estimates"])
            place_into(folder, Path(o.out))
    for note in mapped.get("notes", []):  # what predict says of these images (values, bands, fill): the scores
        log(note)  # below are of this map
    frame = f", map read at offset {list(offset)} px" if offset and any(offset) else ""
    log(f"{metrics['scope']}{frame}: OA {metrics['overall_accuracy']}, kappa {metrics['kappa']}, macro-F1 "
        f"{metrics.get('macro_f1')}, "
        f"{metrics['n']} {metrics.get('reference_unit', 'pixels')} (coverage {metrics['coverage']})")
    for note in metrics.get("notes", []):
        log(note)
    if metrics.get("unlabelled_features"):
        log(f"note: {metrics['unlabelled_features']} features of {Path(o.reference).name} have no "
            f"{o.reference_field or 'class'} value (not labelled yet): left out")
    found = bundle.extra.get("label_offset")
    if found and o.label_offset == "none":
        log(f"note: this model's labels were registered {found} px off its imagery; --label-offset model "
            "scores in their frame")
    for name, m in metrics["per_class"].items():
        log(f"  {name:<16} precision {m['precision']:.3f}  recall {m['recall']:.3f}  f1 {m['f1']:.3f}  "
            f"support {m['support']}")
    if "area_estimates" in metrics:
        for line in area_lines(metrics["area_estimates"]):
            log(line)
    return metrics


def _staging_parent(out: str | None) -> str | None:
    """Where the map is made before scoring: beside ``--out`` when its folder exists (a rename, not a copy)."""
    parent = Path(out).absolute().parent if out else None
    return str(parent) if parent is not None and parent.is_dir() else None


def place_into(folder: Path, out: Path) -> None:
    """Move each result of ``folder`` into ``out``, replacing results of the same name already there."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(folder.iterdir()):
        dest = out / item.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        shutil.move(str(item), str(dest))


def write_area_table(path: Path, est: dict) -> None:
    """The area estimates as a CSV table (a row per class, then the overall accuracy), for a spreadsheet."""
    import csv

    from geocamat.outputs.csv_types import write_csvt

    unit = est["unit"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["class", f"mapped_{unit}", f"estimated_{unit}", f"estimated_{unit}_ci95", "users_accuracy",
                      "users_accuracy_ci95", "producers_accuracy", "producers_accuracy_ci95", "overall_accuracy",
                      "overall_accuracy_ci95"])
        for name, c in est["per_class"].items():
            out.writerow([name, c["mapped_area"], c["area"], c["area_ci"], c["users"], c["users_ci"], c["producers"],
                          c["producers_ci"], "", ""])
        # the map's overall accuracy in columns of its own (a row of its own, so that a spreadsheet sums the classes)
        out.writerow(["overall accuracy", "", "", "", "", "", "", "", est["overall_accuracy"],
                      est["overall_accuracy_ci"]])
    write_csvt(path, ["String"] + ["Real"] * 9)


def area_lines(est: dict) -> list[str]:
    """The area estimates of a point sample as printed lines (95% half-widths after +-)."""
    def pm(value, half, digits: int = 3, unit: str = "") -> str:
        if value is None:
            return "-"
        return f"{value:.{digits}f}" + (f" +- {half:.{digits}f}" if half is not None else "") + unit

    unit, overall = est["unit"], pm(est["overall_accuracy"], est["overall_accuracy_ci"])
    lines = [f"area estimates from {est['points']} reference points (Olofsson et al. 2014; a random or stratified "
             f"random sample assumed; +- 95%): overall accuracy {overall}"]
    for name, c in est["per_class"].items():
        lines.append(f"  {name:<16} mapped {c['mapped_area']:.1f} {unit}  estimated "
                     f"{pm(c['area'], c['area_ci'], 1, ' ' + unit)}  user's {pm(c['users'], c['users_ci'])}  "
                     f"producer's {pm(c['producers'], c['producers_ci'])}")
    return lines + [f"note: {n}" for n in est["notes"]]
