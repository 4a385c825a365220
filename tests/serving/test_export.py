"""The portable scorer: the exported graph ranks as the LightningModule does, and runs without this package."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from recsys_attn.data.batches import EvalSplit
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.samples import SampleSpec
from recsys_attn.errors import ConfigError, WriteError
from recsys_attn.models.base import RecModule
from recsys_attn.models.bert4rec import BERT4Rec
from recsys_attn.models.esasrec import ESASRec
from recsys_attn.models.gru4rec import GRU4Rec
from recsys_attn.models.hstu import HSTU
from recsys_attn.models.popularity import Popularity
from recsys_attn.models.sasrec import SASRec
from recsys_attn.run import entry as _entry  # noqa: F401  (registers resolvers)
from recsys_attn.run.checkpoints import load_module
from recsys_attn.serving.recommend import recommend
from recsys_attn.serving.scorer import PortableScorer, export_scorer
from tests.conftest import run_cli, toy_datamodule, train_cli
from tests.serving.scorer_checks import (
    assert_same_top_k,
    histories,
    real_datamodule,
    reference,
    run_onnx,
    run_program,
)

pytest.importorskip("onnxruntime", reason="format=onnx needs the serve extra")

MAX_LEN = 6
K = 5
N_ITEMS = 30
# Ten users with 8..26 items (longer than MAX_LEN: items outside the model's window must be filtered too),
# original ids 1000 + x so that they differ from the internal indices.
TOY_LINES = [f"{u} {1000 + (7 * u + 11 * j) % N_ITEMS}" for u in range(1, 11) for j in range(6 + 2 * u)]


def toy(tmp_path: Path) -> SeqDataModule:
    return toy_datamodule(tmp_path, TOY_LINES, SampleSpec("next", MAX_LEN))


def toy_model(cls: type[RecModule], dm: SeqDataModule, **settings: Any) -> RecModule:
    torch.manual_seed(0)
    if cls is Popularity:
        return Popularity(dm.n_items, item_popularity=dm.item_popularity, max_len=MAX_LEN, **settings)
    shape = {} if cls is GRU4Rec else {"num_blocks": 1}
    model = cls(dm.n_items, hidden_size=16, max_len=MAX_LEN, **shape, **settings)
    with torch.no_grad():  # spread the scores: at the initial std of 0.02 many items would tie within rounding
        model.encoder.item_emb.weight.mul_(20.0)
    return model


# --- fast: a toy log, ten users -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec, GRU4Rec, Popularity, ESASRec, HSTU])
@pytest.mark.parametrize("filter_seen", [True, False])
def test_scorer_ranks_as_top_k_of_the_module(tmp_path: Path, cls: type[RecModule], filter_seen: bool) -> None:
    dm = toy(tmp_path)
    model = toy_model(cls, dm, filter_seen=filter_seen)
    rows = torch.arange(10)
    ref = reference(model, dm, rows, K)
    with torch.no_grad():
        items, scores = PortableScorer(model, K, filter_seen)(histories(dm, rows))
    assert_same_top_k(items, scores, ref)
    history = histories(dm, rows)
    long_ago = [set(h[:-MAX_LEN].tolist()) - set(h[-MAX_LEN:].tolist()) - {0} for h in history]
    assert any(long_ago)  # items only older than the model's window exist ...
    ranked = [set(i[s > float("-inf")].tolist()) for i, s in zip(items, scores, strict=True)]
    assert any(r & old for r, old in zip(ranked, long_ago, strict=True)) != filter_seen  # ... and go when filtered
    assert (scores[:, -1] == float("-inf")).any() == filter_seen  # a user who has seen all but < K items


def test_padding_width_and_batch_do_not_change_the_answer(tmp_path: Path) -> None:
    dm = toy(tmp_path)
    scorer = PortableScorer(toy_model(BERT4Rec, dm), K, True)
    batch = histories(dm, torch.arange(10))  # [10, 26]
    with torch.no_grad():
        items, scores = scorer(batch)
        wider = scorer(torch.cat([torch.zeros(10, 40, dtype=torch.long), batch], dim=1))  # more left padding
        alone = [scorer(h[None, int((h == 0).sum()) :]) for h in batch]  # B = 1, each at its own width
    # each answer is the module's up to rounding (near-ties may swap): summed in another order, the same answer
    ref = reference(scorer.model, dm, torch.arange(10), K)
    assert_same_top_k(items, scores, ref)
    assert_same_top_k(*wider, ref)
    for row, (one_items, one_scores) in enumerate(alone):
        assert_same_top_k(one_items, one_scores, ref.row(row))


def test_bert4rec_scores_a_mask_after_the_last_max_len_minus_one_items(tmp_path: Path) -> None:
    dm = toy(tmp_path)
    scorer = PortableScorer(toy_model(BERT4Rec, dm), K, True)
    seen: list[Tensor] = []
    score = scorer.model.score
    scorer.model.score = lambda items: seen.append(items) or score(items)  # type: ignore[method-assign]
    history = histories(dm, torch.arange(2))  # [2, T], T > MAX_LEN
    scorer(history)
    (inp,) = seen
    assert inp.shape == (2, MAX_LEN)
    assert torch.equal(inp[:, :-1], history[:, -(MAX_LEN - 1) :])
    assert (inp[:, -1] == dm.n_items + 1).all()  # MASK = n_items + 1
    dm.connect(scorer.spec)
    assert torch.equal(inp, dm.store.eval_batch(torch.arange(2), EvalSplit.FULL).input)  # as the datamodule does


@pytest.fixture(scope="module")
def toy_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The toy data set, the transformer models (random weights) and their exports, ONNX and torch.export."""
    tmp = tmp_path_factory.mktemp("toy_export")
    dm = toy(tmp)
    models = {cls.__name__: toy_model(cls, dm) for cls in (SASRec, BERT4Rec, ESASRec, HSTU)}
    assert dm.prepared is not None
    written = {
        (name, "onnx"): export_scorer(model, dm.prepared.items, tmp / f"{name}.onnx", "onnx", k=K)
        for name, model in models.items()
    }
    for name in ("SASRec", "BERT4Rec", "ESASRec", "HSTU"):
        written[name, "torch"] = export_scorer(models[name], dm.prepared.items, tmp / f"{name}_torch.pt2", "torch", k=K)
    return {"dm": dm, "models": models, "written": written}


@pytest.mark.parametrize(
    ("name", "fmt"),
    [(name, fmt) for name in ("SASRec", "BERT4Rec", "ESASRec", "HSTU") for fmt in ("onnx", "torch")],
)
def test_exported_scorer_gives_the_module_top_k_at_any_batch_size(toy_exports: dict[str, Any], name: str, fmt: str):
    dm, model = toy_exports["dm"], toy_exports["models"][name]
    path = toy_exports["written"][name, fmt].model
    run = run_onnx if fmt == "onnx" else run_program
    rows = torch.arange(10)
    ref = reference(model, dm, rows, K)
    items, scores = run(path, histories(dm, rows))
    ties, _ = assert_same_top_k(items, scores, ref)
    assert ties <= 5  # out of 50 positions: the comparison is mostly exact
    many = run(path, histories(dm, rows).repeat(100, 1))  # B = 1000: no batch size is fixed in the graph
    assert many[0].shape == (1000, K) and torch.equal(many[0][-10:], items)
    for row in range(10):  # B = 1, each history at its own width, no padding
        h = histories(dm, rows[row : row + 1])
        one = run(path, h[:, (h == 0).sum() :])
        assert_same_top_k(*one, ref.row(row))  # the module's answer up to rounding, as the batch's


@pytest.mark.parametrize("fmt", ["onnx", "torch"])
@pytest.mark.parametrize(
    ("cls", "layout"),
    [
        (SASRec, {"block_layout": "sasrec_reference"}),
        (BERT4Rec, {"block_layout": "bert_reference", "norm_first": False}),
    ],
)
def test_the_reference_positions_and_block_export_as_the_module_scores(
    tmp_path: Path, fmt: str, cls: type[RecModule], layout: dict[str, Any]
) -> None:
    """``positions=from_start`` numbers the window the graph cuts, by its real items, at any padding width."""
    dm = toy(tmp_path)
    model = toy_model(cls, dm, positions="from_start", **layout)
    assert dm.prepared is not None
    path = export_scorer(model, dm.prepared.items, tmp_path / f"ref.{'onnx' if fmt == 'onnx' else 'pt2'}", fmt, k=K)
    run = run_onnx if fmt == "onnx" else run_program
    rows = torch.arange(10)
    items, scores = run(path.model, histories(dm, rows))
    ref = reference(model, dm, rows, K)
    ties, _ = assert_same_top_k(items, scores, ref)
    assert ties <= 5
    for row in range(10):  # B = 1, each history at its own width, no padding
        h = histories(dm, rows[row : row + 1])
        one = run(path.model, h[:, (h == 0).sum() :])
        assert_same_top_k(*one, ref.row(row))  # the module's answer up to rounding, as the batch's


def test_sidecar_maps_indices_to_the_original_item_ids(toy_exports: dict[str, Any]) -> None:
    dm = toy_exports["dm"]
    meta = json.loads(toy_exports["written"]["BERT4Rec", "onnx"].sidecar.read_text())
    assert toy_exports["written"]["BERT4Rec", "onnx"].sidecar.name == "BERT4Rec.json"
    expected = dict(zip(dm.prepared.items["item_idx"], dm.prepared.items["item_id"], strict=True))
    assert meta["item_ids"] == [None, *(expected[i] for i in range(1, dm.n_items + 1))]
    assert meta["item_ids"][1:] == sorted(1000 + x for x in range(N_ITEMS))  # indices follow the sorted ids
    assert (meta["k"], meta["max_len"], meta["items_read"], meta["n_items"]) == (K, MAX_LEN, MAX_LEN - 1, N_ITEMS)
    assert meta["mask"] == N_ITEMS + 1 and meta["filter_seen"] is True and meta["input"]["pad"] == 0
    assert meta["model_class"] == "recsys_attn.models.bert4rec.BERT4Rec" and meta["file"] == "BERT4Rec.onnx"
    assert "left" in meta["input"]["padding"]
    sas = json.loads(toy_exports["written"]["SASRec", "onnx"].sidecar.read_text())
    assert (sas["items_read"], sas["mask"]) == (MAX_LEN, None)
    for written in toy_exports["written"].values():  # each sidecar names its scorer by checksum
        sha256 = hashlib.sha256(written.model.read_bytes()).hexdigest()
        assert json.loads(written.sidecar.read_text())["sha256"] == sha256


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_full_disk_at_the_sidecar_leaves_the_earlier_pair_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The scorer and its sidecar appear together or not at all; a failed re-export keeps the earlier pair."""
    dm = toy(tmp_path / "data")
    assert dm.prepared is not None
    out = tmp_path / "out"
    first = export_scorer(toy_model(SASRec, dm), dm.prepared.items, out / "scorer.pt2", "torch", k=K)
    old_model, old_sidecar = first.model.read_bytes(), first.sidecar.read_text()
    write_text = Path.write_text

    def full_at_the_sidecar(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.name.startswith(".scorer.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_at_the_sidecar)
    other = toy_model(BERT4Rec, dm)
    with pytest.raises(WriteError, match=r"scorer\.json: cannot write \(No space left on device\)$"):
        export_scorer(other, dm.prepared.items, out / "scorer.pt2", "torch", k=K)
    assert listing(out) == ["scorer.json", "scorer.pt2"]  # no temporary, no new scorer beside the old sidecar
    assert (first.model.read_bytes(), first.sidecar.read_text()) == (old_model, old_sidecar)
    with pytest.raises(WriteError):  # a first export into an empty folder leaves nothing at all
        export_scorer(other, dm.prepared.items, tmp_path / "new" / "scorer.pt2", "torch", k=K)
    assert not (tmp_path / "new").exists()

    monkeypatch.setattr(Path, "write_text", write_text)
    again = export_scorer(other, dm.prepared.items, out / "scorer.pt2", "torch", k=K)
    meta = json.loads(again.sidecar.read_text())
    assert meta["model_class"].endswith("BERT4Rec") and again.model.read_bytes() != old_model
    assert meta["sha256"] == hashlib.sha256(again.model.read_bytes()).hexdigest()


def test_an_export_in_the_other_format_replaces_the_whole_earlier_pair(tmp_path: Path) -> None:
    dm = toy(tmp_path / "data")
    assert dm.prepared is not None
    model = toy_model(SASRec, dm)
    export_scorer(model, dm.prepared.items, tmp_path / "scorer.pt2", "torch", k=K)
    written = export_scorer(model, dm.prepared.items, tmp_path / "scorer.onnx", "onnx", k=K)
    assert listing(tmp_path) == ["data", "scorer.json", "scorer.onnx"]  # no .pt2 left without its sidecar
    assert json.loads(written.sidecar.read_text())["file"] == "scorer.onnx"


ISOLATED = textwrap.dedent(
    """
    import json, os, sys
    # no recsys_attn (the editable install's src/ leaves sys.path) and no torch: onnxruntime and numpy only
    sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p, "recsys_attn"))]
    sys.modules["torch"] = None
    try:
        import recsys_attn
    except ImportError:
        pass
    else:
        sys.exit("recsys_attn is importable")
    import numpy as np
    import onnxruntime

    model, sidecar, users = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    meta = json.load(open(sidecar))
    index = {item: i for i, item in enumerate(meta["item_ids"]) if item is not None}
    width = max(len(h) for h in users.values())
    history = np.full((len(users), width), meta["input"]["pad"], dtype=np.int64)
    for row, items in enumerate(users.values()):
        history[row, width - len(items):] = [index[i] for i in items]  # left padding
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    items, scores = session.run(["items", "scores"], {"history": history})
    print(json.dumps({u: [meta["item_ids"][i] for i, s in zip(r, v) if s > -np.inf]
                      for u, r, v in zip(users, items.tolist(), scores.tolist())}))
    """
)


@pytest.mark.parametrize("name", ["SASRec", "BERT4Rec"])
def test_onnx_scorer_runs_without_this_package(toy_exports: dict[str, Any], name: str, tmp_path: Path) -> None:
    dm, model, written = toy_exports["dm"], toy_exports["models"][name], toy_exports["written"][name, "onnx"]
    prepared = dm.prepared
    interactions = prepared.interactions.join(prepared.items, on="item_idx").join(prepared.users, on="user_idx")
    users = {str(u): g["item_id"].to_list() for (u,), g in interactions.group_by("user_id", maintain_order=True)}
    script = tmp_path / "serve.py"
    script.write_text(ISOLATED)
    proc = subprocess.run(
        [sys.executable, "-I", str(script), str(written.model), str(written.sidecar), json.dumps(users)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout)
    recs = recommend(model, dm, k=K, history="all")  # the package's own answer, with original ids
    expected = {str(u): g.sort("rank")["item_id"].to_list() for (u,), g in recs.group_by("user_id")}
    assert served == expected


def test_exporting_leaves_the_module_as_it_was(tmp_path: Path) -> None:
    dm = toy(tmp_path)
    model = toy_model(SASRec, dm).train()
    before = {n: p.clone() for n, p in model.state_dict().items()}
    assert dm.prepared is not None
    export_scorer(model, dm.prepared.items, tmp_path / "s.pt2", "torch", k=3)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


def test_bad_format_output_or_k_is_named(tmp_path: Path) -> None:
    dm = toy(tmp_path)
    model = toy_model(SASRec, dm)
    assert dm.prepared is not None
    with pytest.raises(ConfigError, match=r"^format: 'tflite' is not one of onnx, torch"):
        export_scorer(model, dm.prepared.items, tmp_path / "s.onnx", "tflite")
    with pytest.raises(ConfigError, match=r"^output: .*s\.onnx must end in \.pt2 for format=torch"):
        export_scorer(model, dm.prepared.items, tmp_path / "s.onnx", "torch")
    with pytest.raises(ConfigError, match=r"^k: must be >= 1"):
        export_scorer(model, dm.prepared.items, tmp_path / "s.onnx", "onnx", k=0)
    assert not list(tmp_path.glob("s.*"))


# --- slow: real ml-1m checkpoints, 1,000 users ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])
def test_exports_of_real_ml1m_checkpoints_rank_1000_users_as_the_module(
    model: str, tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    train_cli(tmp_path, shared_cache, "run", f"model={model}", "model.max_len=30", "trainer.max_epochs=1")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    proc = run_cli(
        "recsys_attn.export",
        f"ckpt_path={ckpt}",
        "format=onnx",
        f"k={K * 2}",
        f"hydra.run.dir={tmp_path / 'export'}",
        f"paths.cache_dir={shared_cache}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    onnx_path = tmp_path / "export" / "scorer.onnx"
    assert f"-> {onnx_path}" in proc.stdout and (tmp_path / "export" / "scorer.json").is_file()
    module, dm = real_datamodule(ckpt, shared_cache)
    assert dm.prepared is not None and dm.prepared.meta["n_items"] == module.n_items
    torch_path = export_scorer(load_module(ckpt), dm.prepared.items, tmp_path / "scorer.pt2", "torch", k=K * 2).model

    rows = torch.arange(1000)
    ref = reference(module, dm, rows, K * 2)
    history = histories(dm, rows)  # [1000, longest history]
    assert int((history != 0).sum(1).max()) > 30  # histories longer than the model's window are served whole
    for run, path in ((run_onnx, onnx_path), (run_program, torch_path)):
        items, scores = run(path, history)
        assert items.shape == (1000, K * 2)
        ties, err = assert_same_top_k(items, scores, ref)
        assert ties < 0.01 * items.numel(), (ties, err)
        one_items, one_scores = run(path, history[7:8, (history[7] == 0).sum() :])  # B = 1, unpadded
        assert_same_top_k(one_items, one_scores, ref.row(7))  # the module's answer up to rounding, as the batch's
    meta = json.loads((tmp_path / "export" / "scorer.json").read_text())
    expected = dm.prepared.items.sort("item_idx")["item_id"].to_list()
    assert meta["item_ids"] == [None, *expected] and meta["max_len"] == 30 and meta["k"] == K * 2
