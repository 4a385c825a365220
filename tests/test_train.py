"""The real entry point, in a subprocess, for every model and every experiment file."""

import json
from pathlib import Path

import pytest

from recsys_attn.run.hardware import cpu_bf16_flags
from tests.conftest import CONF_DIR, run_cli
from tests.test_configs import compose_train

SMALL = ["trainer.accelerator=cpu", "data.batch_size=32", "data.eval_batch_size=64"]


def train_cli(tmp_path: Path, cache: Path, *overrides: str):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "recsys_attn.train", f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache}", *SMALL, *overrides, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


@pytest.mark.parametrize("model", ["sasrec", "bert4rec", "gru4rec", "popularity"])
def test_fast_dev_run_every_model(model: str, tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    run_dir, proc = train_cli(tmp_path, shared_cache, f"model={model}", "model.max_len=20", "trainer.fast_dev_run=true")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (
        "val/ndcg@10",
        "test/ndcg@10",
        "test/hr@10",
        "test/mrr",
        "time/fit_s",
        "time/epoch_s_median",
        "train/epochs",
    ):
        assert key in metrics, key
    assert 0.0 <= metrics["test/ndcg@10"] <= 1.0
    lines = proc.stdout.splitlines()  # the headline table: a column per split, a row per metric
    header = next(i for i, line in enumerate(lines) if "test (95% interval)" in line)
    rows = {line.split()[0]: line for line in lines[header + 1 :] if line.strip()}
    assert f"{metrics['test/ndcg@10']:.4f}" in rows["ndcg@10"], lines[header:]


def test_fast_dev_run_with_the_reference_positions_and_block(
    tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    run_dir, _ = train_cli(
        tmp_path,
        shared_cache,
        "model=sasrec",
        "model.max_len=20",
        "model.positions=from_start",
        "model.block_layout=sasrec_reference",
        "trainer.fast_dev_run=true",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/ndcg@10"] <= 1.0
    hparams = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "positions: from_start" in hparams and "block_layout: sasrec_reference" in hparams


def test_bf16_on_a_cpu_without_bf16_instructions_warns(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    """The warning follows what this machine's /proc/cpuinfo reports (machines differ): said iff it has no bf16."""
    _, proc = train_cli(
        tmp_path,
        shared_cache,
        "model=sasrec",
        "model.max_len=20",
        "trainer.fast_dev_run=true",
        "trainer.precision=bf16-mixed",
    )
    emulated = cpu_bf16_flags() == frozenset()
    assert ("without bf16 instructions" in proc.stdout + proc.stderr) is emulated


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
@pytest.mark.slow
def test_fast_dev_run_every_experiment(
    experiment: str, tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    log = compose_train(f"experiment={experiment}", tmp=tmp_path).data.source.path
    if not (real_data_dir / log).is_file():  # hstu_ml-1m's ratings.dat is downloaded on a user's machine
        pytest.skip(f"{experiment}: its log {log} is not in {real_data_dir}")
    run_dir, _ = train_cli(tmp_path, shared_cache, f"experiment={experiment}", "trainer.fast_dev_run=true")
    assert (run_dir / "metrics.json").is_file()


def test_short_run_writes_checkpoints_logs_and_metrics(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    run_dir, _ = train_cli(
        tmp_path,
        shared_cache,
        "model.max_len=10",
        "model.hidden_size=16",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "data.max_eval_users=100",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/epochs"] == 2.0 and metrics["test/users"] == 100.0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_a_diverging_run_stops_with_a_clear_error(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "recsys_attn.train",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={shared_cache}",
        *SMALL,
        "model.max_len=10",
        "model.hidden_size=16",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=5",
        "data.max_eval_users=100",
        "model.lr=1e30",  # finite, so it passes the settings check (inf is refused there) and diverges
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged") and "global step" in last and "model.lr=1e+30" in last
    assert not (run_dir / "metrics.json").exists()
    assert not list((run_dir / "checkpoints").glob("*.ckpt")) if (run_dir / "checkpoints").exists() else True
