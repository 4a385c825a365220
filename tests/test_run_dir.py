"""The run directory: evaluate and predict take a checkpoint's data from its run; a failed run leaves no empty one."""

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from recsys_attn.run import entry as _entry  # noqa: F401  (registers resolvers)
from recsys_attn.run.hardware import cpu_bf16_flags
from recsys_attn.run.run_dir import failed_run_cleanup, hydra_files_only, run_config_of, use_trained_data
from tests.conftest import CONF_DIR, run_cli


def composed(name: str, *overrides: str, hydra_config: bool = False) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=hydra_config)


def trained_run(tmp_path: Path, *overrides: str) -> Path:
    """A run directory as train leaves it: ``.hydra/config.yaml`` and ``checkpoints/`` (the file need not exist)."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    OmegaConf.save(composed("train", *overrides), run / ".hydra" / "config.yaml")
    return run


# --- evaluate and predict read the data of the checkpoint's run ------------------------------------


def test_the_data_of_the_run_replace_the_default(tmp_path: Path) -> None:
    run = trained_run(tmp_path, "data=ml-100k", "data.max_eval_users=7", "data.preparation.min_user_interactions=3")
    ckpt = f"ckpt_path={run}/checkpoints/epoch_001.ckpt"
    assert run_config_of(run / "checkpoints" / "epoch_001.ckpt") is not None
    cfg = composed("evaluate", ckpt)
    use_trained_data(cfg, [ckpt])
    assert cfg.data.source.name == "ml-100k" and cfg.data.preparation.min_user_interactions == 3
    assert cfg.data.max_eval_users is None  # loader settings are the evaluating command's own


def test_data_given_on_the_command_line_wins(tmp_path: Path) -> None:
    run = trained_run(tmp_path, "data=ml-100k")
    ckpt = f"ckpt_path={run}/checkpoints/epoch_001.ckpt"
    chosen = composed("evaluate", ckpt, "data=beauty")
    use_trained_data(chosen, [ckpt, "data=beauty"])
    assert chosen.data.source.name == "beauty"
    key = "data.source.user_id_map=ml-100k/users.txt"
    keyed = composed("predict", ckpt, key)
    use_trained_data(keyed, [ckpt, key])
    assert keyed.data.source.name == "ml-100k" and keyed.data.source.user_id_map == "ml-100k/users.txt"


def test_a_checkpoint_without_a_run_config_keeps_the_configured_data(tmp_path: Path) -> None:
    ckpt = f"ckpt_path={tmp_path}/lonely.ckpt"
    cfg = composed("evaluate", ckpt)
    use_trained_data(cfg, [ckpt])
    assert cfg.data.source.name == "ml-1m"
    missing = composed("evaluate")  # ckpt_path ??? is start_run's to report
    use_trained_data(missing, [])
    assert missing.data.source.name == "ml-1m"


def test_evaluate_and_predict_need_no_data_override(
    tmp_path: Path, ml100k_run: tuple[Path, subprocess.CompletedProcess[str]], shared_cache: Path
) -> None:
    run, _ = ml100k_run
    ckpt = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    common = [ckpt, f"paths.cache_dir={shared_cache}", "trainer.accelerator=cpu"]
    bf16 = "trainer.precision=bf16-mixed"  # also: evaluate warns where this CPU would emulate bf16
    proc = run_cli("recsys_attn.evaluate", *common, bf16, f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["test/users"] == 943.0  # every ml-100k user: the run's data, this command's loader settings
    assert ("without bf16 instructions" in proc.stdout + proc.stderr) is (cpu_bf16_flags() == frozenset())
    assert f"metrics -> {tmp_path / 'eval' / 'metrics.json'}" in proc.stdout
    assert f"data: ml-100k, as trained in {run}" in proc.stdout

    proc = run_cli("recsys_attn.predict", ckpt, f"paths.cache_dir={shared_cache}", "device=cpu", "k=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (written,) = (tmp_path / "logs" / "predict" / "runs").glob("*/recommendations.parquet")  # predict's own run
    assert pl.read_parquet(written).height == 3 * 943 and str(written) in proc.stdout


@pytest.mark.slow
def test_an_explicit_data_override_is_kept(
    tmp_path: Path, ml100k_run: tuple[Path, subprocess.CompletedProcess[str]], shared_cache: Path
) -> None:
    run, _ = ml100k_run
    proc = run_cli(
        "recsys_attn.evaluate",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"paths.cache_dir={shared_cache}",
        "data=ml-1m",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: data: ml-1m has 3416 items but the checkpoint")


# --- a failed run ------------------------------------------------------------------------------------


@pytest.fixture()
def hydra_run(tmp_path: Path) -> Iterator[Path]:
    """Hydra's state during a ``train`` job whose run directory is ``tmp_path/run`` (with Hydra's own files)."""
    cfg = composed("train", hydra_config=True)
    run = tmp_path / "run"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run)
        cfg.hydra.job.name = "train"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 42\n")
    (run / "train.log").write_text("[INFO] - data ml-1m: ...\n")
    (run / "csv").mkdir()  # an empty folder a logger made
    HydraConfig.instance().set_config(cfg)
    yield run
    HydraConfig.instance().cfg = None  # type: ignore[assignment]


def test_a_run_that_failed_before_writing_anything_is_removed(hydra_run: Path) -> None:
    assert hydra_files_only(hydra_run, "train.log")
    with pytest.raises(ValueError, match="bad setting"), failed_run_cleanup():
        raise ValueError("bad setting")
    assert not hydra_run.exists()


def test_a_run_that_wrote_something_is_kept_and_said_to_have_failed(
    hydra_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (hydra_run / "csv" / "metrics.csv").write_text("epoch\n0\n")
    assert not hydra_files_only(hydra_run, "train.log")
    with caplog.at_level(logging.ERROR), pytest.raises(KeyboardInterrupt), failed_run_cleanup():
        raise KeyboardInterrupt
    assert (hydra_run / "csv" / "metrics.csv").is_file()
    assert caplog.messages == [f"the run failed; what it wrote before failing stays in {hydra_run}"]


def test_the_directory_the_command_runs_in_is_never_removed(hydra_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(hydra_run)
    with pytest.raises(ValueError), failed_run_cleanup():
        raise ValueError("bad setting")
    assert (hydra_run / "train.log").is_file()


def test_success_keeps_the_run(hydra_run: Path) -> None:
    with failed_run_cleanup():
        pass
    assert (hydra_run / "train.log").is_file()


@pytest.mark.slow
def test_a_settings_error_through_the_cli_leaves_no_run_directory(tmp_path: Path) -> None:
    proc = run_cli("recsys_attn.train", "model.hidden_size=abc", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: model.hidden_size: expected an integer (got 'abc')"
    assert not (tmp_path / "run").exists()


def test_train_says_where_its_run_went(ml100k_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    run, proc = ml100k_run
    line = next(line for line in proc.stdout.splitlines() if line.startswith("run -> "))
    assert line.startswith(f"run -> {run} (") and "metrics.json" in line and "checkpoints/" in line, line
