"""Hydra/OmegaConf helpers shared by the entry points."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from omegaconf import OmegaConf


def register_resolvers() -> None:
    """Register the custom resolvers used by ``conf/`` (idempotent)."""
    if not OmegaConf.has_resolver("rsa_cwd"):
        OmegaConf.register_new_resolver("rsa_cwd", os.getcwd)


register_resolvers()


T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the key."""


def build_settings(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Build the dataclass ``cls`` from ``values``, failing on an unknown key with its full name."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; valid keys of {where} are {', '.join(sorted(names))}")
    return cls(**values)
