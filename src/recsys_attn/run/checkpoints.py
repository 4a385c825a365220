"""Loading what ``train`` wrote: a checkpoint's recommender, and the data set up the way it was trained."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.errors import DataError
from recsys_attn.data.identity import SHORT_HASH, DataIdentity
from recsys_attn.errors import ConfigError, TrainingError
from recsys_attn.models.base import RecModule
from recsys_attn.run.runner import read_checkpoint, resume_path

log = logging.getLogger(__name__)

NEW_RUN = "or train anew without ckpt_path"


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
    check_same_data(read_checkpoint(cfg.ckpt_path), cfg.ckpt_path, datamodule, "pass the data it was trained with")
    return model, datamodule


def check_same_data(ckpt: dict[str, Any], path: str | Path, datamodule: SeqDataModule, advice: str) -> None:
    """Refuse data whose item ids are not those the checkpoint was trained on (its ``DataIdentity``).

    Refused: another item id map (unless the prepared log is the very same, its ids only renamed through
    ``data.source.item_id_map``); and the same source, file and preparation with another log (a copy whose ids
    were permuted keeps the sorted map). Another file or preparation with the same item ids is the user's
    choice (a later log, fewer users): it is logged. A checkpoint written before checkpoints recorded their
    data is let through, with a warning.

    Raises:
        DataError: naming both sides and the checkpoint's data; ``advice`` says what to do.
    """
    saved = DataIdentity.from_dict(ckpt.get(RecModule.DATA_KEY))
    if saved is None:
        log.warning(
            "%s records no data identity (written before checkpoints did): the data cannot be verified beyond its "
            "item count; make sure %s is the data it was trained on",
            path,
            datamodule.source.name,
        )
        return
    now = datamodule.data_identity
    renamed = datamodule.source.item_id_map is not None and now.interactions == saved.interactions
    if now.item_map != saved.item_map and saved.interactions and renamed:
        log.info(  # data.source.item_id_map: the same log, its ids shown as the original ones
            "%s: the same log as the checkpoint's, with other names for its item ids (map %s, trained with %s)",
            now.source,
            now.short_map,
            saved.short_map,
        )
        return
    if now.item_map != saved.item_map:
        raise DataError(
            f"data: {now.source}'s item ids (map {now.short_map}) are not those the checkpoint {path} was trained "
            f"on ({saved.describe()}); {advice} (data=..., data.source.path=..., data.preparation.*=...)"
        )
    if not saved.interactions or now.interactions == saved.interactions:
        return
    if now.same_source(saved):
        raise DataError(
            f"data: {now.source}'s log {now.file} (log {now.interactions[:SHORT_HASH]}) is not the one the checkpoint "
            f"{path} was trained on (log {saved.interactions[:SHORT_HASH]}), with the same file name, preparation "
            f"and item ids, so its item ids may mean other items; {advice} (data.source.path=, paths.data_dir=)"
        )
    log.warning(
        "%s was trained on other data (%s) than %s: the same item ids, taken to mean the same items",
        path,
        saved.describe(),
        now.describe(),
    )


def check_resume(cfg: DictConfig, model: RecModule, datamodule: SeqDataModule) -> None:
    """Before ``train`` resumes (``ckpt_path``): refuse, in one line, a checkpoint the new model cannot continue.

    Refused: another model class, weights of other names or shapes, a changed ``SAME_SHAPE_ARCHITECTURE``
    setting, and data whose item ids are not the checkpoint's. Other changed settings (``lr``, ``dropout``,
    ...) are allowed and logged.
    """
    path = resume_path(cfg)
    if path is None:
        return
    ckpt = read_checkpoint(path)
    check_same_data(ckpt, path, datamodule, f"resume on the data it was trained with, {NEW_RUN}")
    saved_class, now_class = ckpt.get(RecModule.CLASS_KEY), f"{type(model).__module__}.{type(model).__qualname__}"
    if saved_class is not None and saved_class != now_class:
        raise ConfigError(
            f"ckpt_path: {path} holds a {saved_class.rsplit('.', 1)[-1]} and this run builds a {type(model).__name__}; "
            f"resume with the model it was trained with (model=...), {NEW_RUN}"
        )
    changed = changed_settings(model, dict(ckpt.get("hyper_parameters") or {}))
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    saved_shapes = {name: tuple(t.shape) for name, t in ckpt["state_dict"].items()}
    other_shapes = shapes != saved_shapes  # every changed setting may explain it: all are named
    refused = list(changed) if other_shapes else [k for k in changed if k in model.SAME_SHAPE_ARCHITECTURE]
    if other_shapes or refused:
        what = "; ".join(_change(k, changed[k]) for k in refused) or _shape_change(saved_shapes, shapes)
        raise ConfigError(
            f"ckpt_path: {path} cannot be resumed by this model, whose architecture differs: {what}; resume with the "
            f"checkpoint's settings, {NEW_RUN}"
        )
    if changed:
        log.warning("resuming %s with changed settings: %s", path, "; ".join(_change(k, v) for k, v in changed.items()))


def changed_settings(model: RecModule, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The constructor settings (and ``n_items``) whose checkpoint value differs from ``model``'s: ``(saved, now)``.

    Both sides are compared with the defaults of the model's settings filled in (``hyper_parameters`` holds only
    the values that were given).
    """
    defaults = {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in dataclasses.fields(model.settings_class)
    }
    now = dict(model.hparams)
    keys = sorted(set(saved) | set(now))
    both = {k: (saved.get(k, defaults.get(k)), now.get(k, defaults.get(k))) for k in keys}
    return {k: v for k, v in both.items() if v[0] != v[1]}


def _change(key: str, values: tuple[Any, Any]) -> str:
    name = "n_items (the data's item count)" if key == "n_items" else f"model.{key}"
    return f"{name}: {values[0]} in the checkpoint, {values[1]} now"


def _shape_change(saved: dict[str, tuple[int, ...]], now: dict[str, tuple[int, ...]]) -> str:
    """The first weight whose shape (or presence) differs, when no setting explains it."""
    name = next(k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k))
    before, after = (list(shapes[name]) if name in shapes else "absent" for shapes in (saved, now))
    return f"{name}: {before} in the checkpoint, {after} now"
