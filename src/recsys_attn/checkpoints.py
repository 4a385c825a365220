"""Loading what ``train`` wrote: a checkpoint's recommender, and the data set up the way it was trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from recsys_attn.config import ConfigError
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.errors import TrainingError
from recsys_attn.models.base import RecModule
from recsys_attn.runner import read_checkpoint


def load_module(ckpt_path: str | Path, **overrides: Any) -> RecModule:
    """Rebuild the recommender saved in ``ckpt_path`` (its class is recorded in the checkpoint)."""
    path = Path(ckpt_path)
    ckpt = read_checkpoint(path)
    target = ckpt.get(RecModule.CLASS_KEY)
    if target is None:
        raise ConfigError(f"ckpt_path: {path} was not written by recsys_attn (no {RecModule.CLASS_KEY!r} entry)")
    cls: type[RecModule] = hydra.utils.get_class(target)
    module = cls.load_from_checkpoint(path, map_location="cpu", **overrides)
    bad = [name for name, t in module.state_dict().items() if t.is_floating_point() and not bool(t.isfinite().all())]
    if bad:
        raise TrainingError(
            f"ckpt_path: {path} holds non-finite weights ({len(bad)} tensors, e.g. {bad[0]}): the training diverged; "
            "retrain with a lower model.lr"
        )
    return module


def checkpoint_and_data(cfg: DictConfig) -> tuple[RecModule, SeqDataModule]:
    """The model of ``cfg.ckpt_path`` (with ``cfg.eval`` overrides) and ``cfg.data`` set up as it was trained."""
    eval_cfg: dict[str, Any] = OmegaConf.to_container(cfg.eval)  # type: ignore[assignment]
    overrides = {k: v for k, v in eval_cfg.items() if v is not None}
    model = load_module(cfg.ckpt_path, **overrides)
    datamodule: SeqDataModule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("test")
    datamodule.connect(model.sample_spec)  # the data must be cut and sampled the way the model was trained
    if datamodule.n_items != model.n_items:
        raise ConfigError(
            f"data: {cfg.data.source.name} has {datamodule.n_items} items but the checkpoint was trained on "
            f"{model.n_items}; pass the data config it was trained with (data=...)"
        )
    return model, datamodule
