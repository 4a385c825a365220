"""Our Lightning callbacks in isolation: smoothed early stopping, atomic checkpoints."""

import errno
import os
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from recsys_attn.errors import WriteError
from recsys_attn.run.entry import run_entry_point
from recsys_attn.tracking.callbacks import ResumableCheckpoint, SmoothedEarlyStopping

# A noisy, still-rising validation curve (Cloze training): the raw value dips below its best for 3 checks.
RISING = [0.010, 0.015, 0.018, 0.017, 0.016, 0.016, 0.017, 0.018, 0.025]


def stops_at(curve: list[float], smoothing: float, patience: int = 3, min_delta: float = 2e-4) -> int | None:
    stopper = SmoothedEarlyStopping(
        monitor="val/ndcg@10", mode="max", patience=patience, smoothing=smoothing, min_delta=min_delta
    )
    for i, value in enumerate(curve):
        should_stop, _ = stopper._evaluate_stopping_criteria(torch.tensor(value))
        if should_stop:
            return i
    return None


def test_raw_patience_cuts_a_rising_run_the_smoothed_rule_keeps() -> None:
    assert stops_at(RISING, smoothing=0.0) == 5  # plain early stopping ends it in the dip
    assert stops_at(RISING, smoothing=0.8) is None


def test_the_smoothed_rule_still_stops_a_run_that_stopped_learning() -> None:
    plateau = [0.02, 0.03, 0.04, 0.04, 0.035, 0.03] + [0.03] * 20
    # the average creeps up to the plateau by ever smaller steps: min_delta lets patience run out
    assert stops_at(plateau, smoothing=0.8) is not None
    assert stops_at([0.04, 0.04, 0.03, 0.03, 0.02, 0.02, 0.02, 0.02], smoothing=0.8) is not None


def test_smoothing_state_resumes() -> None:
    a = SmoothedEarlyStopping(monitor="m", mode="max", patience=3, smoothing=0.5)
    a._evaluate_stopping_criteria(torch.tensor(0.2))
    b = SmoothedEarlyStopping(monitor="m", mode="max", patience=3, smoothing=0.5)
    b.load_state_dict(a.state_dict())
    b._evaluate_stopping_criteria(torch.tensor(0.4))
    assert b.smoothed is not None and float(b.smoothed) == pytest.approx(0.3)


def test_smoothing_out_of_range_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"callbacks\.early_stopping\.smoothing"):
        SmoothedEarlyStopping(monitor="m", smoothing=1.0)


class _Tiny(L.LightningModule):
    """One weight, one batch: just enough for Lightning to save a checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        return self.layer(batch[0]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader[tuple[Tensor, ...]]:
        return DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=2)


def fit_one_epoch(dirpath: Path, ckpt_path: Path | None = None, max_epochs: int = 1) -> None:
    checkpoint = ResumableCheckpoint(
        dirpath=dirpath, filename="epoch_{epoch:03d}", save_last=True, auto_insert_metric_name=False
    )
    trainer = L.Trainer(
        max_epochs=max_epochs,
        callbacks=[checkpoint],
        logger=False,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Tiny(), ckpt_path=ckpt_path)


def test_checkpoints_are_written_whole_beside_their_final_name(tmp_path: Path) -> None:
    fit_one_epoch(tmp_path / "checkpoints")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "epoch_000.ckpt", weights_only=False)["epoch"] == 0


@pytest.mark.parametrize("how", ["link", "move"])
def test_a_run_dir_reached_by_another_path_keeps_one_last_ckpt_and_its_best(tmp_path: Path, how: str) -> None:
    """A run dir reached through a link, or moved, is the same run: no ``last-v1.ckpt``, best still tracked."""
    first = tmp_path / "first"
    fit_one_epoch(first / "checkpoints")
    if how == "link":
        (tmp_path / "second").symlink_to(first)
    else:
        first.rename(tmp_path / "second")
    folder = tmp_path / "second" / "checkpoints"
    fit_one_epoch(folder, ckpt_path=folder / "last.ckpt", max_epochs=2)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_001.ckpt", "last.ckpt"]
    state = torch.load(folder / "last.ckpt", weights_only=False)
    assert state["epoch"] == 1
    (saved,) = (value for key, value in state["callbacks"].items() if key.startswith("ResumableCheckpoint"))
    assert Path(saved["best_model_path"]).name == "epoch_001.ckpt"
    assert Path(saved["best_model_path"]).resolve().parent == folder.resolve()


def test_a_full_disk_while_checkpointing_leaves_no_partial_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write_bytes = Path.write_bytes

    def disk_fills_half_way(self: Path, data: Any) -> int:
        real_write_bytes(self, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", disk_fills_half_way)
    folder = tmp_path / "checkpoints"
    with pytest.raises(WriteError) as err:
        fit_one_epoch(folder)
    assert str(err.value) == f"{folder / 'epoch_000.ckpt'}: cannot write (No space left on device)"
    assert list(tmp_path.rglob("*")) == []  # no truncated epoch_000.ckpt, no temporary, not even their folder
    with pytest.raises(SystemExit) as exit_:
        run_entry_point(lambda: fit_one_epoch(folder))
    assert exit_.value.code == f"error: {folder / 'epoch_000.ckpt'}: cannot write (No space left on device)"
