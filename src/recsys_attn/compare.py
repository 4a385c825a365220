"""Compare finished runs: ``python -m recsys_attn.compare runs=[<run dir>,<run dir>,...]`` (or a sweep dir).

Writes ``comparison.md``, ``comparison.csv`` and PNG plots into its run directory (``out_dir`` to choose):
each run's metrics with 95% bootstrap intervals, and each run against the first with a paired bootstrap test.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from recsys_attn.atomic import write_atomic
from recsys_attn.config import CONF_DIR, ConfigError, run_entry_point
from recsys_attn.evaluation.comparison import common_metrics, compare, to_markdown
from recsys_attn.evaluation.plots import plot_intervals, plot_segments
from recsys_attn.evaluation.runs import expand_runs, load_run
from recsys_attn.runner import check_setting

log = logging.getLogger(__name__)


def compare_runs(
    paths: list[str],
    out_dir: str | Path,
    split: str = "test",
    samples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Path:
    """Compare the runs at ``paths`` (sweep directories expand to their jobs); returns ``comparison.md``."""
    dirs = expand_runs(paths)
    names = [d.name for d in dirs]
    if len(set(names)) < len(names):  # sweep jobs 0, 1, ... of two sweeps: name them by their sweep too
        names = [f"{d.parent.name}/{d.name}" for d in dirs]
    runs = [load_run(d, split, n) for d, n in zip(dirs, names, strict=True)]
    table = compare(runs, samples, seed, alpha)
    metrics = common_metrics(runs)
    out = Path(out_dir)
    markdown = to_markdown(table, metrics, split, samples, alpha)
    md_path = out / "comparison.md"
    write_atomic(md_path, lambda tmp: tmp.write_text(markdown))
    write_atomic(out / "comparison.csv", table.write_csv)
    shown = [m for m in ("ndcg@10", "hr@10", "mrr") if m in metrics] or metrics[:3]
    plot_intervals(table, shown, out)
    plot_segments(runs, split, out)
    print(markdown)
    log.info("comparison of %d runs written to %s", len(runs), out)
    return md_path


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="compare")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    check_setting(cfg, "runs", list[str])
    check_setting(cfg, "samples", int, minimum=1)
    check_setting(cfg, "seed", int, minimum=0)
    if not cfg.runs:
        raise ConfigError("runs: expected a list of run (or sweep) directories, e.g. runs=[logs/a,logs/b]")
    from hydra.core.hydra_config import HydraConfig

    out_dir = cfg.get("out_dir") or HydraConfig.get().runtime.output_dir
    compare_runs(list(cfg.runs), out_dir, cfg.split, cfg.samples, cfg.seed, cfg.alpha)


def main() -> None:
    """Console script and ``python -m`` entry: user errors exit with one line naming the key."""
    run_entry_point(hydra_main)


if __name__ == "__main__":
    main()
