"""Export a portable scorer: ``python -m recsys_attn.export ckpt_path=<file> [format=onnx|torch] [k=10]``."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recsys_attn.errors import ConfigError
from recsys_attn.run.checkpoints import checkpoint_and_data
from recsys_attn.run.run_dir import failed_run_cleanup, use_trained_data
from recsys_attn.run.runner import check_setting, output_dir, start_run
from recsys_attn.serving.scorer import SUFFIXES, Exported, export_scorer

log = logging.getLogger(__name__)


def export(cfg: DictConfig) -> Exported:
    """Write the scorer of ``cfg.ckpt_path`` in ``cfg.format`` to ``cfg.output`` (and its sidecar); their paths."""
    if cfg.format not in SUFFIXES:
        raise ConfigError(f"format: {cfg.format!r} is not one of {', '.join(SUFFIXES)}")
    check_setting(cfg, "k", int, minimum=1)
    check_setting(cfg, "opset", int, minimum=18)  # the torch.export-based exporter's first opset
    check_setting(cfg, "output", str | None)
    output = Path(cfg.output) if cfg.output else output_dir(cfg) / f"scorer{SUFFIXES[cfg.format]}"
    if output.suffix != SUFFIXES[cfg.format]:
        raise ConfigError(f"output: {output} must end in {SUFFIXES[cfg.format]} for format={cfg.format}")
    start_run(cfg, ckpt_required=True)
    model, datamodule = checkpoint_and_data(cfg)
    if datamodule.prepared is None:
        raise RuntimeError("export: the datamodule was not set up")
    return export_scorer(model, datamodule.prepared.items, output, cfg.format, cfg.k, cfg.opset)


def run(cfg: DictConfig) -> None:
    """Under Hydra: export (the data of the checkpoint's own run unless ``data=...``), say what went where."""
    with failed_run_cleanup():
        use_trained_data(cfg, HydraConfig.get().overrides.task)
        written = export(cfg)
    print(f"scorer ({cfg.format}, k={cfg.k}) -> {written.model}\nitem ids, max_len, padding -> {written.sidecar}")
