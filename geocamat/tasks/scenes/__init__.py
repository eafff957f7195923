"""Scene classification: one label per image from a folder per class (see :mod:`geocamat.tasks.base`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geocamat.settings import setting
from geocamat.tasks.scenes.config import SceneConfig as Config

__all__ = ["Config", "EvaluateOptions", "PredictOptions", "describe", "evaluate", "predict", "summary", "train"]
NAME = "scene-classification"


@dataclass
class PredictOptions:
    """How a scene model classifies images (``geocamat predict``): one class per image."""

    batch_size: int = setting(64, "Images per batch.")
    device: str = setting("auto", "auto | cpu | cuda")
    chip_size: int | None = setting(None, "Classify images larger than this in chips of this many pixels (a "
                                    "land-use map in cells); 0: every image whole; default: images over twice "
                                    "the training images' side, in chips of that side.")

    def check(self) -> None:
        from geocamat.errors import ConfigError
        from geocamat.settings import positive_int

        positive_int(self, "batch_size")
        if self.chip_size is not None and (not isinstance(self.chip_size, int) or self.chip_size < 0):
            raise ConfigError(f"chip_size must be an integer >= 0 (0: whole images), not {self.chip_size!r}")


@dataclass
class EvaluateOptions:
    """How a scene model is scored: on the held-out part of its scene folder, clean and under occlusion."""

    scenes: str | None = setting(None, "The class-folder dataset; the images the model did not train on are "
                                       "scored.")
    all_images: bool = setting(False, "Score every image of --scenes (a test folder of its own), not only those "
                               "the model did not train on.")
    out: str | None = setting(None, "Write robustness.json here.")
    device: str = setting("auto", "auto | cpu | cuda")


def train(config: Config, out_dir: Path, *, overwrite: bool = False, progress: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Train on a stratified split of the scene folder; score the held-out part; write the run folder."""
    from geocamat.tasks.base import checked
    from geocamat.tasks.scenes.workflow import train_scenes
    from geocamat.tasks.training import caller_state

    with caller_state():
        return train_scenes(checked(config), out_dir, overwrite=overwrite, progress=progress, log=log)


def summary(metrics: dict) -> list[str]:
    """What ``geocamat train`` prints at the end of a scene run."""
    acc = metrics["robustness"]["accuracy"]
    return [f"held-out scenes: OA {metrics['held_out']['overall_accuracy']}, macro-F1 "
            f"{metrics['held_out'].get('macro_f1')}; under occlusion: "
            + ", ".join(f"{k} {v:.3f}" for k, v in acc.items() if k != "clean")]


def evaluate(bundle, images: list[str], options: EvaluateOptions, *, progress: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Accuracy on the held-out scenes, clean and under test-time occlusions, and CAM deletion/insertion AUC."""
    import json

    from geocamat.errors import ConfigError
    from geocamat.tasks.scenes.workflow import evaluate_scenes

    if not options.scenes:
        raise ConfigError("a scene model is scored on its scene folder: give --scenes DIR")
    if images:
        raise ConfigError("a scene model is scored on --scenes DIR, not on IMAGES; drop the image arguments")
    report = evaluate_scenes(bundle, options.scenes, whole=bool(options.all_images),
                             device=None if options.device == "auto" else options.device)
    if options.out:
        Path(options.out).mkdir(parents=True, exist_ok=True)
        (Path(options.out) / "robustness.json").write_text(json.dumps(report, indent=2))
    log(f"{report['n']} scenes: {report['scored']}")
    for condition, acc in report["accuracy"].items():
        log(f"  {condition:<16} OA {acc:.3f}")
    for key in ("deletion_auc", "insertion_auc"):
        if key in report:
            log(f"  {key:<16} {report[key]:.3f}")
    return report


def predict(bundle, images: list[str], out_dir: Path, options: PredictOptions, *, overwrite: bool = False,
            progress: bool = True, model_path: str | None = None) -> dict:
    """Classify each image (files, globs, folders searched recursively): ``scenes.csv``, ``report.json`` and,
    for georeferenced images, ``scenes.gpkg`` of their footprints styled by class (see
    :mod:`geocamat.tasks.scenes.classify`)."""
    from geocamat.outputs.staging import staged_output
    from geocamat.tasks.base import checked, image_list
    from geocamat.tasks.scenes.classify import SCENE_RESULTS, predict_scenes

    options, images = checked(options), image_list(images)
    with staged_output(Path(out_dir), overwrite, SCENE_RESULTS) as stage:
        report = predict_scenes(bundle, images, stage, batch_size=int(options.batch_size), device=options.device,
                                chip_size=options.chip_size, progress=progress, model_path=model_path)
    return report


def describe(bundle) -> dict:
    """The split a scene bundle was trained on (for ``geocamat info``)."""
    return {"split": {k: bundle.extra.get(k) for k in ("scenes", "train_fraction", "seed")}}
