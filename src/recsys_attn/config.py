"""Hydra/OmegaConf helpers shared by the entry points."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from recsys_attn.errors import ConfigError, RecsysError

__all__ = ["CONF_DIR", "ConfigError", "build_settings", "one_line", "register_resolvers", "run_entry_point"]


def register_resolvers() -> None:
    """Register the custom resolvers used by ``conf/`` (idempotent)."""
    if not OmegaConf.has_resolver("rsa_cwd"):
        OmegaConf.register_new_resolver("rsa_cwd", os.getcwd)


register_resolvers()


T = TypeVar("T")

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
"""The repository's ``conf/`` (an absolute path, so console scripts find it from any directory)."""


def build_settings(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Build the dataclass ``cls`` from ``values``, failing on an unknown key with its full name."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; valid keys of {where} are {', '.join(sorted(names))}")
    return cls(**values)


def one_line(exc: BaseException) -> str:
    """An error message on one line, without OmegaConf's ``full_key``/``object_type`` trailer."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(("full_key:", "object_type=")))


def run_entry_point(hydra_main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; configuration and data errors exit with one line naming the key.

    Hydra would print a multi-line report; with ``HYDRA_FULL_ERROR`` set it raises instead, so the
    errors a user can fix become one line here, while bugs keep their full traceback.
    """
    from hydra.errors import HydraException

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        hydra_main()
    except (HydraException, RecsysError) as exc:
        sys.exit(f"error: {one_line(exc)}")
