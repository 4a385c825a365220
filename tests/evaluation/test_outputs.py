"""``per_user.parquet`` and the new ``metrics.json`` entries, through the real ``train`` and ``evaluate`` CLIs."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch

from recsys_attn.errors import ConfigError, WriteError
from recsys_attn.evaluation.outputs import (
    KEY_COLUMNS,
    METRICS_FILE,
    PER_USER_FILE,
    slim_per_user,
    write_evaluation,
)
from recsys_attn.evaluation.runs import load_run
from tests.conftest import run_cli, toy_datamodule
from tests.tolerances import tol

TINY = (
    "data=ml-100k",
    "trainer.accelerator=cpu",
    "model.max_len=20",
    "model.hidden_size=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "data.max_eval_users=200",
)


def test_metrics_and_per_user_rows_appear_together_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at ``metrics.json`` leaves the earlier evaluation's pair whole, not new rows beside old metrics."""
    dm = toy_datamodule(tmp_path / "data", [f"{u} {i}" for u in range(1, 5) for i in range(1, 6)])
    rows = {"users": torch.tensor([1, 2, 3]), "targets": torch.tensor([1, 2, 3]), "history_len": torch.tensor([3] * 3)}
    run = tmp_path / "run"
    write_evaluation(
        run, {"test/mrr": 1.0}, {"test": {**rows, "ranks": torch.tensor([0, 0, 0])}}, ["test"], [1], dm.prepared
    )
    old_rows, old_metrics = (run / PER_USER_FILE).read_bytes(), (run / METRICS_FILE).read_text()
    write_text = Path.write_text

    def full_at_the_metrics(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.name.startswith(f".{METRICS_FILE}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_at_the_metrics)
    worse = {"test": {**rows, "ranks": torch.tensor([4, 4, 4])}}
    with pytest.raises(WriteError, match=rf"{METRICS_FILE}: cannot write \(No space left on device\)$"):
        write_evaluation(run, {"test/mrr": 0.2}, worse, ["test"], [1], dm.prepared)
    assert sorted(p.name for p in run.iterdir()) == [METRICS_FILE, PER_USER_FILE]
    assert (run / PER_USER_FILE).read_bytes() == old_rows and (run / METRICS_FILE).read_text() == old_metrics
    monkeypatch.setattr(Path, "write_text", write_text)
    write_evaluation(run, {"test/mrr": 0.2}, worse, ["test"], [1], dm.prepared)
    assert json.loads((run / METRICS_FILE).read_text()) == {"test/mrr": 0.2}
    assert pl.read_parquet(run / PER_USER_FILE)["rank"].to_list() == [4, 4, 4]


def check_per_user(run_dir: Path, split: str, metrics: dict[str, float]) -> pl.DataFrame:
    frame = pl.read_parquet(run_dir / PER_USER_FILE).filter(pl.col("split") == split)
    assert frame.height == metrics[f"{split}/users"] == frame["user_id"].n_unique()  # each user once
    metric_cols = [c for c in frame.columns if c not in KEY_COLUMNS]
    assert {"ndcg@10", "hr@10", "mrr"} <= set(metric_cols)
    for col in metric_cols:  # the mean of each column is the logged value: float64 means, logged as float32
        assert frame[col].mean() == pytest.approx(metrics[f"{split}/{col}"], rel=tol(torch.float32, 2)), col
    assert (frame["history_len"] >= 1).all() and (frame["rank"] >= 0).all()
    return frame


@pytest.mark.slow
def test_train_and_evaluate_write_per_user_rows(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "recsys_attn.train", f"hydra.run.dir={run_dir}", f"paths.cache_dir={shared_cache}", *TINY, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    frame = check_per_user(run_dir, "test", metrics)
    assert set(frame["split"]) == {"test"}
    # intervals bracket each accuracy metric; beyond-accuracy metrics and segments are there too
    for name in ("ndcg@10", "hr@1", "mrr"):
        assert metrics[f"test/{name}_lo"] <= metrics[f"test/{name}"] <= metrics[f"test/{name}_hi"]
    for k in (1, 5, 10, 20):
        assert 0.0 < metrics[f"test/coverage@{k}"] <= 1.0 and 0.0 <= metrics[f"test/gini@{k}"] < 1.0
        assert metrics[f"test/arp_ratio@{k}"] > 0.0 and metrics[f"test/novelty@{k}"] > 0.0
    sizes = [metrics[f"segments/test/history_{b}/users"] for b in ("short", "medium", "long")]
    assert sum(sizes) == 200 and min(sizes) > 50  # tertiles
    groups = [metrics[f"segments/test/target_{g}/users"] for g in ("head", "torso", "tail")]
    assert sum(groups) == 200
    assert "intra-list diversity is not computed" in (run_dir / "train.log").read_text()

    out_dir = tmp_path / "eval"
    proc = run_cli(
        "recsys_attn.evaluate",
        f"hydra.run.dir={out_dir}",
        f"paths.cache_dir={shared_cache}",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "data=ml-100k",
        "data.max_eval_users=200",
        "trainer.accelerator=cpu",
        "eval.bootstrap=0",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((out_dir / "metrics.json").read_text())
    check_per_user(out_dir, "val", evaluated)
    check_per_user(out_dir, "test", evaluated)
    assert not any(k.endswith(("_lo", "_hi")) for k in evaluated)  # eval.bootstrap=0 turns them off


def test_a_slim_copy_holds_ranks_only_and_reads_back_as_the_full_rows(tmp_path: Path) -> None:
    """A kept run (``make reproduce``) stores ``KEY_COLUMNS``; ``load_run`` derives every metric from the rank, bit
    for bit what the evaluation wrote, at the cut-offs its ``metrics.json`` names."""
    dm = toy_datamodule(tmp_path / "data", [f"{u} {i}" for u in range(1, 7) for i in range(1, 8)])
    ranks = torch.tensor([0, 3, 9, 19, 57, 1])  # at, inside and past each cut-off
    rows = {"users": torch.arange(1, 7), "targets": torch.arange(1, 7), "history_len": torch.tensor([4] * 6)}
    full, slim = tmp_path / "full", tmp_path / "slim"
    metrics = {"test/hr@5": 0.5, "test/hr@10": 0.6, "test/ndcg@10": 0.4, "test/mrr": 0.3}
    write_evaluation(full, metrics, {"test": {**rows, "ranks": ranks}}, ["test"], [5, 10], dm.prepared)
    slim.mkdir()
    slim_per_user(full / PER_USER_FILE, slim / PER_USER_FILE)
    (slim / METRICS_FILE).write_text((full / METRICS_FILE).read_text())
    assert tuple(pl.read_parquet(slim / PER_USER_FILE).columns) == KEY_COLUMNS
    got, want = load_run(slim, "test"), load_run(full, "test")
    assert got.per_user.equals(want.per_user)  # same columns, same order, same float64 values
    assert got.accuracy_metrics == ["hr@5", "ndcg@5", "hr@10", "ndcg@10", "mrr"]
    (slim / METRICS_FILE).write_text(json.dumps({"test/mrr": 0.3}))  # no cut-off to derive at
    with pytest.raises(ConfigError, match=r"holds ranks only, and neither .*model.eval_ks.* nor .*test/hr@K"):
        load_run(slim, "test")
    # the saved config's model.eval_ks: the cut-offs in the order the evaluation wrote them
    write_evaluation(full, metrics, {"test": {**rows, "ranks": ranks}}, ["test"], [10, 5], dm.prepared)
    slim_per_user(full / PER_USER_FILE, slim / PER_USER_FILE)
    (slim / ".hydra").mkdir()
    (slim / ".hydra" / "config.yaml").write_text("model:\n  eval_ks: [10, 5]\n")
    assert load_run(slim, "test").per_user.equals(load_run(full, "test").per_user)
