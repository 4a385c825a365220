"""Experiment operations through the real CLIs: DDP evaluation, resume, reproducibility, bf16."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

from tests.conftest import TINY_RUN, run_cli
from tests.conftest import train_cli as train
from tests.tolerances import tol


def scores(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path, shared_cache: Path) -> dict[str, float]:
    return train(tmp_path_factory.mktemp("full"), shared_cache, "run", "trainer.max_epochs=2")


@pytest.mark.slow
def test_same_seed_same_metrics(two_epochs: dict[str, float], tmp_path: Path, shared_cache: Path) -> None:
    again = train(tmp_path, shared_cache, "again", "trainer.max_epochs=2")
    assert scores(again) == scores(two_epochs)
    other = train(tmp_path, shared_cache, "other", "trainer.max_epochs=2", "seed=7")
    assert scores(other) != scores(two_epochs)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(
    two_epochs: dict[str, float], tmp_path: Path, shared_cache: Path
) -> None:
    train(tmp_path, shared_cache, "first", "trainer.max_epochs=1")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    resumed = train(tmp_path, shared_cache, "resumed", "trainer.max_epochs=2", f"ckpt_path={last}")
    assert resumed["train/epochs"] == 2.0
    assert scores(resumed) == scores(two_epochs)


@pytest.mark.slow
def test_last_ckpt_is_the_last_epoch_and_resumes_without_repeating(
    tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    import torch

    # Monitoring "epoch" in min mode: epoch 0 stays the best, so no later epoch is a new best.
    never_best = ("callbacks.model_checkpoint.monitor=epoch", "callbacks.model_checkpoint.mode=min")
    train(tmp_path, shared_cache, "whole", "trainer.max_epochs=3", *never_best)
    train(tmp_path, shared_cache, "cut", "trainer.max_epochs=2", *never_best)
    cut_last = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=False)
    assert cut_last["epoch"] == 1  # the state after the last epoch run, not after the best (epoch 0)
    resumed = train(
        tmp_path,
        shared_cache,
        "resumed",
        "trainer.max_epochs=3",
        f"ckpt_path={tmp_path / 'cut' / 'checkpoints' / 'last.ckpt'}",
        *never_best,
    )
    assert resumed["train/epochs"] == 3.0
    whole_last = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)
    resumed_last = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed_last["global_step"] == whole_last["global_step"]  # one more epoch, nothing repeated
    for name, value in whole_last["state_dict"].items():
        assert torch.equal(resumed_last["state_dict"][name], value), name
    # Every epoch's training time is reported once, over the resumed run too (3 epochs, not 2 or 4).
    timer = next(v for k, v in resumed_last["callbacks"].items() if "EpochTimer" in k)
    assert len(timer["durations"]) == 3 and len(timer["val_durations"]) == 3


def evaluate(tmp: Path, ckpt: Path, cache: Path, name: str, *overrides: str) -> subprocess.CompletedProcess[str]:
    """``python -m recsys_attn.evaluate`` of ``ckpt`` on the CPU into ``tmp/name``; must succeed."""
    proc = run_cli(
        "recsys_attn.evaluate",
        f"ckpt_path={ckpt}",
        f"paths.cache_dir={cache}",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={tmp / name}",
        *overrides,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_two_nodes_launched_by_torchrun_give_the_single_process_metrics(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path
) -> None:
    """Two "machines" on this one (gloo on the CPU), launched as a cluster user does: one ``torchrun`` per node
    with a rendezvous on 127.0.0.1, ``trainer.num_nodes=2``; the val and test metrics are the one process's."""
    evaluate(tmp_path, tiny_checkpoint, shared_cache, "one", "data.max_eval_users=301")
    port = free_port()
    nodes = [
        subprocess.Popen(
            [
                str(Path(sys.executable).with_name("torchrun")),
                "--nnodes=2",
                "--nproc_per_node=1",
                f"--node_rank={rank}",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                "-m",
                "recsys_attn.evaluate",
                f"ckpt_path={tiny_checkpoint}",
                f"paths.cache_dir={shared_cache}",
                "trainer.accelerator=cpu",
                "trainer.strategy=ddp",
                "trainer.num_nodes=2",
                "trainer.devices=1",
                "data.max_eval_users=301",
                f"hydra.run.dir={tmp_path / 'two'}",
            ],
            cwd=tmp_path,
            env=dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "MEMBER: 1/2" in outputs[0] and "MEMBER: 2/2" in outputs[1]  # one process on each node
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["test/users"] == 301.0 and any(k.startswith("val/") for k in two)
    assert one == pytest.approx(two, rel=tol(torch.float32, 2), abs=tol(torch.float32, 2))


@pytest.mark.slow
def test_ddp_two_processes_give_the_same_test_metrics(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path
) -> None:
    evaluate(tmp_path, tiny_checkpoint, shared_cache, "one", "data.max_eval_users=301")
    two = evaluate(
        tmp_path, tiny_checkpoint, shared_cache, "two", "data.max_eval_users=301", "trainer=ddp", "trainer.devices=2"
    )
    assert "MEMBER: 2/2" in two.stderr + two.stdout  # really two processes
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m1["test/users"] == m2["test/users"] == 301.0  # odd count: no user dropped or repeated
    # intervals, beyond-accuracy metrics and segments included: float64 sums (in another order) handed over as
    # float32, a rounding or two of float32; counts exact
    assert m1 == pytest.approx(m2, rel=tol(torch.float32, 2), abs=tol(torch.float32, 2))
    # per_user.parquet: every user exactly once per split under DDP, with the single process's values
    rows = [pl.read_parquet(tmp_path / run / "per_user.parquet").sort("split", "user_id") for run in ("one", "two")]
    assert (
        rows[1]
        .group_by("split")
        .agg(pl.col("user_id").n_unique(), pl.len())
        .filter((pl.col("user_id") != 301) | (pl.col("len") != 301))
        .is_empty()
    )
    assert rows[1].height == 2 * 301 and rows[0].equals(rows[1])  # val and test
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # one run dir per run


@pytest.mark.slow
def test_evaluate_with_other_protocol_options(tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path) -> None:
    evaluate(
        tmp_path,
        tiny_checkpoint,
        shared_cache,
        "ev",
        "data.max_eval_users=100",
        "eval.sampled_eval=uniform",
        "splits=[test]",
    )
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "test/ndcg@10_s100" in metrics and "test/ndcg@10" in metrics and "val/ndcg@10" not in metrics
    assert metrics["test/ndcg@10_s100"] >= metrics["test/ndcg@10"]  # 100 candidates are easier than all


@pytest.mark.slow
def test_bf16_mixed_runs_on_cpu(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    metrics = train(tmp_path, shared_cache, "bf16", "trainer.max_epochs=1", "trainer.precision=bf16-mixed")
    assert 0.0 <= metrics["test/ndcg@10"] <= 1.0


@pytest.mark.slow
def test_bf16_mixed_evaluation_scores_like_fp32(tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path) -> None:
    """The same weights under both precisions: bf16 states move each score by ~eps(bf16) = 8e-3 of its size, so a
    target next to another item's score may swap with it, either way, by a CPU's own rounding (emulated bf16 or
    AVX-512 BF16/AMX instructions); bf16 *scores* would tie items with the target, counted against it: ranks
    would only worsen. Both checks are statistical, at 4 standard deviations, not tied to one machine."""
    rows = {}
    for precision in ("32-true", "bf16-mixed"):
        evaluate(tmp_path, tiny_checkpoint, shared_cache, precision, f"trainer.precision={precision}", "splits=[test]")
        per_user = pl.read_parquet(tmp_path / precision / "per_user.parquet")
        rows[precision] = per_user.filter(pl.col("split") == "test").sort("user_id")
    fp32, bf16 = rows["32-true"], rows["bf16-mixed"]
    assert fp32["user_id"].equals(bf16["user_id"])
    change = (bf16["rank"] - fp32["rank"]).to_numpy()  # [U]
    worse, better = int((change > 0).sum()), int((change < 0).sum())
    # a sign test: under symmetric rounding noise worse - better has mean 0 and standard deviation sqrt(n)
    assert abs(worse - better) <= 4 * math.sqrt(worse + better), (worse, better)
    for name in ("ndcg@10", "mrr"):  # the metrics move by noise only: within 4 standard errors of the mean change
        diff = (bf16[name] - fp32[name]).to_numpy()  # [U] float64 per-user values
        assert abs(diff.mean()) <= 4 * diff.std() / math.sqrt(len(diff)), (name, diff.mean(), diff.std())


@pytest.mark.slow
def test_evaluate_rejects_a_missing_checkpoint(tmp_path: Path) -> None:
    proc = run_cli("recsys_attn.evaluate", f"ckpt_path={tmp_path / 'nope.ckpt'}", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "ckpt_path: no checkpoint at" in proc.stderr


@pytest.mark.slow
def test_optuna_search_runs_trials_and_summarises(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "recsys_attn.train",
        "-m",
        "hparams_search=sasrec_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        f"hydra.sweep.dir={sweep}",
        f"paths.cache_dir={shared_cache}",
        "logger=none",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "data.max_eval_users=100",
        *[o for o in TINY_RUN if not o.startswith(("model.hidden_size", "trainer.limit_train", "data.max_eval"))],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Best value" in proc.stdout + proc.stderr
    assert (sweep / "optimization_results.yaml").is_file()
    assert len((sweep / "summary.csv").read_text().strip().splitlines()) == 3  # header + 2 trials


@pytest.mark.slow
def test_ddp_training_writes_one_run_directory(tmp_path: Path, real_data_dir: Path, shared_cache: Path) -> None:
    metrics = train(tmp_path, shared_cache, "ddp", "trainer=ddp", "trainer.devices=2", "trainer.max_epochs=1")
    assert metrics["test/users"] == 300.0  # every user once, not once per process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    assert (tmp_path / "ddp" / "checkpoints" / "last.ckpt").is_file()


def test_slurm_launcher_config_composes() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.conftest import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "hydra/launcher=submitit_slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.gpus_per_node=4",
            ],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 4
