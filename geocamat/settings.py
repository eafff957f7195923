"""Typed settings: a YAML file, command-line flags and ``--set key=value`` all resolve into one dataclass.

Each task has one settings dataclass (``geocamat.tasks.<task>.config``); its fields are the only home of the
defaults, and their ``help`` metadata is what the command line shows. Fields are declared with
:func:`setting`; a nested ``camat`` field holds a :class:`geocamat.camat.config.CamatConfig`.
Relative paths in a YAML file are resolved against the file's folder. Torch-free.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from geocamat.errors import ConfigError


def setting(default: Any = None, help: str = "", *, choices: tuple | None = None, path: bool = False,
            factory: Any = None) -> Any:
    """A settings field: its default, the help text the CLI shows, allowed values, whether it holds paths."""
    meta = {"help": help, "choices": choices, "path": path}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (calling its factory)."""
    return f.default_factory() if f.default is MISSING else f.default


def field_map(cls) -> dict[str, dataclasses.Field]:
    """The fields of a settings class by name."""
    return {f.name: f for f in fields(cls)}


class SettingsLoader(yaml.SafeLoader):
    """YAML as users write numbers: ``1e-3`` is a float (YAML 1.2; PyYAML's 1.1 reads it as the text '1e-3'); a key
    given twice in one mapping is an error (PyYAML kept the last, silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice", key_node.start_mark)
            seen.add(key if isinstance(key, str | int | float | bool) else id(key_node))
        return super().construct_mapping(node, deep)


SettingsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))


def load_yaml(text: str):
    """``yaml.safe_load`` with :class:`SettingsLoader`'s numbers."""
    return yaml.load(text, Loader=SettingsLoader)  # noqa: S506 - a SafeLoader subclass


def _coerce(text: str):
    """Parse a --set value as YAML (numbers, booleans, lists), falling back to the string."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def apply_override(config: dict, assignment: str) -> None:
    """Apply one ``key=value`` (``camat.tau=0.6`` for nested keys) to the raw ``config`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    target = config
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {key}: {part} is not a mapping")
    target[parts[-1]] = _coerce(value)


def read_yaml(path: str | Path) -> dict:
    """A YAML settings file as a dict, with relative paths made absolute against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML: {problem}{where}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a YAML settings file (it is binary): give images with --images, a "
                          "config file as the first argument") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    for key in PATH_KEYS:
        if loaded.get(key) is not None:
            values = loaded[key] if isinstance(loaded[key], list) else [loaded[key]]
            resolved = [v if not isinstance(v, str) or Path(v).is_absolute() else str(path.parent / v)
                        for v in values]  # (not a path: left as written, for the settings' check to name)
            loaded[key] = resolved if isinstance(loaded[key], list) else resolved[0]
    for key in MAYBE_PATH_KEYS:
        value = loaded.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (path.parent / value).is_file():
            loaded[key] = str(path.parent / value)
    return loaded


#: Keys that hold paths in any task's settings (resolved against a YAML file's folder).
PATH_KEYS = ("images", "labels", "scenes", "val_images", "val_labels", "init_from", "labelled_area")
#: Keys that hold a path only when that file exists beside the YAML file (else a name, e.g. a weights enum).
MAYBE_PATH_KEYS = ("weights",)


@dataclass
class RawSettings:
    """What the user gave, before defaults: the merged values, the keys given as flags and those given by --set."""

    values: dict
    flags: set[str]
    assigned: set[str]

    @property
    def explicit(self) -> set[str]:
        """Every key given on the command line (flags and --set)."""
        return self.flags | self.assigned


def load_raw(path: str | Path | None = None, flags: dict | None = None,
             assignments: list[str] | tuple[str, ...] = ()) -> RawSettings:
    """YAML file <- flags (None means not given) <- ``--set`` assignments, without defaults or checks."""
    values: dict = read_yaml(path) if path is not None else {}
    explicit: set[str] = set()
    assigned: set[str] = set()
    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key == "camat":
            values["camat"] = {**(values.get("camat") or {}), **value}
            explicit |= {f"camat.{k}" for k in value}
        else:
            values[key] = value
            explicit.add(key)
    for assignment in assignments:
        apply_override(values, assignment)
        assigned.add(assignment.split("=", 1)[0].strip())
    return RawSettings(values, explicit, assigned)


def _did_you_mean(name: str, known) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing."""
    import difflib

    close = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def build[T](cls: type[T], values: dict, *, what: str) -> T:
    """Instantiate the settings class ``cls`` from a raw dict: unknown keys refused, ``camat`` nested.

    Args:
        cls: a settings dataclass.
        values: raw values (YAML + flags + --set).
        what: how the settings are named in messages (e.g. "land-use training").
    """
    from geocamat.camat.config import CamatConfig

    known = field_map(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a setting of {what}{_did_you_mean(unknown[0], known)}: its "
                          f"settings are {', '.join(sorted(known))}")
    kwargs = dict(values)
    if "camat" in known and "camat" in kwargs:
        given = kwargs["camat"] or {}
        if not isinstance(given, dict):
            raise ConfigError("camat must be a mapping of CAMAT options")
        bad = sorted(set(given) - set(CamatConfig.names()))
        if bad:
            raise ConfigError(f"unknown CAMAT option {bad[0]!r}{_did_you_mean(bad[0], CamatConfig.names())}: the "
                              f"options are {', '.join(CamatConfig.names())}")
        try:
            kwargs["camat"] = type(default_of(known["camat"]))(**given)  # the task's own CAMAT defaults
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
    for name, f in known.items():
        choices = f.metadata.get("choices")
        if choices and name in kwargs and kwargs[name] is not None and kwargs[name] not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, not {kwargs[name]!r}")
    settings = cls(**kwargs)
    check = getattr(settings, "check", None)
    if check is not None:
        check()
    return settings


def as_dict(settings) -> dict:
    """The settings as plain values (what config.yaml and bundles record)."""
    return dataclasses.asdict(settings)


def dump(settings, path: Path) -> None:
    """Write the resolved settings (a settings dataclass, or its dict) as YAML (saved with every run)."""
    values = settings if isinstance(settings, dict) else as_dict(settings)
    path.write_text(yaml.safe_dump(values, sort_keys=False))


# -- checks shared by the task settings ------------------------------------------------------------------------

def positive_int(settings, *keys: str) -> None:
    """Each key holds an integer >= 1."""
    for key in keys:
        value = getattr(settings, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, not {value!r}")


def in_range(settings, key: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
             optional: bool = False) -> None:
    """The key holds a number in the interval (bounds closed unless said); None allowed when optional."""
    value = getattr(settings, key)
    if value is None and optional:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        ok = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{key} must be a number in {interval}, not {value!r}")


def as_list(value) -> list:
    """A path setting given as one string or a list, as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
