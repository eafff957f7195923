"""Click options shared by several commands (one place, as in rasterio's rio), with help generated from settings.

Every option that sets a task setting defaults to None ("not given"), so that the task's settings dataclass is
the only home of a default; the help text shows that default (per task where they differ).
"""

from __future__ import annotations

import click

overwrite_opt = click.option("--overwrite", is_flag=True, default=None,
                             help="Replace the results of an earlier run in the output folder (other files stay).")
quiet_opt = click.option("--quiet", "-q", is_flag=True,
                         help="No progress bars (predict: no summary line; train: only warnings and notes, on stderr). "
                              "Without it, output to a file or pipe gets a progress line every 30 s "
                              "(GEOCAMAT_PROGRESS_SECONDS; in training too, within each epoch) and a line per training "
                              "epoch instead of bars.")


def _classes(kind: str) -> dict:
    """The settings classes of each task for ``kind`` (Config, PredictOptions or EvaluateOptions)."""
    from geocamat.tasks import TASKS, get_task

    out = {}
    for name in TASKS:
        cls = getattr(get_task(name), kind, None)
        if cls is not None:
            out[name] = cls
    return out


def _describe(kind: str, key: str) -> tuple[str, str]:
    """Help text and default text of a setting, across the tasks that have it (``camat.tau`` for CAMAT's)."""
    from dataclasses import MISSING, fields

    from geocamat.camat.config import CamatConfig

    if key.startswith("camat."):
        name = key.split(".", 1)[1]
        f = {f.name: f for f in fields(CamatConfig)}[name]
        choices = CamatConfig.choices(name)
        text = f.metadata.get("help", "") + (f" ({' | '.join(choices)})" if choices else "")
        defaults = {task: getattr(camat.default_factory(), name) for task, cls in _classes(kind).items()
                    if (camat := {g.name: g for g in fields(cls)}.get("camat")) is not None}
        unset = f.metadata.get("unset")  # what an unset (None) value means, e.g. source: "cached (... fresh)"
        defaults = {t: unset if v is None and unset else v for t, v in defaults.items()}
        values = set(map(_fmt, defaults.values()))
        if len(values) <= 1:  # every task has CAMAT's own default (detection has its own for some options)
            return text, _fmt(f.default)
        return text, "; ".join(f"{t} {_fmt(v)}" for t, v in defaults.items())
    helps, defaults = [], {}
    for task, cls in _classes(kind).items():
        for f in fields(cls):
            if f.name == key:
                helps.append(f.metadata.get("help", ""))
                choices = f.metadata.get("choices")
                if choices:
                    helps[-1] += f" ({' | '.join(map(str, choices))})"
                defaults[task] = f.default_factory() if f.default is MISSING else f.default
    if not helps:
        raise KeyError(f"no task has the setting {key!r}")
    values = set(map(_fmt, defaults.values()))
    shown = values.pop() if len(values) == 1 else "; ".join(f"{t} {_fmt(v)}" for t, v in defaults.items())
    return helps[0], shown


def _fmt(value) -> str:
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def setting_option(kind: str, key: str, *decls: str, **kwargs):
    """A click option for the setting ``key`` of the ``kind`` settings, default None, help from the dataclass.

    ``kind`` is Config (training), PredictOptions or EvaluateOptions. ``decls`` are click's declarations (the
    flag, and the parameter name where it differs from ``key``); ``help_prefix`` goes before the setting's help,
    ``help_text`` replaces it.
    """
    text, default = _describe(kind, key)
    extra = kwargs.pop("help_prefix", "")
    own = kwargs.pop("help_text", None)  # a flag that negates the setting says what it does itself
    kwargs.setdefault("default", None)
    return click.option(*decls, help=own or f"{extra}{text}  [default: {default}]", show_default=False, **kwargs)


def given(**values) -> dict:
    """The options the user gave (None means not given; a flag given as False counts)."""
    return {k: v for k, v in values.items() if v is not None}


def refuse_foreign(given_flags: dict, cls, task_name: str, command: str) -> None:
    """One-line error for an option given that does not apply to this task's ``command``."""
    from dataclasses import fields

    from geocamat.errors import ConfigError

    known = {f.name for f in fields(cls)}
    for key in given_flags:
        if key not in known:
            raise ConfigError(f"--{key.replace('_', '-')} does not apply to {command} with a {task_name} model "
                              f"(its options: {', '.join(_flags_of(known))})")


def _flags_of(keys: set[str]) -> list[str]:
    """The running command's flags (``--name``) that set one of ``keys``, sorted."""
    command = click.get_current_context().command
    flags = {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts
             if opt.startswith("--") and opt[2:].replace("-", "_") in keys}
    return sorted(flags)
