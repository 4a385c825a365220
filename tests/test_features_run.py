"""A model trained with item features, through every command: train, evaluate, predict, export, ope."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_attn.models.sequential import SequentialRec
from tests.conftest import ML100K_TINY, run_cli, train_cli


@pytest.fixture(scope="module")
def features_run(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path, shared_cache: Path) -> Path:
    """The run directory of a tiny SASRec trained on ml-100k with its genres and years (both sides, concat), a fifth
    of the items held out of training (cold)."""
    tmp = tmp_path_factory.mktemp("features")
    overrides = ("features=ml-100k", "model.feature_fusion=concat", "data.split.cold_items=0.2")
    train_cli(tmp, shared_cache, "run", *overrides, base=ML100K_TINY)
    return tmp / "run"


def test_the_checkpoint_carries_the_features_and_their_vocabulary(features_run: Path) -> None:
    ckpt = torch.load(features_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    spec = ckpt["hyper_parameters"]["feature_spec"]
    assert spec["genres"] == {"kind": "multi", "size": 21, "width": 6}  # 19 genres + no item + missing
    assert spec["year"] == {"kind": "numeric", "size": 1, "width": 1}
    assert ckpt[SequentialRec.FEATURES_KEY]["genres"][:2] == ["Drama", "Comedy"]
    values = [k for k in ckpt["state_dict"] if "values_genres" in k]
    assert values and ckpt["state_dict"][values[0]].shape[0] >= 1683  # every item's genres, saved with the weights


def cli(module: str, run: Path, name: str, cache: Path, *overrides: str) -> str:
    (best,) = (run / "checkpoints").glob("epoch_*.ckpt")  # the one train tested
    proc = run_cli(
        module,
        f"ckpt_path={best}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={run.parent / name}",
        *overrides,
        cwd=run.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_evaluate_scores_it_as_train_did(features_run: Path, shared_cache: Path) -> None:
    cli("recsys_attn.evaluate", features_run, "eval", shared_cache, "data.max_eval_users=100")
    trained = json.loads((features_run / "metrics.json").read_text())
    evaluated = json.loads((features_run.parent / "eval" / "metrics.json").read_text())
    assert evaluated["test/ndcg@10"] == pytest.approx(trained["test/ndcg@10"], rel=1e-5)
    assert evaluated["test/users"] == trained["test/users"]
    assert trained["test_cold/users"] > 0  # the held-out items' users, ranked among the cold items
    assert evaluated["test_cold/ndcg@10"] == pytest.approx(trained["test_cold/ndcg@10"], rel=1e-5)


def test_predict_export_and_ope_run_on_it(features_run: Path, shared_cache: Path, tmp_path: Path) -> None:
    cli("recsys_attn.predict", features_run, "pred", shared_cache, "k=4", "max_users=50", "device=cpu")
    recs = pl.read_parquet(features_run.parent / "pred" / "recommendations.parquet")
    assert recs.height == 200 and recs["user_id"].n_unique() == 50
    assert recs.schema["cold"] == pl.Boolean  # which recommended items no training sequence holds
    for fmt in ("torch", "onnx"):
        cli("recsys_attn.export", features_run, f"export_{fmt}", shared_cache, f"format={fmt}")
        assert (features_run.parent / f"export_{fmt}" / "scorer.json").is_file()
    served = recs.drop("score").with_columns(propensity=pl.lit(1.0), reward=(pl.col("rank") == 1).cast(pl.Int8))
    served.write_csv(tmp_path / "served.csv")
    cli("recsys_attn.ope", features_run, "ope", shared_cache, f"logged={tmp_path / 'served.csv'}", "device=cpu")
    report = json.loads((features_run.parent / "ope" / "ope.json").read_text())
    assert report["ips"]["value"] == pytest.approx(report["logged"]["value"])  # greedy on its own greedy log
