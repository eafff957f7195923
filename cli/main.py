"""Entry point: ``geocamat COMMAND``. Commands are imported only when used, so ``--help`` is instant."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path

import click

COMMANDS = {
    "train": ("cli.train", "train", "Train a land-use classifier or object detector (CAMAT by default)."),
    "predict": ("cli.predict", "predict", "Map a region with a trained model: GeoTIFFs and vector layers."),
    "evaluate": ("cli.evaluate", "evaluate", "Score a model against a reference: land cover, or boxes for detection."),
    "info": ("cli.info", "info", "Describe a GeoTIFF, vector file or model bundle."),
    "sample": ("cli.sample", "sample", "Draw reference points from a class map (stratified random) to label."),
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

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """As click's, but a usage error (unknown option, bad value) is one line too, with where to look."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        stopped = []
        previous = _on_sigterm(stopped)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare `geocamat`: the help
                exc.show()
                sys.exit(exc.exit_code)
            where = exc.ctx.command_path if exc.ctx is not None else "geocamat"
            click.echo(f"Error: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo(_interrupted(list(sys.argv[1:] if args is None else args)), err=True)
            sys.exit(143 if stopped else 130)  # 128 + the signal: SIGTERM (a batch system's stop), SIGINT
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        sys.exit(rv if isinstance(rv, int) else 0)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["geocamat.argv"] = list(args)  # for the error funnel: the command's --out
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        """Run the command; every failure goes through :func:`geocamat.failures.user_error` (one line, exit 2)."""
        import warnings

        debug = bool(ctx.params.get("debug"))
        if not debug:  # GDAL's own "ERROR 1: ..." lines (printed from C) would be a second line beside ours
            os.environ.setdefault("CPL_LOG", os.devnull)
        _matplotlib_cache()
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if not debug:  # library warnings are noise for a user; --debug shows them
                warnings.simplefilter("ignore")
                from geocamat.errors import GeocamatWarning

                warnings.simplefilter("always", GeocamatWarning)
            try:
                return super().invoke(ctx)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except Exception as exc:  # noqa: BLE001 - the one funnel of user-facing failures
                if debug:
                    raise
                _fail(exc, ctx.invoked_subcommand, _option(ctx.meta.get("geocamat.argv", []), "--out"))


def _matplotlib_cache() -> None:
    """Give Matplotlib a cache folder it can write when the home folder is read-only (a batch job's or container's
    HOME): it otherwise prints two long lines about it on every run, also with --quiet."""
    import tempfile

    if "MPLCONFIGDIR" in os.environ:
        return
    folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path(os.environ.get("HOME") or "/") / ".config")
    existing = next((p for p in (folder / "matplotlib", *(folder / "matplotlib").parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and os.access(existing, os.W_OK):  # (/dev/null/home: a file)
        return
    fallback = Path(tempfile.gettempdir()) / f"geocamat-matplotlib-{os.getuid() if hasattr(os, 'getuid') else 0}"
    try:
        fallback.mkdir(exist_ok=True)
    except OSError:
        return
    os.environ["MPLCONFIGDIR"] = str(fallback)


def _on_sigterm(stopped: list):
    """Make SIGTERM (how SLURM, Kubernetes and ``kill`` stop a job) stop a run as Ctrl-C does: the finished work is
    kept and the line says how to continue. Returns the previous handler (None where it cannot be set)."""
    def handler(signum, frame):
        stopped.append(signum)
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): leave its handling alone
        return None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each on stderr: ``warning: ...``."""
    from geocamat.failures import one_line

    click.echo(f"warning: {one_line(str(message), 400)}", err=True)


def _interrupted(argv: list[str]) -> str:
    """The line for a run stopped with Ctrl-C: how to continue it where it can be."""
    out = _option(argv, "--out")
    if out and "predict" in argv:
        if not Path(out).is_dir():
            return f"Interrupted before anything was written to {out}."
        return (f"Interrupted: the windows finished are kept for {out}; the same command with --resume continues "
                "from them")
    out = out or ("train" in argv and _option(argv, "--resume"))
    if out and "train" in argv:
        from geocamat.outputs.staging import STAGE_MARK

        run = Path(out)
        if any(run.parent.glob(f".{run.name}{STAGE_MARK}*/checkpoints/last.ckpt")):
            return f"Interrupted: `geocamat train --resume {out}` continues from the last checkpoint"
        return "Interrupted before the first checkpoint: nothing to resume"
    return "Interrupted."


def _option(argv: list[str], name: str) -> str | None:
    """The value of option ``name`` in raw arguments (``--out X`` or ``--out=X``), if given."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _fail(exc: Exception, command: str | None, out: str | None = None) -> None:
    """Print ``exc`` as one line and exit: 2 for the user's errors, 1 for a bug (--debug shows its traceback)."""
    from geocamat.failures import one_line, user_error

    if isinstance(exc, BrokenPipeError):  # the reader of our output went away (e.g. `| head`): nothing to say
        sys.exit(0)
    error = user_error(exc, command, out)
    if error is not None:
        click.echo(f"Error: {one_line(str(error), 600)}", err=True)
        sys.exit(2)
    click.echo(f"Error: internal error ({type(exc).__name__}: {one_line(str(exc), 200)}); this is a bug: rerun "
               "with `geocamat --debug ...` and report the traceback", err=True)
    sys.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="geocamat")
@click.option("--debug", is_flag=True, help="Show full tracebacks and library warnings.")
def cli(debug: bool) -> None:
    """geocamat: land-use maps and object inventories from GeoTIFF imagery, trained with CAMAT.

    Typical use: `geocamat train samples/nc_landsat.yaml --out run/` then
    `geocamat predict --model run/model.geocamat --out map/ IMAGE...`.
    """


if __name__ == "__main__":
    cli()
