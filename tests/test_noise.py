"""Third-party lines that tell a user nothing stay off the console (each by its text or logger); others do not."""

import json
import logging
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger

from recsys_attn.data.samples import SampleSpec
from recsys_attn.models.sasrec import SASRec
from recsys_attn.run.noise import LIGHTNING_TIP, ONNX_PASS_LOGGERS, RANK_ZERO_LOGGERS, silence_third_party_noise
from recsys_attn.serving.scorer import export_scorer
from tests.conftest import REPO_ROOT, run_cli, toy_datamodule


@pytest.mark.slow
def test_a_training_run_prints_neither_the_tip_nor_the_deprecation(
    ml100k_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, proc = ml100k_run
    out = proc.stdout + proc.stderr
    assert "litlogger" not in out and "LeafSpec" not in out
    assert "smaller than the logging interval" not in out  # 3 training batches, log_every_n_steps=20
    assert "GPU available:" in out  # Lightning's other messages still show


def test_only_the_tip_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    silence_third_party_noise()
    silence_third_party_noise()  # idempotent: one filter per logger
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        assert len(logger.filters) == 1
        with caplog.at_level(logging.INFO, logger=name):
            logger.info(f"{LIGHTNING_TIP} try installing litlogger")
            logger.info("GPU available: False, used: False")
    assert caplog.messages == ["GPU available: False, used: False"] * len(RANK_ZERO_LOGGERS)


def test_only_the_leafspec_deprecation_is_dropped() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_third_party_noise()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ... instead.", FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_only_the_sync_dist_advice_on_evaluation_values_is_dropped() -> None:
    advice = (
        "It is recommended to use `self.log({!r}, ..., sync_dist=True)` when logging on epoch level in distributed"
        " setting to accumulate the metric across devices."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_third_party_noise()
        for name in ("val/ndcg@10", "test/users", "segments/test/history_short/ndcg@10", "train/loss_epoch"):
            warnings.warn(advice.format(name), UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [advice.format("train/loss_epoch")]  # the training loss is per device


def test_only_the_logging_interval_warning_is_dropped() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_third_party_noise()
        warnings.warn(
            "The number of training batches (3) is smaller than the logging interval Trainer(log_every_n_steps=20)."
            " Set a lower value for log_every_n_steps if you want to see logs for the training epoch.",
            UserWarning,
            stacklevel=1,
        )
        warnings.warn("The number of training batches (0) is zero", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["The number of training batches (0) is zero"]


def test_a_short_epoch_fits_without_the_logging_interval_warning(tmp_path: Path) -> None:
    """A real fit of 3 batches an epoch under ``log_every_n_steps=20`` with a logger: Lightning's warning is gone."""
    lines = [f"{u} {(3 * u + j) % 12 + 1}" for u in range(1, 25) for j in range(6)]
    dm = toy_datamodule(tmp_path, lines, SampleSpec("next", 8), batch_size=8)
    model = SASRec(dm.n_items, hidden_size=8, num_blocks=1, max_len=8)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        log_every_n_steps=20,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_third_party_noise()
        trainer.fit(model, datamodule=dm)
    said = [str(w.message) for w in caught]
    assert trainer.num_training_batches == 3 and trainer.loggers
    assert not [m for m in said if "logging interval" in m], said


def test_onnx_passes_log_nothing_below_a_warning(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason="format=onnx needs the serve extra")
    silence_third_party_noise()
    dm = toy_datamodule(tmp_path, [f"{u} {(5 * u + j) % 9 + 1}" for u in range(1, 6) for j in range(5)])
    assert dm.prepared is not None
    with caplog.at_level(logging.INFO):
        export_scorer(
            SASRec(dm.n_items, hidden_size=8, num_blocks=1, max_len=4), dm.prepared.items, tmp_path / "s.onnx"
        )
    exporter = [r for r in caplog.records if r.name.startswith(ONNX_PASS_LOGGERS)]
    assert exporter == [], [r.getMessage() for r in exporter][:5]
    assert any(r.name == "recsys_attn.serving.scorer" for r in caplog.records)  # our own INFO lines still show
    logging.getLogger("onnxscript.optimizer").warning("kept")  # warnings of the same loggers still show
    assert caplog.records[-1].getMessage() == "kept"


def test_a_level_set_before_is_kept() -> None:
    logger = logging.getLogger(ONNX_PASS_LOGGERS[0])
    level = logger.level
    try:
        logger.setLevel(logging.DEBUG)
        silence_third_party_noise()
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(level)


def test_export_to_onnx_prints_a_few_lines(tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path) -> None:
    """``python -m recsys_attn.export format=onnx`` says where its files went, without the exporter's ~75 lines."""
    pytest.importorskip("onnxscript", reason="format=onnx needs the serve extra")
    run = tmp_path / "export"
    proc = run_cli(
        "recsys_attn.export",
        f"ckpt_path={tiny_checkpoint}",
        f"paths.cache_dir={shared_cache}",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "onnxscript" not in out and "onnx_ir" not in out and "torch.onnx" not in out, out
    assert len(out.splitlines()) < 15, out
    assert json.loads((run / "scorer.json").read_text())["file"] == "scorer.onnx"


def test_a_trainer_built_by_test_code_prints_no_tip() -> None:
    """The tests' own Trainers (tests/conftest.py silences what the entry points do): no litlogger tip."""
    code = textwrap.dedent(
        """
        import tests.conftest  # noqa: F401
        import lightning as L
        L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
        L.Trainer(accelerator="cpu", enable_progress_bar=False, default_root_dir=sys.argv[1])
        print("built")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code, "/tmp"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "built" in proc.stdout and "Tip" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "GPU available" in proc.stdout + proc.stderr  # Lightning's other lines still show


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_every_notebook_silences_what_the_entry_points_do(path: Path) -> None:
    first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    source = "".join(first["source"])
    assert "from recsys_attn.run.noise import silence_third_party_noise" in source
    assert "\nsilence_third_party_noise()" in source  # called before any Trainer is built


def test_a_single_runs_error_is_one_line_without_hydras_job_line(tmp_path: Path) -> None:
    proc = run_cli("recsys_attn.train", "trainer.max_epochs=0", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Error executing job" not in proc.stderr, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")] == [proc.stderr.strip()]
