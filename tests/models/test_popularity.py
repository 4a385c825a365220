"""The popularity baseline fits like the other models, without Lightning's warnings about nothing to train."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from recsys_attn.data.samples import SampleSpec
from recsys_attn.models.popularity import Popularity
from tests.conftest import quiet_trainer, toy_datamodule

LINES = [f"{u} {(3 * u + j) % 12 + 1}" for u in range(1, 40) for j in range(6)]


def test_fitting_popularity_changes_nothing_and_warns_of_nothing(tmp_path: Path) -> None:
    dm = toy_datamodule(tmp_path, LINES, SampleSpec("next", 8), batch_size=8)
    model = Popularity(dm.n_items, dm.item_popularity, max_len=8)
    before = model.score(torch.ones(2, 8, dtype=torch.long)).clone()
    trainer = quiet_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=dm)
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "returned `None`" in m or "configure_optimizers" in m], said
    assert trainer.global_step == 2 * trainer.num_training_batches > 0  # the steps count, as for other models
    assert float(model._anchor) == 0.0
    assert torch.equal(model.score(torch.ones(2, 8, dtype=torch.long)), before)
