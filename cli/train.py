"""``geocamat train``: train a land-use, scene or detection model from a config file and/or flags."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import given, overwrite_opt, quiet_opt, setting_option

C = "Config"


def _camat_option(name: str, type_=None):
    return setting_option(C, f"camat.{name}", f"--camat-{name.replace('_', '-')}", f"camat_{name}", type=type_)


#: endings of a settings file among the positional arguments (anything else that is no image is one too)
CONFIG_SUFFIXES = (".yaml", ".yml")
#: endings of the images that may follow the options (an unquoted glob the shell expanded)
IMAGE_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".png", ".jpg", ".jpeg")


def split_inputs(inputs: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """The positional arguments as (the config file or None, images): images by their ending, folders and globs;
    anything else is the config file, of which there is at most one."""
    config, images = [], []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() in CONFIG_SUFFIXES:
            config.append(item)
        elif path.suffix.lower() in IMAGE_SUFFIXES or path.is_dir() or any(c in item for c in "*?["):
            images.append(item)
        else:
            config.append(item)
    if len(config) > 1:
        shown = ", ".join(config[:3]) + (" ..." if len(config) > 3 else "")
        raise click.UsageError(f"give one config file, not {len(config)} ({shown}); label files? quote their glob "
                               "(--labels 'labels/*.xml') or give their folder")
    return (config[0] if config else None), images


@click.command()
@click.argument("inputs", nargs=-1, metavar="[CONFIG] [IMAGES]...")
@click.option("--out", "out", default="runs/train", show_default=True, type=click.Path(file_okay=False),
              help="Run folder: model.geocamat, metrics.json, confusion.png, training.png, config.yaml.")
@click.option("--task", type=click.Choice(["landuse", "scenes", "detection"]), default=None,
              help="What to train.  [default: landuse; scenes with --scenes]")
@setting_option(C, "images", "--images", multiple=True)
@setting_option(C, "bands", "--bands", help_prefix="Comma-separated. ")
@setting_option(C, "nodata", "--nodata", type=float)
@setting_option(C, "labels", "--labels", multiple=True)
@setting_option(C, "scenes", "--scenes")
@setting_option(C, "label_field", "--label-field")
@setting_option(C, "label_nodata", "--label-nodata", type=int)
@setting_option(C, "tile_size", "--tile-size", type=int)
@setting_option(C, "purity", "--purity", type=float)
@setting_option(C, "blocks", "--blocks", type=int)
@setting_option(C, "arch", "--arch", help_text="Backbone (camnet-xs | camnet-s | resnet10 | resnet18); default: "
                "camnet-xs for land use (mapped best on the NC sample, ~1/20 of resnet18's cost), resnet18 for scenes, "
                "or the weights' own with --weights/--init-from (detection: --set backbone=...).")
@setting_option(C, "weights", "--weights", metavar="NAME|PATH")
@setting_option(C, "init_from", "--init-from", metavar="BUNDLE")
@setting_option(C, "epochs", "--epochs", type=int)
@setting_option(C, "batch_size", "--batch-size", type=int)
@setting_option(C, "lr", "--lr", type=float)
@setting_option(C, "seed", "--seed", type=int)
@setting_option(C, "pixel_loss", "--pixel-loss", type=float)
@setting_option(C, "ema_decay", "--ema-decay", type=float)
@setting_option(C, "cutmix", "--cutmix", type=float)
@setting_option(C, "output", "--output", type=click.Choice(["window", "dense"]))
@click.option("--camat/--no-camat", default=None, help="Train with CAMAT (the default of land use and scenes) or "
              "without any occlusion (detection's default); the same as --regulariser camat / none.")
@setting_option(C, "regulariser", "--regulariser")
@_camat_option("saliency")
@_camat_option("target")
@_camat_option("tau", float)
@_camat_option("area", float)
@_camat_option("fill")
@_camat_option("p", float)
@_camat_option("warmup", float)
@_camat_option("source")
@setting_option(C, "accelerator", "--accelerator")
@setting_option(C, "devices", "--devices")
@setting_option(C, "strategy", "--strategy")
@setting_option(C, "num_nodes", "--num-nodes", type=int)
@click.option("--resume", "resume", default=None, type=click.Path(file_okay=False), metavar="RUN",
              help="Continue the killed land-use or detection run whose --out was RUN from its last checkpoint, with "
                   "the settings it saved (only --accelerator, --devices, --strategy and --num-nodes may change).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override any setting, e.g. --set camat.tau=0.6 (repeatable).")
@overwrite_opt
@quiet_opt
def train(inputs, out, task, images, resume, assignments, overwrite, quiet, camat, **flags):
    """Train a model on GeoTIFF imagery and labels; CONFIG is an optional YAML file of settings.

    Flags override the file, and --set overrides both. IMAGES given as arguments are added to --images (so an
    unquoted glob the shell expanded, --images S2/*.tif, takes every file). Example:

        geocamat train samples/nc_landsat.yaml --out runs/nc --epochs 20
    """
    from geocamat.errors import ConfigError
    from geocamat.settings import build, load_raw
    from geocamat.tasks import get_task, task_of_settings

    config, more = split_inputs(inputs)
    images = tuple(images) + tuple(more)
    labels = flags.get("labels")  # --labels repeated: several vector files
    flags["labels"] = None if not labels else labels[0] if len(labels) == 1 else list(labels)
    if resume is not None:
        return _resume(Path(resume), config, task, images, assignments, camat, flags, quiet)
    camat_opts = {k.removeprefix("camat_"): v for k, v in flags.items() if k.startswith("camat_") and v is not None}
    values = {k: v for k, v in flags.items() if not k.startswith("camat_")}
    if values.get("bands"):
        values["bands"] = values["bands"].split(",")
    if values.get("devices") and str(values["devices"]).isdigit():
        values["devices"] = int(values["devices"])
    if camat is not None:
        wanted = "camat" if camat else "none"
        if values.get("regulariser") not in (None, wanted):
            raise ConfigError(f"--{'' if camat else 'no-'}camat and --regulariser {values['regulariser']} contradict "
                              "each other: give one of them")
        values["regulariser"] = wanted
    raw = load_raw(config, given(task=task, images=list(images) or None, camat=camat_opts or None, **values),
                   assignments)
    name = task_of_settings(raw.values)
    module = get_task(name)
    settings = dict(raw.values)
    settings.pop("task", None)
    regulariser = settings.get("regulariser", _default(module.Config, "regulariser"))
    if regulariser != "camat" and settings.get("camat"):
        flagged = sorted(k for k in raw.explicit if k.startswith("camat."))
        if flagged:
            key = flagged[0]
            given_as = f"--set {key}" if key in raw.assigned else f"--{key.replace('.', '-').replace('_', '-')}"
            raise ConfigError(f"{given_as} applies only with --regulariser camat, not {regulariser}: drop it or "
                              "train with CAMAT")
        click.echo(f"note: the config file's camat options are not used with regulariser {regulariser}", err=True)
        settings.pop("camat")
    from dataclasses import fields

    known = {f.name for f in fields(module.Config)}
    for key in sorted(raw.flags - {"task"}):  # (a --set key of another task: build() names it)
        if key.split(".")[0] not in known:
            raise ConfigError(f"--{key.replace('_', '-')} does not apply to {module.NAME} training; its settings "
                              f"are {', '.join(sorted(known))}")
    cfg = build(module.Config, settings, what=f"{module.NAME} training")
    from geocamat.output_lock import output_lock

    with output_lock(Path(out), inside=False):  # one run at a time writes --out
        metrics = module.train(cfg, Path(out), overwrite=bool(overwrite), progress=not quiet, log=_log(quiet))
    if not quiet:
        for line in module.summary(metrics):
            click.echo(line)
        click.echo(f"model: {Path(out) / 'model.geocamat'}")


def _default(config_class, name: str):
    """The default of setting ``name`` in a task's settings class (tasks differ: detection trains without CAMAT)."""
    from dataclasses import fields

    from geocamat.settings import default_of

    return default_of(next(f for f in fields(config_class) if f.name == name))


def _log(quiet: bool):
    """Where the training workflow's lines go: stdout; with --quiet only its warnings and notes, on stderr
    (a run that went well prints nothing). Under DDP only rank 0 says them (each line was printed once per rank)."""
    from geocamat.tasks.training import global_rank_from_env

    if global_rank_from_env() != 0:
        return lambda line: None
    if not quiet:
        return click.echo

    def warnings_only(line: str) -> None:
        if line.startswith(("warning:", "note:")):
            click.echo(line, err=True)

    return warnings_only


#: settings a resumed run may change (the machine it runs on), everything else is the killed run's
HARDWARE = ("accelerator", "devices", "strategy", "num_nodes")


def _resume(run: Path, config, task, images, assignments, camat, flags: dict, quiet: bool) -> None:
    """``--resume RUN``: the killed run's own settings (saved in its stage, with its task), from its last
    checkpoint."""
    from geocamat.errors import ConfigError
    from geocamat.outputs.staging import interrupted_run
    from geocamat.settings import build, load_yaml
    from geocamat.tasks import get_task

    given = sorted(k for k, v in flags.items() if v is not None and k not in HARDWARE)
    if config or task or images or assignments or camat is not None or given:
        raise ConfigError("--resume continues a run with the settings it saved: give no config file or setting "
                          f"beside it (got {', '.join(given) or 'a config file, --set or images'})")
    stage = interrupted_run(run)
    saved = load_yaml((stage / "config.yaml").read_text())
    name = saved.pop("task", None) or "landuse"  # land-use runs saved no task
    saved.update({k: flags[k] for k in HARDWARE if flags.get(k) is not None})
    if str(saved.get("devices", "")).isdigit():
        saved["devices"] = int(saved["devices"])
    module = get_task(name)
    cfg = build(module.Config, saved, what=f"the resumed {module.NAME} training")
    log = _log(quiet)
    log(f"resuming {run} from {stage / 'checkpoints' / 'last.ckpt'}")
    from geocamat.output_lock import output_lock

    with output_lock(Path(run), inside=False):
        metrics = module.train(cfg, run, progress=not quiet, log=log, resume=True)
    if not quiet:
        for line in module.summary(metrics):
            click.echo(line)
        click.echo(f"model: {run / 'model.geocamat'}")
