"""Hydra/OmegaConf helpers shared by the entry points."""

from __future__ import annotations

import errno
import math
import os
import sys
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from recsys_attn.errors import ConfigError, RecsysError, RunStopped
from recsys_attn.noise import silence_third_party_noise, without_hydra_job_error

__all__ = [
    "CONF_DIR",
    "MAX_SEED",
    "ConfigError",
    "build_settings",
    "check_ranges",
    "check_type",
    "check_types",
    "one_line",
    "register_resolvers",
    "run_entry_point",
]


def register_resolvers() -> None:
    """Register the custom resolvers used by ``conf/`` (idempotent)."""
    if not OmegaConf.has_resolver("rsa_cwd"):
        OmegaConf.register_new_resolver("rsa_cwd", os.getcwd)


register_resolvers()


T = TypeVar("T")

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
"""The repository's ``conf/`` (an absolute path, so console scripts find it from any directory)."""


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


def one_line(exc: BaseException) -> str:
    """An error message on one line, without OmegaConf's ``full_key``/``object_type`` trailer."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(("full_key:", "object_type=")))


def run_entry_point(hydra_main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; errors a user can fix exit with one line naming the key or path.

    Hydra would print a multi-line report; with ``HYDRA_FULL_ERROR`` set it raises instead, so the
    errors a user can fix become one line here (configuration and data errors, and a file system that
    refuses a write: read-only, no permission, disk full), while bugs keep their full traceback.
    """
    from hydra.errors import HydraException

    silence_third_party_noise()
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        with without_hydra_job_error(sys.argv):
            hydra_main()
    except RunStopped as exc:  # not an error: stopped from outside, with the way to resume
        print(f"stopped: {one_line(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except MissingMandatoryValue as exc:  # a ``???`` left unset, e.g. data.source.path of data=interactions
        sys.exit(f"error: {exc.full_key}: required; set it on the command line ({exc.full_key}=...)")
    except Exception as exc:
        message = _user_error(exc)
        if message is None and not isinstance(exc, HydraException):
            raise
        sys.exit(f"error: {one_line(exc) if message is None else message}")


FILE_SYSTEM_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
"""What a user fixes in the file system, not in the code: permissions, a read-only mount, a full disk."""


def _user_error(exc: BaseException) -> str | None:
    """The one-line message of the user's error behind ``exc`` (and Hydra's wrappers), or None for a bug."""
    chain = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__
    for cause in chain:
        if isinstance(cause, RecsysError):
            return one_line(cause)
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno in FILE_SYSTEM_ERRNOS:
            where = cause.filename or _run_dir()
            return f"{where}: {cause.strerror}" if where else str(cause.strerror)
    return None


def _run_dir() -> str:
    """The run directory, where most files of a run are written (named when an OS error names no file)."""
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else ""
