"""Prepare a data set into the cache: ``python -m recsys_attn.prepare data=<name>``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recsys_attn.data.cache import load_prepared
from recsys_attn.data.prepared import Prepared
from recsys_attn.data.preprocess import Preparation
from recsys_attn.data.sources import Source
from recsys_attn.run.entry import register_resolvers
from recsys_attn.run.run_dir import failed_run_cleanup

register_resolvers()


def prepare(cfg: DictConfig) -> Prepared:
    """Build ``cfg.data.source`` and ``cfg.data.preparation`` and load (or build) the cache."""
    source: Source = hydra.utils.instantiate(cfg.data.source)
    preparation: Preparation = hydra.utils.instantiate(cfg.data.preparation)
    return load_prepared(source, preparation, cfg.paths.data_dir, cfg.paths.cache_dir)


def summary(prepared: Prepared) -> str:
    """A small table of the prepared data set's counts and cache folder."""
    rows = [
        ("data set", str(prepared.meta.get("source", {}).get("name", "?"))),
        ("users", f"{prepared.n_users:,}"),
        ("items", f"{prepared.n_items:,}"),
        ("interactions", f"{prepared.n_interactions:,}"),
        ("cache", str(prepared.meta.get("cache_path", "-"))),
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def run(cfg: DictConfig) -> None:
    """Under Hydra: prepare the data set and print a summary."""
    with failed_run_cleanup():
        print(summary(prepare(cfg)))
