"""Runs written before the house-by-role move (tests/fixtures/pre_move, commit 07ec18b) still load and score.

Each fixture run is what ``train`` left then: ``.hydra/config.yaml`` (with the old ``_target_`` paths of
callbacks and loggers) and ``checkpoints/epoch_000.ckpt`` of a tiny SASRec or BERT4Rec trained one epoch on
``log.csv``; ``expected.json`` holds the test metrics that run reported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from recsys_attn.run.checkpoints import load_module
from tests.conftest import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "pre_move"
MODELS = ("sasrec", "bert4rec")


@pytest.fixture
def old_runs(tmp_path: Path) -> Path:
    """The fixture copied, so evaluate's cache and runs land in a temporary folder."""
    shutil.copytree(FIXTURE, tmp_path / "pre_move")
    return tmp_path / "pre_move"


@pytest.mark.parametrize("model", MODELS)
def test_an_old_checkpoint_loads_the_same_weights(model: str) -> None:
    path = FIXTURE / model / "checkpoints" / "epoch_000.ckpt"
    saved = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    loaded = load_module(path).state_dict()
    assert sorted(loaded) == sorted(saved)
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name


@pytest.mark.parametrize("model", MODELS)
def test_an_old_run_evaluates_to_its_own_metrics(model: str, old_runs: Path) -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())["test_metrics"][model]
    out = old_runs / f"eval-{model}"
    proc = run_cli(
        "recsys_attn.evaluate",
        f"ckpt_path={old_runs / model / 'checkpoints' / 'epoch_000.ckpt'}",
        f"paths.data_dir={old_runs}",
        f"paths.cache_dir={old_runs / 'cache'}",
        f"hydra.run.dir={out}",
        "trainer.accelerator=cpu",
        "splits=[test]",
        cwd=old_runs,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test/users"] == expected["test/users"]
    # ranks are integers from float32 scores of the same weights: the same unless two items' scores tie within a
    # rounding, which would move a user's rank by one and a mean over 33 users by more than 1e-3
    for key in ("test/ndcg@10", "test/hr@10", "test/mrr"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key
