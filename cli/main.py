"""Entry point: ``geocamat COMMAND``. Commands are imported only when used, so ``--help`` is instant."""

from __future__ import annotations

import importlib
import sys

import click

COMMANDS = {
    "train": ("cli.train", "train", "Train a land-use classifier or object detector (CAMAT by default)."),
    "predict": ("cli.predict", "predict", "Map a region with a trained model: GeoTIFFs and vector layers."),
    "evaluate": ("cli.evaluate", "evaluate", "Score a model's map against a reference raster."),
    "info": ("cli.info", "info", "Describe a GeoTIFF, vector file or model bundle."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, and which turns user errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        from geocamat.errors import GeocamatError

        try:
            return super().invoke(ctx)
        except GeocamatError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="geocamat")
def cli() -> None:
    """geocamat: land-use maps and object inventories from GeoTIFF imagery, trained with CAMAT.

    Typical use: `geocamat train samples/nc_landsat.yaml --out run/` then
    `geocamat predict --model run/model.geocamat --out map/ IMAGE...`.
    """


if __name__ == "__main__":  # python -m cli.main (also how Lightning relaunches DDP ranks)
    cli()
