"""Typed configuration sections shared by every YAML config of probekit (training runs, sweeps).

A section is a dataclass whose annotations are the allowed keys and their types. :func:`coerce` checks a YAML
value against an annotation (``int``, ``float``, ``str``, ``bool``, ``None``, ``Literal``, unions, fixed
``tuple[...]`` and ``list[X]``); :func:`fill` applies a mapping onto a section and raises :class:`ConfigError`
naming the key, the allowed keys or values, and the value given. No torch here.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from probekit.igsm.presets import resolve_preset


class ConfigError(ValueError):
    """A configuration that cannot run; the message says which key and why."""


class SettingError(ValueError):
    """One setting of a job spec out of range. ``setting`` names the field; the command line shows it as the
    option that sets it (:attr:`flag_message`: ``--n-train must be >= 1, got 0``) and exits 2 (:attr:`usage_error`)."""

    usage_error = True

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting} {problem}")
        self.setting, self.problem = setting, problem

    @property
    def flag_message(self) -> str:
        return f"--{self.setting.replace('_', '-')} {self.problem}"


def check_at_least(spec, minimum: float, *names: str) -> None:
    """Raise :class:`SettingError` for the first of the fields ``names`` of ``spec`` below ``minimum`` (None
    passes: a default chosen later)."""
    for name in names:
        value = getattr(spec, name)
        if value is not None and value < minimum:
            raise SettingError(name, f"must be >= {minimum}, got {value}")


def check_preset(spec) -> None:
    """Raise :class:`SettingError` when ``spec.preset`` names no family the generator can draw (None passes:
    the checkpoint's family, chosen later)."""
    if spec.preset is None:
        return
    try:
        resolve_preset(spec.preset)
    except ValueError as err:
        raise SettingError("preset", f"names no family the generator can draw: {err}") from None


def comma_choices(choices):
    """An ``argparse`` type: a comma list of ``choices`` -> a tuple without repeats (in order); an empty list or
    an unknown item is a usage error saying what is allowed (argparse names the option)."""
    import argparse

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
        if not items or any(x not in choices for x in items):
            raise argparse.ArgumentTypeError(f"must be a comma list of {', '.join(choices)} (got {text!r})")
        return items

    return parse


class Mismatch(Exception):
    """A value that does not fit a type annotation (internal to :func:`coerce`)."""


def type_fields(cls) -> dict[str, Any]:
    """``{key: annotation}`` of a section dataclass."""
    return typing.get_type_hints(cls)


def type_name(tp) -> str:
    """A readable name of an annotation, for error messages."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list of " + ", ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of ({type_name(typing.get_args(tp)[0])})"
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"a mapping of ({type_name(key)}) to ({type_name(value)})"
    if tp is type(None):
        return "null"
    return {bool: "a bool", int: "an int", float: "a float", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(value, tp):
    """``value`` as type ``tp`` or raise :class:`Mismatch` (ints for floats, numeric strings like '3e-3' for
    floats; a single value where a ``list[X]`` is expected becomes a one-element list)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg)
            except Mismatch:
                pass
        raise Mismatch
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return value
        raise Mismatch
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise Mismatch
        return tuple(coerce(v, a) for v, a in zip(value, args))
    if origin is list:
        (arg,) = typing.get_args(tp)
        items = value if isinstance(value, (list, tuple)) else [value]
        return [coerce(v, arg) for v in items]
    if origin is dict:
        if not isinstance(value, dict):
            raise Mismatch
        key_type, value_type = typing.get_args(tp)
        return {coerce(k, key_type): coerce(v, value_type) for k, v in value.items()}
    if tp is type(None):
        if value is None:
            return None
        raise Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:  # 1e5 in YAML is a float
            return int(value)
        raise Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 3e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise Mismatch from None
        raise Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise Mismatch
    if dataclasses.is_dataclass(tp):  # a nested section: its keys are checked by fill
        if isinstance(value, dict):
            return fill(tp(), value, type_name(tp))
        raise Mismatch
    if tp is dict:
        if isinstance(value, dict):
            return value
        raise Mismatch
    raise TypeError(f"unsupported config type {tp}")


def suggest(key: str, allowed) -> str:
    """`` (did you mean 'x'?)`` for the closest allowed key, or an empty string."""
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fill(section, data, where: str):
    """Set every ``key: value`` of the mapping ``data`` on the dataclass instance ``section`` (type-checked)."""
    if data is None:
        return section
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys, got {data!r}")
    hints = type_fields(type(section))
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(
                f"{where}: unknown key {key!r}{suggest(str(key), hints)}; allowed keys: {', '.join(hints)}"
            )
        set_coerced(section, key, value, hints[key], f"{where}.{key}")
    return section


def set_coerced(obj, key: str, value, hint, where: str, detail: str = "") -> None:
    """``setattr(obj, key, coerce(value, hint))``; a :class:`ConfigError` ("``where`` expects <type>, got
    <value><detail>") when ``value`` does not fit ``hint``."""
    try:
        setattr(obj, key, coerce(value, hint))
    except Mismatch:
        raise ConfigError(f"{where} expects {type_name(hint)}, got {value!r}{detail}") from None
    except ConfigError as err:  # inside a nested section
        raise ConfigError(f"{where}: {err}") from None


def read_yaml(path, what: str = "config") -> dict:
    """The mapping in a YAML file (empty file: ``{}``); :class:`ConfigError` when it is missing, unreadable, not
    YAML or not a mapping (``what`` names the kind of file in the message)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no {what} file {str(path)!r}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data
