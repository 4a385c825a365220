"""Serve recommendations: ``python -m recsys_attn.predict ckpt_path=<file> [k=100] [histories=<file>] [policy=...]``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from recsys_attn.errors import ConfigError
from recsys_attn.run.checkpoints import checkpoint_and_data
from recsys_attn.run.run_dir import failed_run_cleanup, use_trained_data
from recsys_attn.run.runner import check_setting, device_of, start_run
from recsys_attn.serving.histories import history_file, read_histories
from recsys_attn.serving.policies import make_policy
from recsys_attn.serving.recommend import (
    HISTORIES,
    ServeInput,
    ServeSummary,
    known_users,
    new_users,
    output_schema,
    serve,
)
from recsys_attn.serving.stream import WRITERS, write_stream

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> ServeSummary:
    """The ``cfg.k`` items ``cfg.policy`` draws for each user, streamed to ``cfg.output``; what was served."""
    output = Path(cfg.output)
    if output.suffix.lower() not in WRITERS:
        raise ConfigError(f"output: {output} must end in one of {', '.join(WRITERS)}")
    if cfg.history not in HISTORIES:
        raise ConfigError(f"history: {cfg.history!r} is not one of {', '.join(HISTORIES)}")
    check_setting(cfg, "k", int, minimum=1)
    check_setting(cfg, "batch_size", int, minimum=1)
    check_setting(cfg, "max_users", int | None, minimum=1)
    histories = _histories(cfg)
    check_setting(cfg, "temperature", float | None)
    check_setting(cfg, "epsilon", float | None)
    policy = make_policy(cfg.policy, cfg.temperature, cfg.epsilon)
    start_run(cfg, ckpt_required=True)
    model, datamodule = checkpoint_and_data(cfg)
    model.to(device_of(cfg.device))
    prepared = datamodule.prepared
    assert prepared is not None  # checkpoint_and_data sets the data up
    inputs: Iterator[ServeInput]
    if histories is None:
        users = OmegaConf.to_container(cfg.users) if cfg.users is not None else None
        try:
            inputs = known_users(datamodule, model.sample_spec, cfg.history, users, cfg.max_users, cfg.batch_size)  # type: ignore[arg-type]
        except ValueError as exc:  # an unknown user id: a config mistake, named by its key
            raise ConfigError(str(exc).removeprefix("recommend: ")) from exc
    else:
        blocks = read_histories(histories, prepared.users, prepared.items, cfg.batch_size, cfg.max_users)
        inputs = new_users(blocks, model.sample_spec, model.n_items, cfg.batch_size)
    summary = ServeSummary()
    frames = serve(model, inputs, prepared.items["item_id"], cfg.k, policy, cfg.seed, summary)
    metadata = {
        "policy": policy.name,
        "policy_params": json.dumps(policy.params(), sort_keys=True),
        "seed": str(cfg.seed),
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "k": str(cfg.k),
        "users": f"histories={histories.resolve()}" if histories is not None else f"history={cfg.history}",
        "filter_seen": str(model.settings.filter_seen).lower(),
    }
    start = time.perf_counter()
    write_stream(output, frames, output_schema(prepared), metadata)
    seconds = time.perf_counter() - start
    log.info("served %d users in %.2f s (%.0f users/s) -> %s", summary.users, seconds, summary.users / seconds, output)
    return summary


def _histories(cfg: DictConfig) -> Path | None:
    """The history file of ``cfg.histories`` (a readable file of a known format), or None."""
    check_setting(cfg, "histories", str | None)
    if cfg.histories is None:
        return None
    path = history_file(cfg.histories)
    if cfg.users is not None:
        raise ConfigError("users: picks users of the data; with histories=... the file says whose histories to serve")
    return path


def run(cfg: DictConfig) -> None:
    """Under Hydra: serve (the data of the checkpoint's own run unless ``data=...``), say what went where."""
    with failed_run_cleanup():
        use_trained_data(cfg, HydraConfig.get().overrides.task)
        s = predict(cfg)
    print(f"{s.rows:,} recommendations for {s.users:,} users (k={cfg.k}, policy={cfg.policy}) -> {cfg.output}")
    if cfg.histories is not None:
        print(
            f"history items unknown to the model: {s.unknown_items:,} dropped ({s.users_with_unknown:,} users); "
            f"{s.fallback_users:,} users with no known item got the popularity ranking (fallback=true)"
        )
