"""Callbacks that monitor a validation metric the run will never log, refused before training in one line.

Lightning finds out only at the end of the first epoch, with a traceback (``EarlyStopping`` conditioned on a
metric "which is not available"), or not at all: a ``ModelCheckpoint`` whose metric never comes keeps only
``last.ckpt`` and the run tests it as if it were the best.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from recsys_attn.errors import ConfigError
from recsys_attn.models.base import RecModule

_RANKING = re.compile(r"^val/((hr|ndcg)@\d+|mrr)(_s\d+)?$")
"""The ranking metrics of a validation pass (``metrics.ranking_metrics``): their names depend on the model's
settings (``model.eval_ks``, ``model.sampled_eval``), so a monitored one is checked against the model's own."""


def check_monitors(cfg: DictConfig, model: RecModule) -> None:
    """Raise ``ConfigError`` when a callback of ``cfg.callbacks`` monitors a ``val/`` metric this run never logs.

    Never logged: validation does not run (``trainer.limit_val_batches=0``, or ``trainer.check_val_every_n_epoch``
    past ``trainer.max_epochs``), or the metric is a ranking metric the model does not compute (a cut-off not in
    ``model.eval_ks``, a sampled ``_s<n>`` metric without ``model.sampled_eval``). Other monitored names are not
    checked here (the model logs many more, some depending on the data).

    Raises:
        ConfigError: Naming the setting that holds the metric (``optimized_metric`` when the callback takes it
            from there) and what to change.
    """
    never = _no_validation(cfg.get("trainer") or {})
    for setting, metric in _monitors(cfg):
        if not metric.startswith("val/"):
            continue
        if never:
            why, fix = never
            raise ConfigError(f"{setting}={metric}: {why}, so {metric} is never logged; {fix}")
        if _RANKING.match(metric) and metric not in (logged := _ranking_metrics(model)):
            raise ConfigError(
                f"{setting}={metric}: the model logs no {metric} (model.eval_ks={list(model.settings.eval_ks)}, "
                f"model.sampled_eval={model.settings.sampled_eval}); its ranking metrics are {', '.join(logged)}"
            )


_WITHOUT = "or train without the callbacks that monitor it (callbacks=none)"


def _no_validation(trainer: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why ``trainer``'s settings run no validation pass and what to change, or None when they run one."""
    limit = trainer.get("limit_val_batches")
    if limit is not None and limit == 0:
        return f"trainer.limit_val_batches={limit} runs no validation", f"let validation run, {_WITHOUT}"
    every, epochs = trainer.get("check_val_every_n_epoch", 1), trainer.get("max_epochs")
    if every is not None and epochs is not None and 0 <= epochs < every:
        why = f"trainer.check_val_every_n_epoch={every} is past trainer.max_epochs={epochs}: validation never runs"
        return why, f"set trainer.check_val_every_n_epoch <= {epochs}, {_WITHOUT}"
    return None


def _monitors(cfg: DictConfig) -> Iterator[tuple[str, str]]:
    """``(setting, metric)`` of each callback of ``cfg.callbacks`` with a ``monitor``; the setting is
    ``optimized_metric`` when the callback's monitor is taken from it, else ``callbacks.<name>.monitor``."""
    callbacks = cfg.get("callbacks")
    if not isinstance(callbacks, DictConfig):
        return
    raw = cast(dict[str, Any], OmegaConf.to_container(callbacks, resolve=False))  # a DictConfig's is a dict
    for key, node in callbacks.items():
        name = str(key)
        if not isinstance(node, DictConfig) or node.get("monitor") is None:
            continue
        given = raw[name].get("monitor")
        setting = "optimized_metric" if given == "${optimized_metric}" else f"callbacks.{name}.monitor"
        yield setting, str(node.monitor)


def _ranking_metrics(model: RecModule) -> list[str]:
    """The ranking metrics the model logs in a validation pass, in the order of their cut-offs."""
    groups = cast(dict[str, Any], model.eval_metrics["val"])  # a ModuleDict of metric collections
    names = [name for group in ("full", "sampled") if group in groups for name in groups[group]]
    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])
