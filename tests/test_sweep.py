"""Multirun summary: one row per job with its overrides and metrics, from files and through the real CLI."""

import json
import math
from pathlib import Path

import polars as pl
import pytest

from recsys_attn.tracking.sweep_summary import summarize_sweep, write_sweep_summary
from tests.conftest import run_cli


def fake_job(sweep: Path, name: str, overrides: list[str] | None, metrics: dict[str, float] | None) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    if overrides is not None:
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_summary_rows_in_job_order_with_overrides_and_the_union_of_metrics(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    for n in (10, 2, 0):  # created out of order; 10 must sort after 2
        fake_job(sweep, str(n), [f"model.hidden_size={n}", "seed=1"], {"val/ndcg@10": n / 100, "time/fit_s": 1.0})
    fake_job(sweep, "3", ["model.hidden_size=3"], {"val/ndcg@10": float("nan"), "test/ndcg@10": 0.5})
    fake_job(sweep, "4", ["model.hidden_size=oops"], None)  # a failed job keeps its row

    summary = summarize_sweep(sweep)
    assert summary.columns == ["job", "overrides", "test/ndcg@10", "time/fit_s", "val/ndcg@10"]
    assert summary["job"].to_list() == ["0", "2", "3", "4", "10"]
    assert summary["overrides"].to_list()[:2] == ["model.hidden_size=0 seed=1", "model.hidden_size=2 seed=1"]
    assert summary["overrides"][3] == "model.hidden_size=oops"
    row = summary.row(2, named=True)
    assert row["test/ndcg@10"] == 0.5 and math.isnan(row["val/ndcg@10"]) and row["time/fit_s"] is None
    assert summary.row(3, named=True)["val/ndcg@10"] is None
    assert summary["val/ndcg@10"][4] == pytest.approx(0.10)

    path = write_sweep_summary(sweep)
    assert path == sweep / "summary.csv"
    assert pl.read_csv(path).height == 5


def test_empty_or_missing_sweep_dir(tmp_path: Path) -> None:
    assert summarize_sweep(tmp_path).columns == ["job", "overrides"]
    with pytest.raises(FileNotFoundError, match="nope"):
        summarize_sweep(tmp_path / "nope")


def test_bad_metrics_file_names_the_file(tmp_path: Path) -> None:
    fake_job(tmp_path, "0", ["seed=1"], None)
    (tmp_path / "0" / "metrics.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"0/metrics.json"):
        summarize_sweep(tmp_path)


@pytest.mark.slow
def test_multirun_writes_one_summary_of_every_job(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "recsys_attn.train",
        "-m",
        f"hydra.sweep.dir={sweep}",
        f"paths.cache_dir={shared_cache}",
        "trainer.accelerator=cpu",
        "model.max_len=20",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "data.max_eval_users=50",
        "model.hidden_size=16,32",
        "model.num_blocks=1,2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    assert all((p / "metrics.json").is_file() for p in jobs)

    summary = pl.read_csv(sweep / "summary.csv")
    assert summary.height == 4 and summary["job"].to_list() == [0, 1, 2, 3]
    expected = [f"model.hidden_size={h} model.num_blocks={b}" for h in (16, 32) for b in (1, 2)]
    assert [" ".join(o.split()[-2:]) for o in summary["overrides"]] == expected  # after the shared overrides
    assert all(o.startswith(f"paths.cache_dir={shared_cache} ") for o in summary["overrides"])
    for job, row in zip(jobs, summary.iter_rows(named=True), strict=True):
        metrics = json.loads((job / "metrics.json").read_text())
        assert row["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"])
        assert row["test/users"] == 50.0
    assert str(sweep / "summary.csv") in proc.stdout + proc.stderr  # the logged path
