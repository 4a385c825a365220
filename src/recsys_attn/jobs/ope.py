"""Off-policy evaluation: ``python -m recsys_attn.ope logged=<file> ckpt_path=<file> [policy=...]``.

Estimates the value of the target (the checkpoint's scores, turned into slates by ``policy``) from a log of
slates another policy served; writes ``ope.json`` and ``served_ctr.parquet`` into its run directory. The
estimators are defined in ``recsys_attn.serving.ope_estimators``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from recsys_attn.atomic import write_together
from recsys_attn.data.batches import EvalBatch
from recsys_attn.errors import ConfigError
from recsys_attn.run.checkpoints import checkpoint_and_data
from recsys_attn.run.run_dir import failed_run_cleanup, use_trained_data
from recsys_attn.run.runner import check_setting, device_of, output_dir, start_run
from recsys_attn.serving.histories import history_file
from recsys_attn.serving.logs import index_log, read_log
from recsys_attn.serving.ope_estimators import ESTIMATORS, diagnostics, estimate, fit_reward_model, served_ctr
from recsys_attn.serving.policies import make_policy
from recsys_attn.serving.targets import history_batches, new_user_slates, target_slots

log = logging.getLogger(__name__)

REPORT_FILE, CTR_FILE = "ope.json", "served_ctr.parquet"


def ope(cfg: DictConfig) -> tuple[dict[str, Any], pl.DataFrame]:
    """Every estimate of ``cfg.logged`` under the target, written to the run directory; returns the report and CTRs."""
    check_setting(cfg, "logged", str)
    check_setting(cfg, "bootstrap", int, minimum=1)
    check_setting(cfg, "batch_size", int, minimum=1)
    check_setting(cfg, "level", float)
    if not 0.0 < cfg.level < 1.0:
        raise ConfigError(f"level: must be in (0, 1), e.g. 0.95 (got {cfg.level!r})")
    check_setting(cfg, "histories", str | None)
    histories = history_file(cfg.histories) if cfg.histories is not None else None
    policy = make_policy(cfg.policy, cfg.temperature, cfg.epsilon)
    logged = read_log(cfg.logged)  # a malformed log fails here, before the model loads and anything is written
    start_run(cfg, ckpt_required=True)
    model, datamodule = checkpoint_and_data(cfg)
    model.to(device_of(cfg.device))
    if datamodule.prepared is None:
        raise RuntimeError("ope: checkpoint_and_data returned a datamodule that is not set up")
    prepared = datamodule.prepared
    batches: Iterator[EvalBatch]
    if histories is None:
        slates = index_log(logged, prepared.users, prepared.items, cfg.logged)
        batches = history_batches(datamodule, slates.users, cfg.batch_size)
    else:
        slates, batches = new_user_slates(
            histories, logged, Path(cfg.logged), prepared, model.sample_spec, cfg.batch_size
        )
    reward = fit_reward_model(slates, model.n_items + 1)
    target = target_slots(model, policy, batches, slates, reward)
    estimates = estimate(slates, target, cfg.bootstrap, cfg.seed, cfg.level)
    report: dict[str, Any] = {name: e._asdict() for name, e in estimates.items()}
    report.update(
        policy={"name": policy.name, **policy.params()},
        logged_file=str(cfg.logged),
        histories=str(histories.resolve()) if histories is not None else None,
        ckpt_path=str(cfg.ckpt_path),
        slates=int(slates.shown.shape[0]),
        slots=int(slates.shown.sum()),
        level=cfg.level,
        bootstrap=cfg.bootstrap,
        seed=cfg.seed,
        diagnostics=diagnostics(slates, target),
    )
    ctr = served_ctr(logged, reward.rank_factor)
    write_outputs(output_dir(cfg), report, ctr)
    return report, ctr


def write_outputs(out: Path, report: dict[str, Any], ctr: pl.DataFrame) -> tuple[Path, Path]:
    """Write ``served_ctr.parquet`` and ``ope.json`` into ``out`` together (neither when one fails); their paths."""
    report_path, ctr_path = out / REPORT_FILE, out / CTR_FILE
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    with write_together(ctr_path, report_path) as staged:  # the report last: it describes the CTR table
        staged.write(ctr_path, ctr.write_parquet)
        staged.write(report_path, lambda tmp: tmp.write_text(text))
    log.info("wrote %s and %s", report_path, ctr_path)
    return report_path, ctr_path


def print_report(report: dict[str, Any]) -> None:
    """The estimates with their intervals, and how well the log covers the target (entry point only)."""
    level = f"{report['level']:.0%}"
    policy = " ".join(f"{k}={v}" if k != "name" else f"policy={v}" for k, v in report["policy"].items())
    table = Table(title=f"value per slate of {policy} ({report['slates']:,} logged slates)")
    for col in ("estimator", "value", f"{level} lo", f"{level} hi"):
        table.add_column(col, justify="left" if col == "estimator" else "right")
    for name in ESTIMATORS:
        e = report[name]
        table.add_row(name, *(f"{e[k]:.4f}" if not math.isnan(e[k]) else "nan" for k in ("value", "lo", "hi")))
    Console().print(table)
    diag = report["diagnostics"]
    weights = ", ".join(f"{v:.3g}" for v in diag["mean_weight_by_rank"])
    ess = ", ".join(f"{v:,.0f}" for v in diag["ess_by_rank"])
    print(f"mean weight by rank (near 1 when the log covers the target): {weights}; effective slates: {ess}")


def run(cfg: DictConfig) -> None:
    """Under Hydra: estimate (the data of the checkpoint's own run unless ``data=...``), print the table."""
    with failed_run_cleanup():
        use_trained_data(cfg, HydraConfig.get().overrides.task)
        report, _ = ope(cfg)
    print_report(report)
    print(f"-> {output_dir(cfg) / REPORT_FILE}, {output_dir(cfg) / CTR_FILE}")
