"""The tasks geocamat trains and applies, one package each with the same face (see :mod:`geocamat.tasks.base`).

The command line looks a task up here by name (``--task``, a config file's ``task:``, or a bundle's task) and
calls it; it knows nothing task-specific. Adding a task means adding a package and a line in :data:`TASKS`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from geocamat.errors import BundleError, ConfigError

#: task name -> what it does (the packages are imported on first use)
TASKS = {
    "landuse": "land-use maps from tiles of a GeoTIFF stack with raster or vector labels",
    "scenes": "scene classification from a folder with one sub-folder of images per class",
    "detection": "object detection from images with boxes",
}


def get_task(name: str) -> ModuleType:
    """The package of the task ``name``."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return importlib.import_module(f"geocamat.tasks.{name}")


def task_of_bundle(bundle) -> ModuleType:
    """The package of the task a model bundle was trained for."""
    if bundle.task not in TASKS:
        raise BundleError(f"this model was trained for an unknown task {bundle.task!r}; update geocamat")
    return get_task(bundle.task)


def task_of_settings(values: dict) -> str:
    """The task a set of raw training settings asks for: ``task:`` if given, else scenes for a scene folder."""
    task = values.get("task")
    if task is None:
        return "scenes" if values.get("scenes") else "landuse"
    if task == "landuse" and values.get("scenes"):  # a scene folder is its own task
        return "scenes"
    return str(task)
