"""Export top-K recommendations: ``python -m recsys_attn.predict ckpt_path=<file> [k=100] [output=recs.csv]``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import hydra
import polars as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from recsys_attn.atomic import write_atomic
from recsys_attn.checkpoints import checkpoint_and_data
from recsys_attn.config import CONF_DIR, ConfigError, run_entry_point
from recsys_attn.recommend import HISTORIES, recommend
from recsys_attn.run_dir import failed_run_cleanup, use_trained_data
from recsys_attn.runner import check_setting, start_run

log = logging.getLogger(__name__)

WRITERS: dict[str, Callable[[pl.DataFrame, Path], object]] = {
    ".parquet": lambda frame, path: frame.write_parquet(path),
    ".csv": lambda frame, path: frame.write_csv(path),
}


def predict(cfg: DictConfig) -> pl.DataFrame:
    """Top ``cfg.k`` items per user of ``cfg.ckpt_path``, written to ``cfg.output``; returns them."""
    output = Path(cfg.output)
    write = WRITERS.get(output.suffix.lower())
    if write is None:
        raise ConfigError(f"output: {output} must end in one of {', '.join(WRITERS)}")
    if cfg.history not in HISTORIES:
        raise ConfigError(f"history: {cfg.history!r} is not one of {', '.join(HISTORIES)}")
    check_setting(cfg, "k", int, minimum=1)
    check_setting(cfg, "batch_size", int, minimum=1)
    check_setting(cfg, "max_users", int | None, minimum=1)
    start_run(cfg, ckpt_required=True)
    model, datamodule = checkpoint_and_data(cfg)
    model.to(_device(cfg.device))
    users = OmegaConf.to_container(cfg.users) if cfg.users is not None else None
    try:
        recs = recommend(
            model,
            datamodule,
            k=cfg.k,
            max_users=cfg.max_users,
            history=cfg.history,
            batch_size=cfg.batch_size,
            users=users,  # type: ignore[arg-type]
        )
    except ValueError as exc:  # bad k, users, ...: a config mistake, named by its key
        raise ConfigError(str(exc).removeprefix("recommend: ")) from exc
    write_atomic(output, lambda tmp: write(recs, tmp))
    log.info("wrote %s", output)
    return recs


def _device(name: str) -> torch.device:
    """``auto`` = the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device: {name!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} but no GPU is available (use device=cpu or device=auto)")
    return device


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point: export (the data of the checkpoint's own run unless ``data=...``), say what went where."""
    with failed_run_cleanup():
        use_trained_data(cfg, HydraConfig.get().overrides.task)
        recs = predict(cfg)
    print(f"{recs.height:,} recommendations for {recs['user_id'].n_unique():,} users (k={cfg.k}) -> {cfg.output}")


def main() -> None:
    """Console script and ``python -m`` entry: user errors exit with one line naming the key."""
    run_entry_point(hydra_main)


if __name__ == "__main__":
    main()
