"""Both models learn on real ML-1M: a few short CPU epochs beat the popularity baseline by far."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

SHORT = ["trainer.accelerator=cpu", "model.max_len=20", "logger=none", "callbacks=none"]
RUNS = {
    "popularity": ["model=popularity"],
    "sasrec": ["model=sasrec", "trainer.max_epochs=3"],
    "bert4rec": [
        "model=bert4rec",
        "trainer.max_epochs=5",
        "model.lr=3e-3",
        "model.mask_prob=0.4",
        "model.schedule=constant",
        "model.warmup_steps=0",
    ],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path, shared_cache: Path) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("learning")
    out = {}
    for name, overrides in RUNS.items():
        run_dir = tmp / name
        proc = run_cli(
            "recsys_attn.train",
            f"hydra.run.dir={run_dir}",
            f"paths.cache_dir={shared_cache}",
            *SHORT,
            *overrides,
            cwd=tmp,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = json.loads((run_dir / "metrics.json").read_text())
    return out


def test_popularity_baseline_is_weak_but_not_zero(results: dict[str, dict]) -> None:
    pop = results["popularity"]
    assert pop["test/users"] == 6040.0
    assert 0.005 < pop["test/ndcg@10"] < 0.05


@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])
def test_model_beats_popularity_by_a_wide_margin(results: dict[str, dict], model: str) -> None:
    pop, got = results["popularity"]["test/ndcg@10"], results[model]["test/ndcg@10"]
    assert results[model]["test/users"] == 6040.0
    assert got > 2.0 * pop, f"{model}: test/ndcg@10 {got:.4f} vs popularity {pop:.4f}"
    assert results[model]["test/hr@10"] > 2.0 * results["popularity"]["test/hr@10"]
