"""metrics.csv of a resumed run keeps the epochs before the resume (Lightning's CSVLogger deleted them)."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from recsys_attn.tracking.csv_log import ResumableCSVLogger


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.w(batch).pow(2).mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/loss", self.w(batch).pow(2).mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(run: Path, max_epochs: int, ckpt_path: str | None = None) -> None:
    data = DataLoader(torch.randn(8, 2), batch_size=4)  # type: ignore[arg-type]
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=ResumableCSVLogger(save_dir=run, name="csv", version="", flush_logs_every_n_steps=1),
        callbacks=[ModelCheckpoint(dirpath=run / "checkpoints", save_last=True, save_top_k=-1)],
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), train_dataloaders=data, val_dataloaders=data, ckpt_path=ckpt_path)


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def epochs_with(run: Path, key: str) -> list[int]:
    return [int(float(r["epoch"])) for r in rows(run) if r.get(key)]


def test_a_resumed_run_continues_metrics_csv(tmp_path: Path) -> None:
    fit(tmp_path, max_epochs=2)
    assert epochs_with(tmp_path, "val/loss") == [0, 1]
    fit(tmp_path, max_epochs=4, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))
    assert epochs_with(tmp_path, "val/loss") == [0, 1, 2, 3]  # Lightning's own logger leaves [2, 3]
    assert epochs_with(tmp_path, "train/loss_epoch") == [0, 1, 2, 3]  # each epoch once


def test_rows_of_an_interrupted_epoch_are_replaced_not_repeated(tmp_path: Path) -> None:
    fit(tmp_path, max_epochs=2)
    path = tmp_path / "csv" / "metrics.csv"
    partial = [r for r in rows(tmp_path) if r["epoch"] == "1"]  # as if epoch 1 was cut off after logging
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(partial[0])).writerows(partial)
    (tmp_path / "checkpoints" / "last.ckpt").unlink()
    (ckpt,) = (tmp_path / "checkpoints").glob("epoch=0*.ckpt")  # the epoch 0 checkpoint: resume at epoch 1
    fit(tmp_path, max_epochs=2, ckpt_path=str(ckpt))
    assert epochs_with(tmp_path, "val/loss") == [0, 1]
    assert epochs_with(tmp_path, "train/loss_epoch") == [0, 1]


def test_a_fresh_run_in_the_same_folder_starts_a_fresh_file(tmp_path: Path) -> None:
    fit(tmp_path, max_epochs=2)
    fit(tmp_path, max_epochs=1)  # no checkpoint: starts at epoch 0
    assert epochs_with(tmp_path, "val/loss") == [0]
