"""A model trained with item features, through every command: train, evaluate, predict, export, ope."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_attn.data.batches import EvalSplit
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.models.sequential import SequentialRec
from tests.conftest import ML100K_TINY, run_cli, train_cli
from tests.serving.scorer_checks import (
    assert_same_top_k,
    direct_reference,
    feature_ops,
    histories,
    real_datamodule,
    reference,
    run_onnx,
    run_program,
    served_top_k,
)


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


def best_checkpoint(run: Path) -> Path:
    (best,) = (run / "checkpoints").glob("epoch_*.ckpt")  # the one train tested
    return best


def cli(module: str, run: Path, name: str, cache: Path, *overrides: str) -> str:
    proc = run_cli(
        module,
        f"ckpt_path={best_checkpoint(run)}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={run.parent / name}",
        *overrides,
        cwd=run.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


USERS = 20
"""Users predict and the exports are checked on (the first of the FULL split, ``history=all``)."""


@pytest.fixture(scope="module")
def loaded(features_run: Path, shared_cache: Path) -> tuple[SequentialRec, SeqDataModule]:
    """The checkpoint's module and the data of its run, loaded as the commands load them."""
    module, dm = real_datamodule(best_checkpoint(features_run), shared_cache)
    assert isinstance(module, SequentialRec) and module.feature_spec  # its feature layers, rebuilt from the checkpoint
    return module, dm


def test_evaluate_scores_it_as_train_did(features_run: Path, shared_cache: Path) -> None:
    cli("recsys_attn.evaluate", features_run, "eval", shared_cache, "data.max_eval_users=100")
    trained = json.loads((features_run / "metrics.json").read_text())
    evaluated = json.loads((features_run.parent / "eval" / "metrics.json").read_text())
    assert evaluated["test/ndcg@10"] == pytest.approx(trained["test/ndcg@10"], rel=1e-5)
    assert evaluated["test/users"] == trained["test/users"]
    assert trained["test_cold/users"] > 0  # the held-out items' users, ranked among the cold items
    assert evaluated["test_cold/ndcg@10"] == pytest.approx(trained["test_cold/ndcg@10"], rel=1e-5)


def test_predict_serves_its_top_k_and_marks_cold_items_and_ope_reads_it(
    features_run: Path, shared_cache: Path, loaded: tuple[SequentialRec, SeqDataModule], tmp_path: Path
) -> None:
    """predict's items and scores are the best of the model's own scores after each whole history (history=all), the
    history filtered out; ``cold`` is true exactly for the items no training sequence holds (the held-out fifth)."""
    module, dm = loaded
    assert dm.prepared is not None
    k = module.n_items  # every servable item: each cold item reaches every user
    cli("recsys_attn.predict", features_run, "pred", shared_cache, f"k={k}", f"max_users={USERS}", "device=cpu")
    recs = pl.read_parquet(features_run.parent / "pred" / "recommendations.parquet")
    assert recs.schema["cold"] == pl.Boolean  # which recommended items no training sequence holds
    es = dm.store.evals[EvalSplit.FULL]
    users = dm.prepared.users["user_id"].gather((es.users[:USERS] - 1).numpy())  # [U] predict's first users
    assert recs["user_id"].unique(maintain_order=True).to_list() == users.to_list()
    items, scores = served_top_k(recs, dm.prepared.items, users, k)  # [U, k]
    ref = direct_reference(module, histories(dm, torch.arange(USERS)), k, feature_ops(module))
    ties, err = assert_same_top_k(items, scores, ref)
    assert ties <= items.numel() // 2, (ties, err)  # cold items with the same features tie exactly: not all do
    untrained = (dm.item_popularity == 0).tolist()  # [n_items + 1] the run's data, recounted
    index = dict(zip(dm.prepared.items["item_id"], dm.prepared.items["item_idx"], strict=True))
    assert recs["cold"].to_list() == [untrained[index[i]] for i in recs["item_id"].to_list()]
    assert 0 < recs["cold"].sum() < recs.height
    # a greedy top-4 log, read back by ope under the same greedy policy
    served = recs.filter(pl.col("rank") < 4).drop("score")
    served = served.with_columns(propensity=pl.lit(1.0), reward=(pl.col("rank") == 1).cast(pl.Int8))
    served.write_csv(tmp_path / "served.csv")
    cli("recsys_attn.ope", features_run, "ope", shared_cache, f"logged={tmp_path / 'served.csv'}", "device=cpu")
    report = json.loads((features_run.parent / "ope" / "ope.json").read_text())
    assert report["ips"]["value"] == pytest.approx(report["logged"]["value"])  # greedy on its own greedy log


@pytest.mark.parametrize("fmt", ["torch", "onnx"])
def test_its_exports_rank_as_the_module(
    features_run: Path, shared_cache: Path, loaded: tuple[SequentialRec, SeqDataModule], fmt: str
) -> None:
    """The exported scorer (ONNX, torch.export) of the features model gives the module's top-k and scores."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="format=onnx needs the serve extra")
    module, dm = loaded
    cli("recsys_attn.export", features_run, f"export_{fmt}", shared_cache, f"format={fmt}")
    meta = json.loads((features_run.parent / f"export_{fmt}" / "scorer.json").read_text())
    rows = torch.arange(USERS)
    ref = reference(module, dm, rows, meta["k"], feature_ops(module))
    run = run_onnx if fmt == "onnx" else run_program
    items, scores = run(features_run.parent / f"export_{fmt}" / meta["file"], histories(dm, rows))
    ties, err = assert_same_top_k(items, scores, ref)
    assert ties <= items.numel() // 10, (ties, err)  # the comparison is mostly exact
