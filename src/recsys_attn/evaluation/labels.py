"""Names of compared runs that say what differs between them: the model, the experiment, the differing settings.

Each run directory keeps what Hydra composed (``.hydra/config.yaml``), the command line's overrides
(``.hydra/overrides.yaml``) and the config groups chosen (``.hydra/hydra.yaml``). The settings compared are
the model and every key some run overrode (``hydra.*``, ``paths.*`` and the like left out); a run's value of a
key is the one it ran with, so ``model.hidden_size=128`` on one command line and the default 64 of another run
differ. A ``model.*`` setting is compared only between runs of the same model: different models have different
settings, and their names already tell them apart. A run whose settings differ in nothing is named by its
directory (``<sweep>/<job>`` when two directories share a name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from recsys_attn.evaluation.runs import read_settings, split_override

BARE = ("model", "experiment")
"""Keys whose value alone names a run (``sasrec``, not ``model=sasrec``)."""


def run_labels(dirs: Sequence[Path]) -> list[str]:
    """A short, unique name per run directory: what differs between it and the others (see the module)."""
    fallback = _directory_names(dirs)
    settings = [read_settings(d) for d in dirs]
    keys = list(dict.fromkeys(["model", *(split_override(o)[0] for s in settings for o in s.overrides)]))
    values = {key: [s.value(key) for s in settings] for key in keys}
    shown = {key: _differing_runs(key, values[key], values["model"]) for key in keys}
    labels = [
        " ".join(_parts({k: values[k][i] for k in keys if i in shown[k]})) or fallback[i] for i in range(len(dirs))
    ]
    count = Counter(labels)
    labels = [f"{label} ({name})" if count[label] > 1 else label for label, name in zip(labels, fallback, strict=True)]
    count = Counter(labels)  # still equal: two directories of the same name and settings
    return [f"{label} #{i + 1}" if count[label] > 1 else label for i, label in enumerate(labels)]


def _differing_runs(key: str, values: list[str | None], models: list[str | None]) -> set[int]:
    """The runs whose label shows ``key``: all when the runs differ in it; for a ``model.*`` key, the runs of
    each model whose runs differ in it."""
    if not key.startswith("model."):
        return set(range(len(values))) if len(set(values)) > 1 else set()
    by_model: dict[str | None, set[str | None]] = {}
    for model, value in zip(models, values, strict=True):
        by_model.setdefault(model, set()).add(value)
    return {i for i, model in enumerate(models) if len(by_model[model]) > 1}


def _parts(values: dict[str, str | None]) -> list[str]:
    """The label's parts: ``sasrec``, ``sasrec_ml-1m``, ``key=value``; absent values left out."""
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        if key == "model" and (values.get("experiment") or "").startswith(value):
            continue  # experiment files are named <model>_<dataset>[_variant]: the model is in it
        parts.append(value if key in BARE else f"{key}={value}")
    return parts


def _directory_names(dirs: Sequence[Path]) -> list[str]:
    """Each directory's name, or ``<parent>/<name>`` for all when two share one (jobs 0, 1, ... of two sweeps)."""
    names = [d.name for d in dirs]
    if len(set(names)) < len(names):
        names = [f"{d.parent.name}/{d.name}" for d in dirs]
    return names
