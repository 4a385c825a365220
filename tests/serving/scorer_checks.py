"""Checks shared by the export tests: a module's own top-k, and an exported scorer's answer compared with it.

``reference`` is the module's answer with the tolerance of a correct export of it; ``assert_same_top_k`` compares
an answer (an exported graph's, ``predict``'s) with it; ``run_onnx`` and ``run_program`` run the two exported
formats (ONNX needs the serve extra: a test that runs it is skipped without onnxruntime).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import Tensor

from recsys_attn.constants import PAD, mask_id
from recsys_attn.data.batches import EvalSplit, left_pad
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.models.base import RecModule
from recsys_attn.models.sequential import SequentialRec
from recsys_attn.run import entry as _entry  # noqa: F401  (registers resolvers)
from recsys_attn.run.checkpoints import checkpoint_and_data
from recsys_attn.run.run_dir import use_trained_data
from tests.conftest import CONF_DIR
from tests.tolerances import assert_close, score_mass, tol

EXPORT_OPS = 1000
"""Roundings behind one score: an encoder's forward pass (one or two blocks at hidden 16 over up to 30 positions:
a few hundred) and a product of 16 terms, each summed in another order by another runtime (onnxruntime), another
batch size or another padding width. Times the score's scale, :func:`score_mass`, it bounds a score's error."""


def feature_ops(model: SequentialRec) -> int:
    """:data:`EXPORT_OPS` plus the fusion of an item vector with its features: at most the concat fusion's
    projection of the id vector and each feature's vector (a sum of ``(1 + features) x hidden`` terms)."""
    return EXPORT_OPS + (1 + len(model.feature_spec or {})) * model.settings.hidden_size


def histories(dm: SeqDataModule, rows: Tensor) -> Tensor:
    """The whole histories (``history=all``) of rows of the FULL split, left-padded to the longest: ``[B, T]``."""
    es = dm.store.evals[EvalSplit.FULL]
    starts, ends = es.starts[rows], es.ends[rows]  # [B]
    return left_pad(dm.store.values, starts, ends, int((ends - starts).max())).long()  # [B, T]


class Reference(NamedTuple):
    """The module's answer for some rows, and how far the scores of a correct export of it may be from it."""

    items: Tensor  # [B, k + 1] model.top_k, one column more to see ties at the cut
    scores: Tensor  # [B, k + 1]
    rankable: Tensor  # [B, n_items + 1] every rankable score
    tol: float  # absolute: tol(float32, n_ops) times the largest sum of |h_d w_d| of a score

    def row(self, i: int) -> Reference:
        return Reference(self.items[i : i + 1], self.scores[i : i + 1], self.rankable[i : i + 1], self.tol)


def reference(model: RecModule, dm: SeqDataModule, rows: Tensor, k: int, n_ops: int = EXPORT_OPS) -> Reference:
    """``model.top_k`` (``k + 1`` columns) and every rankable score for FULL rows, with the scores' tolerance
    (``n_ops`` roundings behind a score: :data:`EXPORT_OPS` unless the model has more)."""
    dm.connect(model.sample_spec)  # evaluation inputs cut as this model reads them (BERT4Rec: MASK appended)
    batch = dm.store.eval_batch(rows, EvalSplit.FULL)
    model.eval()
    with torch.no_grad():
        items, scores = model.top_k(batch, k + 1)  # [B, k + 1]
        rankable = model._rankable(model.score(batch.input), batch)  # [B, n_items + 1]
        if isinstance(model, SequentialRec):  # a score is the product of the last state and an item's embedding
            mass = score_mass(model.encoder(batch.input)[:, -1], model.encoder.item_weights(model.n_items))
        else:  # popularity: the scores are counts, no arithmetic
            mass = float(rankable[rankable.isfinite()].abs().max())
    return Reference(items, scores, rankable, tol(torch.float32, n_ops) * mass)


def direct_reference(model: SequentialRec, history: Tensor, k: int, n_ops: int = EXPORT_OPS) -> Reference:
    """The protocol's top-k (``k + 1`` columns) after whole left-padded histories ``[B, T]``, built by hand.

    The model reads the last ``max_len`` items (cloze: the last ``max_len - 1`` and a MASK after them); padding
    and, with ``filter_seen``, every item of the history (not only those read) are left out of the ranking.
    """
    spec, n = model.sample_spec, model.n_items
    width = spec.history_len
    window = torch.cat([history.new_zeros(len(history), width), history], dim=1)[:, -width:]  # [B, W]
    if spec.cloze:
        window = torch.cat([window, window.new_full((len(window), 1), mask_id(n))], dim=1)  # [B, max_len]
    model.eval()
    with torch.no_grad():
        rankable = model.score(window)[:, : n + 1].float()  # [B, n_items + 1]
        mass = score_mass(model.states(window)[:, -1], model.encoder.item_weights(n))
    rankable[:, PAD] = float("-inf")
    if model.settings.filter_seen:
        rankable = rankable.scatter(1, history, float("-inf"))  # [B, n_items + 1]
    top = rankable.topk(min(k + 1, n + 1), dim=1)  # [B, k + 1]
    return Reference(top.indices, top.values, rankable, tol(torch.float32, n_ops) * mass)


def served_top_k(recs: pl.DataFrame, items: pl.DataFrame, users: pl.Series, k: int) -> tuple[Tensor, Tensor]:
    """``recommend``'s (``predict``'s) rows as item indices and scores ``[U, k]``, users in the order of ``users``
    (``items``: the prepared data's ``item_idx`` -> ``item_id``; ``-inf`` past the rows a user got)."""
    rows = pl.DataFrame({"user_id": users, "_row": range(len(users))})
    served = recs.join(items.select("item_id", "item_idx"), on="item_id").join(rows, on="user_id")
    assert served.height == recs.height  # every served user and item is known
    at = torch.tensor(served["_row"].to_numpy()), torch.tensor(served["rank"].to_numpy()).long()  # [R], [R]
    indices = torch.zeros(len(users), k, dtype=torch.long)  # [U, k]
    scores = torch.full((len(users), k), float("-inf"))  # [U, k]
    indices[at] = torch.tensor(served["item_idx"].to_numpy()).long()
    scores[at] = torch.tensor(served["score"].to_numpy()).float()
    return indices, scores


def assert_same_top_k(items: Tensor, scores: Tensor, ref: Reference) -> tuple[int, float]:
    """Identical items except where the module's own scores tie, and scores within ``ref.tol`` of the module's.

    Two runs of the same model (onnxruntime's kernels, a wider padding) differ by float rounding, ``err``:
    items whose scores are closer than ``2 * err`` may swap places, so at those positions only the item's
    own score is checked (the module scores it as the rank it was given, within ``err``). Everywhere else
    the items must be identical. Returns the number of tied positions and ``err``, so that a test can check
    that it compared something.
    """
    ref_items, ref_scores, rankable = ref.items, ref.scores, ref.rankable
    k = items.shape[1]
    finite = ref_scores[:, :k] > float("-inf")  # [B, k]
    assert torch.equal(scores > float("-inf"), finite)
    own = rankable.gather(1, items)  # [B, k] the module's score of each exported item
    err = float((own - scores)[finite].abs().max())
    assert err <= ref.tol, (err, ref.tol)
    assert_close(scores[finite], ref_scores[:, :k][finite], rtol=0, atol=ref.tol, what="top-k scores")
    close = (ref_scores[:, :-1] - ref_scores[:, 1:]).abs() <= 2 * err  # [B, k] column j ties with j + 1
    tied = finite & (close | torch.cat([torch.zeros_like(close[:, :1]), close[:, :-1]], dim=1))  # [B, k]
    assert torch.equal(items[~tied & finite], ref_items[:, :k][~tied & finite])
    return int(tied.sum()), err


@functools.cache
def onnx_session(path: Path) -> Any:
    """An onnxruntime session of the scorer at ``path``; skips the calling test without the serve extra."""
    ort = pytest.importorskip("onnxruntime", reason="format=onnx needs the serve extra")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@functools.cache
def loaded_program(path: Path) -> torch.nn.Module:
    return torch.export.load(str(path)).module()


def run_onnx(path: Path, history: Tensor) -> tuple[Tensor, Tensor]:
    items, scores = onnx_session(path).run(["items", "scores"], {"history": history.numpy()})
    assert items.dtype == np.int64 and scores.dtype == np.float32
    return torch.from_numpy(items), torch.from_numpy(scores)


def run_program(path: Path, history: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        items, scores = loaded_program(path)(history)
    return items, scores


def real_datamodule(ckpt: Path, cache: Path) -> tuple[RecModule, SeqDataModule]:
    """The checkpoint's module and the data of its run, as ``export`` loads them."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("export", overrides=[f"ckpt_path={ckpt}", f"paths.cache_dir={cache}"])
    use_trained_data(cfg, [])
    return checkpoint_and_data(cfg)
