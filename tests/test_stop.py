"""A run stopped from outside, or one that would train nothing: a non-zero exit that says what happened."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_RUN, run_cli


def test_sigterm_saves_last_says_how_to_resume_and_exits_non_zero(
    tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    run_dir = tmp_path / "run"
    overrides = [
        *TINY_RUN,
        "trainer.limit_train_batches=10",
        "trainer.max_epochs=50",
        "trainer.enable_progress_bar=false",
    ]
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recsys_attn.train",
            f"hydra.run.dir={run_dir}",
            f"paths.cache_dir={shared_cache}",
            *overrides,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # stop it inside the second epoch, after the first has written last.ckpt
        if "epoch 1/50" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]  # 128 + SIGTERM, as a shell reports it; never 0
    (stopped,) = [line for line in stderr.splitlines() if line.startswith("stopped: ")]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert stopped.startswith("stopped: SIGTERM in epoch ") and f"saved {last};" in stopped, stopped
    assert "the run failed" not in stderr
    assert last.is_file()

    # the command it prints resumes the run in its own directory (here cut to 2 epochs)
    command = shlex.split(stopped.split("resume with: ", 1)[1])
    assert command[:3] == ["python", "-m", "recsys_attn.train"]
    assert f"hydra.run.dir={run_dir}" in command and command[-1] == "ckpt_path=last"
    resumed = run_cli("recsys_attn.train", *command[3:], "trainer.max_epochs=2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/epochs"] == 2.0


@pytest.mark.parametrize("key", ["trainer.max_epochs", "+trainer.max_steps", "trainer.limit_train_batches"])
def test_a_run_that_would_train_nothing_is_refused(key: str, tmp_path: Path) -> None:
    proc = run_cli("recsys_attn.train", f"{key}=0", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {key.lstrip('+')}: 0 trains nothing"), proc.stderr[
        -2000:
    ]
    assert not (tmp_path / "run" / "metrics.json").exists()
