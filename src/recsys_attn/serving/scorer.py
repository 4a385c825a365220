"""A portable scorer: a checkpoint's recommender as a graph from padded histories to top-K items and scores.

``PortableScorer`` does what the model does at serving time (``recommend(..., history="all")``): it cuts the
history as the evaluation inputs are cut (BERT4Rec: the last ``max_len - 1`` items and a MASK), scores every
item, removes padding and (``filter_seen``) the history from the ranking, and keeps the best ``k``.
``export_scorer`` writes it as ONNX (runs under onnxruntime, no Python package of ours) or as a
``torch.export`` program, and a JSON sidecar that maps item indices back to the original ids and holds the
scorer's SHA-256: the two replace an earlier pair together (``atomic.write_together``), the sidecar last.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import Tensor, nn

from recsys_attn.atomic import write_together
from recsys_attn.constants import PAD, mask_id
from recsys_attn.data.batches import eval_input
from recsys_attn.errors import ConfigError
from recsys_attn.models.base import RecModule

log = logging.getLogger(__name__)

SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torch": ".pt2"}
"""The formats ``export`` writes and the file suffix each must have."""

INPUT, OUTPUTS = "history", ("items", "scores")
"""Names of the graph's input and outputs (ONNX) and of the sidecar's fields describing them."""

PADDING = (
    "left: each row is a user's item indices (1..n_items) oldest first, the latest in the last column, "
    f"preceded by {PAD} (PAD); any batch size and any width >= 1"
)


class PortableScorer(nn.Module):
    """Top-``k`` items ``[B, k]`` (int64) and their scores ``[B, k]`` (float32) after histories ``[B, T]``.

    ``history`` holds item indices ``1..n_items``, left-padded with ``PAD``; ``T`` is free. The model reads
    the last ``spec.history_len`` items (``max_len``; BERT4Rec ``max_len - 1`` and its MASK, as the
    datamodule's evaluation inputs); with ``filter_seen`` every item of ``history`` (not only those read)
    is left out of the ranking, as ``eval.filter_seen=true`` leaves out the user's whole history. A
    ``-inf`` score means no item was left for that column.
    """

    def __init__(self, model: RecModule, k: int, filter_seen: bool) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"k: must be >= 1 (got {k})")
        if model.sample_spec.times:
            raise ConfigError(
                f"{type(model).__name__} reads each history item's timestamp (model.time_buckets): the portable "
                "scorer's input is item indices only, so it cannot be exported; serve it with predict"
            )
        # A frozen CPU copy: exporting neither moves nor freezes the caller's module, and the program needs no grad.
        self.model = copy.deepcopy(model).cpu().eval().requires_grad_(False)
        self.spec = model.sample_spec
        self.n_items = model.n_items
        self.k = min(k, model.n_items)
        self.filter_seen = filter_seen
        self.train(False)  # an inference graph (the exporters warn about one in training mode)

    def forward(self, history: Tensor) -> tuple[Tensor, Tensor]:
        width = self.spec.history_len
        padding = history.new_full((history.shape[0], width), PAD)  # [B, W] so that any T >= 1 fills W columns
        padded = torch.cat([padding, history], dim=1)  # [B, W + T]
        inp = eval_input(padded[:, -width:], self.spec, self.n_items)  # [B, max_len] the evaluation input
        scores = self.model.score(inp)[:, : self.n_items + 1].float()  # [B, n_items + 1] no MASK column
        drop = padded if self.filter_seen else padding  # [B, W (+ T)] PAD is always dropped
        scores = scores.scatter(1, drop, float("-inf"))  # [B, n_items + 1]
        top = scores.topk(self.k, dim=1)  # [B, k]
        return top.indices, top.values


@dataclass(frozen=True)
class Exported:
    """What ``export_scorer`` wrote."""

    model: Path
    sidecar: Path


def export_scorer(
    module: RecModule,
    items: pl.DataFrame,
    output: str | Path,
    fmt: str = "onnx",
    k: int = 10,
    opset: int = 18,
    filter_seen: bool | None = None,
) -> Exported:
    """Write ``module`` as a portable top-``k`` scorer to ``output`` and a JSON sidecar beside it.

    Args:
        module: A trained recommender (a frozen CPU copy of it is exported; it is left as it is).
        items: The prepared data's ``item_idx`` → ``item_id`` map (``Prepared.items``).
        output: The scorer file; its suffix must be that of ``fmt`` (``.onnx``, ``.pt2``).
        fmt: ``onnx`` (``torch.onnx.export(dynamo=True)``) or ``torch`` (``torch.export.save``).
        k: Items per user (at most the catalogue).
        opset: ONNX opset of the graph (``onnx`` only).
        filter_seen: Remove the history from the ranking; None = the checkpoint's ``filter_seen``.

    Returns:
        The paths of the scorer and of its sidecar (``output`` with the suffix ``.json``).
    """
    path = Path(output)
    if fmt not in SUFFIXES:
        raise ConfigError(f"format: {fmt!r} is not one of {', '.join(SUFFIXES)}")
    if path.suffix != SUFFIXES[fmt]:
        raise ConfigError(f"output: {path} must end in {SUFFIXES[fmt]} for format={fmt}")
    seen = module.settings.filter_seen if filter_seen is None else filter_seen
    scorer = PortableScorer(module, k, seen)
    item_ids = item_id_list(items, module.n_items)
    sidecar = path.with_suffix(".json")
    # An earlier export in the other format shares the sidecar about to be replaced: it goes with it.
    stale = [other for s in SUFFIXES.values() if s != path.suffix and (other := path.with_suffix(s)).exists()]
    with write_together(path, sidecar, stale=stale) as staged:
        if fmt == "onnx":
            staged.write(path, lambda tmp: _save_onnx(scorer, tmp, opset))
        else:
            staged.write(path, lambda tmp: _save_program(trace(scorer), tmp))
        meta = sidecar_fields(scorer, type(module), path.name, fmt, item_ids, file_sha256(staged.temp(path)))
        staged.write(sidecar, lambda tmp: tmp.write_text(json.dumps(meta, indent=1) + "\n"))
    for other in stale:
        log.warning("removed %s: its sidecar %s now describes %s", other, sidecar, path)
    log.info("wrote %s and %s", path, sidecar)
    return Exported(path, sidecar)


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path`` (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _example(scorer: PortableScorer) -> tuple[tuple[Tensor], tuple[dict[int, Any]]]:
    """An input to trace ``scorer`` with, and its free axes: batch size and history width."""
    example = torch.arange(2 * 3).remainder(scorer.n_items).add(1).view(2, 3)  # [2, 3] real items
    dims = {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("length", min=1)}
    return (example,), (dims,)


def trace(scorer: PortableScorer) -> torch.export.ExportedProgram:
    """``scorer`` as a ``torch.export`` program whose batch size and history width are both free."""
    args, dynamic = _example(scorer)
    with torch.no_grad():
        return torch.export.export(scorer, args, dynamic_shapes=dynamic, strict=False)


def _save_onnx(scorer: PortableScorer, path: Path, opset: int) -> None:
    """``scorer`` through the torch.export-based ONNX exporter (``dynamo=True``; onnxscript: the ``serve`` extra).

    The axes keep their names (``batch``, ``length``) in the graph's input and output shapes.
    """
    try:
        import onnxscript  # noqa: F401  # the exporter's own dependency, named here for a clear message
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "format: onnx needs the serve extra (pip install -e '.[serve]': onnx, onnxscript, onnxruntime)"
        ) from exc
    args, dynamic = _example(scorer)
    with torch.no_grad():
        onnx_program = torch.onnx.export(
            scorer,
            args,
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            opset_version=opset,
            verbose=False,
        )
    if onnx_program is None:  # only the TorchScript exporter returns nothing
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no program")
    onnx_program.save(path, external_data=False)  # one file: the weights inside (models under 2 GB)


def _save_program(program: torch.export.ExportedProgram, path: Path) -> None:
    """``torch.export.save`` through an open file (given a path, it wants the name to end in ``.pt2``)."""
    with path.open("wb") as file:
        torch.export.save(program, file)


def item_id_list(items: pl.DataFrame, n_items: int) -> list[Any]:
    """Original item id of each index ``0..n_items`` (index 0 = PAD: None), from ``Prepared.items``."""
    ordered = items.sort("item_idx")
    if ordered.height != n_items or ordered["item_idx"].to_list() != list(range(1, n_items + 1)):
        raise ConfigError(f"data: the item map holds {ordered.height} items, the checkpoint {n_items}")
    return [None, *ordered["item_id"].to_list()]


def sidecar_fields(
    scorer: PortableScorer, cls: type[RecModule], file: str, fmt: str, item_ids: list[Any], sha256: str
) -> dict[str, Any]:
    """What a serving team needs beside the graph to call it and read its answers, without this package.

    ``sha256`` is that of the scorer ``file``: a reader can check that the two belong together.
    """
    spec = scorer.spec
    return {
        "file": file,
        "sha256": sha256,
        "format": fmt,
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "input": {"name": INPUT, "dtype": "int64", "shape": ["batch", "length"], "padding": PADDING, "pad": PAD},
        "outputs": {
            OUTPUTS[0]: {"dtype": "int64", "shape": ["batch", "k"], "meaning": "item indices, best first"},
            OUTPUTS[1]: {"dtype": "float32", "shape": ["batch", "k"], "meaning": "their scores; -inf: no item left"},
        },
        "k": scorer.k,
        "n_items": scorer.n_items,
        "max_len": spec.max_len,
        "items_read": spec.history_len,
        "mask": mask_id(scorer.n_items) if spec.cloze else None,
        "filter_seen": scorer.filter_seen,
        "item_ids": item_ids,
    }
