"""What each command does, one module per command (``jobs.train`` for ``python -m recsys_attn.train``).

The command modules at the top of the package parse the command line and call :func:`run_job`, which imports the
job only then: a command's ``--help`` stays fast, and a job may import every layer below it (``run``,
``tracking``, ``serving``, ``models``, ``evaluation``, ``data`` and the leaf modules). Nothing imports a job but
its command (and tests).
"""

from __future__ import annotations

import importlib
from typing import Any

from omegaconf import DictConfig

JOBS = ("train", "evaluate", "predict", "export", "ope", "compare", "prepare")
"""The commands, each with its job module here."""


def run_job(name: str, cfg: DictConfig) -> Any:
    """``recsys_attn.jobs.<name>.run(cfg)``, importing the job module now (it imports torch and Lightning)."""
    if name not in JOBS:
        raise ValueError(f"no job {name!r}; the jobs are {', '.join(JOBS)}")  # a bug in a command module
    return importlib.import_module(f"{__name__}.{name}").run(cfg)
