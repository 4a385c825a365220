"""Settings checked where they are built: dataclasses from config values, each value's type and range.

A leaf every layer may import (models, data, evaluation and serving build their settings with it); it imports
nothing of the project but ``errors``. The Hydra side of a run (resolvers, the entry point) is ``run.entry``.
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from recsys_attn.errors import ConfigError

__all__ = ["MAX_SEED", "build_settings", "check_ranges", "check_type", "check_types"]


T = TypeVar("T")

MAX_SEED = 2**32 - 1
"""The largest seed (NumPy's generators take 32-bit seeds, so Lightning's ``seed_everything`` does too)."""


def build_settings(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Build the dataclass ``cls`` from ``values``, failing on an unknown key with its full name."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; valid keys of {where} are {', '.join(sorted(names))}")
    return cls(**values)


_SCALARS: dict[Any, str] = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
_PLURALS: dict[Any, str] = {bool: "booleans", int: "integers", float: "finite numbers", str: "strings"}


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits a settings annotation (``bool`` is not an int; an int is a float)."""
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if annotation is type(None):
        return value is None
    if _is_union(annotation):
        return any(_matches(value, arg) for arg in get_args(annotation))
    if get_origin(annotation) is list:  # a YAML list arrives as a list or an OmegaConf ListConfig
        (item,) = get_args(annotation)
        return isinstance(value, Sequence) and not isinstance(value, str) and all(_matches(v, item) for v in value)
    raise TypeError(f"settings annotation {annotation!r} is not supported by check_type")  # a bug, not a user error


def _expected(annotation: Any) -> str:
    """``annotation`` in words: ``an integer``, ``null or an integer``, ``a list of finite numbers``."""
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if _is_union(annotation):
        args = get_args(annotation)
        rest = " or ".join(_expected(arg) for arg in args if arg is not type(None))
        return f"null or {rest}" if type(None) in args else rest
    (item,) = get_args(annotation)
    return f"a list of {_PLURALS[item]}"


def check_type(key: str, value: Any, annotation: Any) -> None:
    """Fail with ``<key>: expected <type> (got <value>)`` unless ``value`` fits ``annotation``.

    Supports ``int``, ``float``, ``bool``, ``str``, ``list[...]`` of those and ``X | None``.
    """
    if not _matches(value, annotation):
        raise ConfigError(f"{key}: expected {_expected(annotation)} (got {value!r})")


def check_types(settings: Any, group: str) -> None:
    """Check every field of the dataclass instance ``settings`` against its annotation (``group.key`` in errors)."""
    hints = get_type_hints(type(settings))
    for f in fields(settings):
        check_type(f"{group}.{f.name}", getattr(settings, f.name), hints[f.name])


def check_ranges(settings: Any, group: str, checks: Iterable[tuple[str, bool, str]]) -> None:
    """Fail on the first ``(key, ok, what)`` that is not ok: ``<group>.<key>: <what> (got <value>)``."""
    for key, ok, what in checks:
        if not ok:
            raise ConfigError(f"{group}.{key}: {what} (got {getattr(settings, key)!r})")
