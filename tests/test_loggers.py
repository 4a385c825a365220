"""Loggers: W&B's offline fallback end to end (metrics, config, tables, artifacts), TensorBoard, config keys."""

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightning.pytorch.loggers import WandbLogger

from recsys_attn.errors import ConfigError
from recsys_attn.tracking.csv_log import ResumableCSVLogger
from recsys_attn.tracking.loggers import build_loggers, finish_wandb, report_callbacks, wandb_run_options
from recsys_attn.tracking.wandb_report import WandbReport
from tests.conftest import run_cli
from tests.test_configs import compose_train

TINY = [
    "trainer.accelerator=cpu",
    "model.max_len=20",
    "model.hidden_size=16",
    "model.num_blocks=1",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "data.max_eval_users=50",
]


def run_train(tmp_path: Path, cache: Path, env: dict[str, str], *overrides: str) -> Path:
    """``python -m recsys_attn.train`` with tiny settings in ``tmp_path/run``; returns the run directory."""
    run_dir = tmp_path / "run"
    args = [f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache}", *TINY, *overrides]
    proc = run_cli("recsys_attn.train", *args, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def train_without_wandb_login(tmp_path: Path, cache: Path, *overrides: str) -> Path:
    """Train as a user without W&B credentials: no key, no netrc, no WANDB_MODE."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    run_dir = run_train(tmp_path, cache, env, *overrides)
    assert "logging offline" in (run_dir / "train.log").read_text()  # the fallback warning
    return run_dir


def wandb_records(path: Path) -> Iterator[object]:
    """Decode the protobuf records of a ``.wandb`` file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk of a record
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def read_offline_run(run_dir: Path) -> dict[str, object]:
    """History values, config keys, artifact types and record kinds of the single offline run in ``run_dir``."""
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    (log_file,) = runs[0].glob("*.wandb")
    history: dict[str, str] = {}
    config_keys: set[str] = set()
    artifacts: list[str] = []
    kinds: set[str] = set()
    for record in wandb_records(log_file):
        kind = record.WhichOneof("record_type")  # type: ignore[attr-defined]
        kinds.add(kind)
        if kind == "history":
            for item in record.history.item:  # type: ignore[attr-defined]
                history["/".join(item.nested_key) if item.nested_key else item.key] = item.value_json
        elif kind == "config":
            config_keys |= {item.key for item in record.config.update}  # type: ignore[attr-defined]
        elif kind == "artifact":
            artifacts.append(record.artifact.type)  # type: ignore[attr-defined]
    return {"dir": runs[0], "history": history, "config": config_keys, "artifacts": artifacts, "kinds": kinds}


def check_offline_run(run_dir: Path) -> dict[str, object]:
    run = read_offline_run(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = run["history"]
    assert isinstance(history, dict)
    assert json.loads(history["test/ndcg@10"]) == pytest.approx(metrics["test/ndcg@10"])
    assert "exit" in run["kinds"]  # the run was finished: the directory is complete and syncable
    assert f"upload it with `wandb sync {run['dir']}`" in (run_dir / "train.log").read_text()  # finished by us
    assert {"model", "data", "trainer", "seed"} <= run["config"]  # type: ignore[operator]
    # the sample-recommendations table: 20 users x top-20 (the largest eval cut-off), original ids
    assert "recommendations/sample/path" in history
    (table_file,) = (run["dir"] / "files").glob("media/table/recommendations/sample*.table.json")  # type: ignore[operator]
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["user_id", "rank", "item_id", "score"]
    users = [row[0] for row in table["data"]]
    assert len(set(users)) == 20 and len(users) == 20 * 20
    assert [row[1] for row in table["data"][:20]] == list(range(20))
    return run


@pytest.mark.slow
def test_wandb_without_login_logs_offline_and_finishes(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    run_dir = train_without_wandb_login(tmp_path, shared_cache, "logger=wandb")
    run = check_offline_run(run_dir)
    assert run["artifacts"] == ["run_table", "run_table"]  # sample and per-user tables; no model by default
    assert not (run_dir / "csv").exists()


@pytest.mark.slow
def test_csv_and_wandb_together_with_the_best_checkpoint(
    tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    run_dir = train_without_wandb_login(
        tmp_path, shared_cache, "logger=[csv,wandb]", "logger.wandb.log_best_checkpoint=true"
    )
    run = check_offline_run(run_dir)
    assert "model" in run["artifacts"]  # type: ignore[operator]
    assert "test/ndcg@10" in (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]


@pytest.mark.slow
def test_tensorboard_writes_events_in_the_run_dir(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = run_train(tmp_path, shared_cache, dict(os.environ, PYTHONWARNINGS="ignore"), "logger=tensorboard")
    events = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events, list(run_dir.rglob("*"))
    tags: set[str] = set()
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"val/ndcg@10", "test/ndcg@10"} <= tags


# -- in process: config keys ------------------------------------------------------------------


def test_finish_run_keys_are_not_passed_to_the_wandb_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: the offline fallback applies
    cfg = compose_train("logger=[csv,wandb]", "logger.wandb.sample_users=5", tmp=tmp_path)
    loggers = build_loggers(cfg)
    assert [type(lg) for lg in loggers] == [ResumableCSVLogger, WandbLogger]
    init_kwargs = loggers[1]._wandb_init  # what wandb.init() will receive
    assert "sample_users" not in init_kwargs and "log_best_checkpoint" not in init_kwargs
    assert loggers[1]._offline and init_kwargs["dir"] == str(tmp_path)
    assert wandb_run_options(cfg) == {"sample_users": 5, "log_best_checkpoint": False}


def test_wandb_run_options_defaults_and_errors(tmp_path: Path) -> None:
    assert wandb_run_options(compose_train("logger=csv", tmp=tmp_path)) == {
        "sample_users": 20,
        "log_best_checkpoint": False,
    }
    with pytest.raises(ConfigError, match=r"logger\.wandb\.sample_users"):
        wandb_run_options(compose_train("logger=wandb", "logger.wandb.sample_users=-1", tmp=tmp_path))
    with pytest.raises(ConfigError, match=r"logger\.wandb\.log_best_checkpoint"):
        wandb_run_options(compose_train("logger=wandb", "logger.wandb.log_best_checkpoint=maybe", tmp=tmp_path))


def test_without_wandb_there_is_no_report_and_nothing_to_finish(tmp_path: Path) -> None:
    cfg = compose_train("logger=csv", tmp=tmp_path)
    loggers = build_loggers(cfg)
    assert report_callbacks(cfg) == []
    finish_wandb(loggers)  # no W&B: nothing to touch
    assert [type(lg) for lg in loggers] == [ResumableCSVLogger]
    (report,) = report_callbacks(compose_train("logger=[csv,wandb]", "logger.wandb.sample_users=3", tmp=tmp_path))
    assert isinstance(report, WandbReport) and report.sample_users == 3 and not report.log_best_checkpoint


def test_wandb_report_callback_logs_tables_histogram_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, on the toy data, through ``Trainer.test``: exact table rows, per-user rows, the artifact."""
    import lightning as L

    from tests.test_recommend import make_dm, popularity

    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    dm = make_dm(tmp_path)
    model = popularity(dm, eval_ks=[2])
    quiet = {"accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False}
    first = L.Trainer(logger=False, **quiet)  # type: ignore[arg-type]
    first.test(model, datamodule=dm, verbose=False)
    ckpt = tmp_path / "best.ckpt"
    first.save_checkpoint(ckpt)
    run_dir = tmp_path / "out"
    cfg = compose_train(
        "logger=wandb", "logger.wandb.sample_users=2", "logger.wandb.log_best_checkpoint=true", tmp=run_dir
    )
    (lg,) = build_loggers(cfg)
    trainer = L.Trainer(logger=lg, callbacks=report_callbacks(cfg), **quiet)  # type: ignore[arg-type]
    try:
        trainer.test(model, datamodule=dm, ckpt_path=str(ckpt), verbose=False)
        finish_wandb([lg])
    finally:
        import wandb

        still_running = wandb.run is not None
        wandb.finish()
    assert not still_running
    run = read_offline_run(run_dir)
    assert "exit" in run["kinds"] and run["artifacts"] == ["run_table", "run_table", "model"]
    files = run["dir"] / "files"  # type: ignore[operator]
    (table_file,) = files.glob("media/table/recommendations/sample*.table.json")
    # the first 2 test users (30 and 40), top-2 by popularity, history filtered (see tests/test_recommend.py)
    assert json.loads(table_file.read_text())["data"] == [
        [30, 0, 800, 5.0],
        [30, 1, 700, 4.0],
        [40, 0, 900, 6.0],
        [40, 1, 800, 5.0],
    ]
    (per_user_file,) = files.glob("media/table/per_user/test*.table.json")
    per_user = json.loads(per_user_file.read_text())
    assert per_user["columns"][:5] == ["split", "user_id", "history_len", "target_id", "rank"]
    assert [row[1] for row in per_user["data"]] == [30, 40, 50]  # every test user, original ids
    history = run["history"]
    assert isinstance(history, dict) and json.loads(history["per_user/test/nrows"]) == 3
    assert json.loads(history["per_user/test/rank/_type"]) == "histogram"
    assert sum(json.loads(history["per_user/test/rank/values"])) == 3  # every user's target rank
