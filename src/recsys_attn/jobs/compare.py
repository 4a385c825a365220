"""Compare finished runs: ``python -m recsys_attn.compare runs=[<run dir>,<run dir>,...]`` (or a sweep dir).

Writes ``comparison.md``, ``comparison.csv`` and PNG plots into its run directory (``out_dir`` to choose):
each run's metrics with 95% bootstrap intervals, and each run against the first with a paired bootstrap test.
Runs are named by what differs between them (the model, the experiment, the settings that differ).
"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recsys_attn.errors import ConfigError
from recsys_attn.evaluation.report import compare_runs
from recsys_attn.run.runner import check_setting


def run(cfg: DictConfig) -> None:
    """The command's run under Hydra."""
    check_setting(cfg, "runs", list[str])
    check_setting(cfg, "samples", int, minimum=1)
    check_setting(cfg, "seed", int, minimum=0)
    if not cfg.runs:
        raise ConfigError("runs: expected a list of run (or sweep) directories, e.g. runs=[logs/a,logs/b]")
    out_dir = cfg.get("out_dir") or HydraConfig.get().runtime.output_dir
    report = compare_runs(list(cfg.runs), out_dir, cfg.split, cfg.samples, cfg.seed, cfg.alpha)
    print(report.read_text(), end="")
    print(f"comparison -> {report} (and {report.with_suffix('.csv').name}, the plots)")
