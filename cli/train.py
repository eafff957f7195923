"""``geocamat train``: train a land-use classifier (or an object detector) from a config and/or flags."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import accelerator_opt, devices_opt, overwrite_opt, quiet_opt


@click.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "out", default="runs/train", show_default=True, type=click.Path(file_okay=False),
              help="Run folder: model.geocamat, metrics.json, confusion.png, training.png, config.yaml.")
@click.option("--task", type=click.Choice(["landuse", "detection"]), default=None, help="[default: landuse]")
@click.option("--images", multiple=True, help="Image files, globs or folders (repeatable).")
@click.option("--bands", default=None, help="Band selection, comma-separated names or 1-based numbers (e.g. 3,2,1).")
@click.option("--labels", default=None, help="Classified raster, or vector layer of polygons/points.")
@click.option("--scenes", default=None, help="Instead of --images/--labels: a folder with one image folder per class.")
@click.option("--label-field", default=None, help="Class field of a vector label layer.")
@click.option("--tile-size", type=int, default=None, help="Tile side in pixels.  [default: 16]")
@click.option("--purity", type=float, default=None, help="Minimum share of a tile's majority class.  [default: 0.5]")
@click.option("--blocks", type=int, default=None, help="Checkerboard blocks per side (train/validation).  [default: 4]")
@click.option("--arch", default=None, help="camnet-xs | camnet-s | resnet10 | resnet18.  "
              "[default: camnet-xs; resnet18 for scene folders]")
@click.option("--epochs", type=int, default=None, help="[default: 30]")
@click.option("--batch-size", type=int, default=None, help="[default: 64]")
@click.option("--lr", type=float, default=None, help="Peak learning rate.  [default: 0.002]")
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--pixel-loss", type=float, default=None,
              help="Weight of per-pixel supervision of the CAM logits (0: tile labels only).  "
                   "[default: 1; 0 for scene folders]")
@click.option("--ema-decay", type=float, default=None,
              help="Keep an exponential moving average of the weights (e.g. 0.998) and ship it in the bundle "
                   "(0: the last weights).  [default: 0]")
@click.option("--cutmix", type=float, default=None,
              help="Probability of CutMix per training batch: a rectangle of another tile pasted in, labels "
                   "following (0: off).  [default: 0]")
@click.option("--output", type=click.Choice(["window", "dense"]), default=None,
              help="Map from the per-pixel CAM logits or from window probabilities.  "
                   "[default: dense; window when --pixel-loss is 0]")
@click.option("--camat/--no-camat", default=None, help="Train with CAMAT (default) or without any occlusion.")
@click.option("--regulariser", type=click.Choice(["camat", "cutout", "random-erasing", "hide-and-seek", "none"]),
              default=None, help="Training-time occlusion.  [default: camat]")
@click.option("--camat-saliency", default=None, help="cam | gradcam | gradcampp.  [default: cam]")
@click.option("--camat-target", default=None, help="gt | pred.  [default: gt]")
@click.option("--camat-tau", type=float, default=None, help="Occlude where the normalised CAM >= tau.  [default: 0.7]")
@click.option("--camat-area", type=float, default=None, help="Occlude this top fraction of the CAM instead of tau.")
@click.option("--camat-fill", default=None, help="mean | zero | white | noise | blur.  [default: mean]")
@click.option("--camat-p", type=float, default=None, help="Probability a sample is occluded.  [default: 0.5]")
@click.option("--camat-warmup", type=float, default=None, help="Fraction of epochs trained clean.  [default: 0.2]")
@click.option("--camat-source", default=None, help="fresh | cached.  [default: fresh]")
@accelerator_opt
@devices_opt
@click.option("--strategy", default=None, help="Lightning strategy, e.g. ddp for several GPUs.  [default: auto]")
@click.option("--num-nodes", type=int, default=None, help="Machines for distributed training.  [default: 1]")
@click.option("--resume", "resume", default=None, type=click.Path(file_okay=False),
              help="Continue the interrupted run whose --out was RUN from its last checkpoint, with its saved "
                   "settings (give no other setting).", metavar="RUN")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override any setting, e.g. --set camat.tau=0.6 (repeatable).")
@overwrite_opt
@quiet_opt
def train(config, out, task, images, bands, labels, scenes, label_field, tile_size, purity, blocks, arch, epochs,
          batch_size, lr, seed, pixel_loss, ema_decay, cutmix, output, camat, regulariser, camat_saliency, camat_target,
          camat_tau, camat_area, camat_fill,
          camat_p, camat_warmup, camat_source, accelerator, devices, strategy, num_nodes, resume, assignments,
          overwrite, quiet):
    """Train a model on GeoTIFF imagery and labels; CONFIG is an optional YAML file of settings.

    Flags override the file, and --set overrides both. Example:

        geocamat train samples/nc_landsat.yaml --out runs/nc --epochs 20
    """
    from geocamat.config import detection_config, load_config, load_raw_config

    camat_opts = {k: v for k, v in dict(saliency=camat_saliency, target=camat_target, tau=camat_tau, area=camat_area,
                                        fill=camat_fill, p=camat_p, warmup=camat_warmup, source=camat_source).items()
                  if v is not None}
    if camat is False and regulariser is None:
        regulariser = "none"
    overrides = dict(task=task, images=list(images) or None, bands=bands.split(",") if bands else None,
                     labels=labels, scenes=scenes, label_field=label_field,
                     tile_size=tile_size, purity=purity, blocks=blocks, arch=arch, epochs=epochs,
                     batch_size=batch_size, lr=lr, seed=seed, pixel_loss=pixel_loss, ema_decay=ema_decay,
                     cutmix=cutmix,
                     output=output,
                     regulariser=regulariser, camat=camat_opts or None,
                     accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes)
    if resume is not None:
        _resume(resume, config, overrides, camat_opts, assignments, quiet)
        return
    out = Path(out)
    raw = load_raw_config(config, overrides, assignments)
    if raw.get("task") == "detection":
        from geocamat.workflows.detection import train_detection

        if out.exists() and any(out.iterdir()) and not overwrite:
            from geocamat.errors import OutputExistsError

            raise OutputExistsError(f"{out} already holds results: choose another --out or pass --overwrite")
        metrics = train_detection(detection_config(raw), out, progress=not quiet)
        headline = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
        click.echo(f"model: {out / 'model.geocamat'}  metrics: {headline}")
        return
    cfg = load_config(config, overrides, assignments)
    if cfg.get("scenes"):
        from geocamat.workflows.scenes import train_scenes

        metrics = train_scenes(cfg, out, overwrite=overwrite, progress=not quiet, log=click.echo)
        acc = metrics["robustness"]["accuracy"]
        click.echo(f"held-out scenes: OA {metrics['held_out']['overall_accuracy']}; under occlusion: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in acc.items() if k != "clean"))
        click.echo(f"model: {out / 'model.geocamat'}")
        return
    from geocamat.workflows.landuse import train_landuse

    metrics = train_landuse(cfg, out, overwrite=overwrite, progress=not quiet, log=click.echo)
    _report(metrics, out)


def _resume(run, config, overrides: dict, camat_opts: dict, assignments, quiet: bool) -> None:
    """``--resume RUN``: the interrupted run's own settings, from its staged folder."""
    import yaml

    from geocamat.config import load_config
    from geocamat.errors import ConfigError
    from geocamat.workflows.landuse import train_landuse
    from geocamat.workflows.outdir import interrupted_run

    hardware = ("accelerator", "devices", "strategy", "num_nodes")  # may change between the runs
    given = [k for k, v in overrides.items() if v is not None and k != "camat" and k not in hardware]
    if config or given or camat_opts or assignments:
        raise ConfigError("--resume continues a run with the settings it saved: give no config file or setting "
                          f"beside it (got {', '.join(given) or 'a config file or --set'})")
    run = Path(run)
    stage = interrupted_run(run)
    saved = yaml.safe_load((stage / "config.yaml").read_text())
    cfg = load_config(None, {**saved, **{k: overrides[k] for k in hardware if overrides.get(k) is not None}})
    click.echo(f"resuming {run} from {stage / 'checkpoints' / 'last.ckpt'}")
    metrics = train_landuse(cfg, run, progress=not quiet, log=click.echo, resume=True)
    _report(metrics, run)


def _report(metrics: dict, out: Path) -> None:
    vm = metrics["validation_map"]
    click.echo(f"validation map ({vm['scope']}): OA {vm['overall_accuracy']}, kappa {vm['kappa']}, "
               f"{vm['n']} pixels; tile accuracy {metrics['validation_tiles']['accuracy']}")
    if "validation_map_image_frame" in metrics:
        raw = metrics["validation_map_image_frame"]
        click.echo(f"  (scored in the labels' frame, offset {vm['map_offset_px']} px; on the image's own grid: "
                   f"OA {raw['overall_accuracy']}, kappa {raw['kappa']})")
    click.echo(f"model: {out / 'model.geocamat'}")
