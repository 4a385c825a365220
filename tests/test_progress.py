"""Progress on the console: the expected duration early, then a line per epoch (text, best across a resume)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.trainer.states import TrainerFn

from recsys_attn.tracking.progress import EpochBar, EpochProgress, format_duration


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "0s"), (41.3, "41s"), (245, "4m05s"), (3599, "1h00m"), (7858.4, "2h11m"), (float("nan"), "?")],
)
def test_durations_read_like_a_clock(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_trainer(
    epoch: int, value: float | None, rank_zero: bool = True, fn: str = TrainerFn.FITTING, **metrics: float
) -> Any:
    logged = {f"val/{k.replace('_at_', '@')}": torch.tensor(v) for k, v in metrics.items()}
    if value is not None:
        logged["val/ndcg@10"] = torch.tensor(value)
    return SimpleNamespace(
        current_epoch=epoch,
        max_epochs=200,
        num_training_batches=48,
        is_global_zero=rank_zero,
        sanity_checking=False,
        state=SimpleNamespace(fn=fn),
        callback_metrics=logged,
    )


def run_epoch(cb: EpochProgress, clock: FakeClock, trainer: Any, train_s: float, val_s: float | None) -> None:
    """The hooks of one epoch in Lightning's order; validation (when ``val_s`` is given) inside the epoch."""
    module: Any = SimpleNamespace(device=torch.device("cpu"))
    cb.on_train_epoch_start(trainer, module)
    clock.now += train_s
    if val_s is not None:
        cb.on_validation_start(trainer, module)
        clock.now += val_s
        cb.on_validation_end(trainer, module)
    cb.on_train_epoch_end(trainer, module)


def test_line_shows_training_time_metric_best_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cb = EpochProgress("val/ndcg@10", clock=clock)
    cb.load_state_dict({"best": 0.1301, "best_epoch": 9})  # as restored from a checkpoint
    with caplog.at_level(logging.INFO, logger="recsys_attn.tracking.progress"):
        run_epoch(cb, clock, fake_trainer(11, 0.1234), train_s=41.3, val_s=0.5)  # 41.8 s x 188 epochs left
    assert caplog.messages == [
        "epoch 12/200 · train 41.3 s · val/ndcg@10 0.1234 (best 0.1301 @ epoch 9) · elapsed 42s · "
        "ETA 2h11m to max_epochs"
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recsys_attn.tracking.progress"):
        run_epoch(cb, clock, fake_trainer(12, 0.1400), train_s=20.0, val_s=0.2)  # 20.2 s x 187: the first is warm-up
    assert caplog.messages == [
        "epoch 13/200 · train 20.0 s · val/ndcg@10 0.1400 (best 0.1400 @ epoch 13) · elapsed 1m02s · "
        "ETA 1h03m to max_epochs"
    ]


def test_eta_tracks_the_recent_epochs_not_the_slow_start() -> None:
    clock = FakeClock()
    cb = EpochProgress(clock=clock)
    for epoch, seconds in enumerate([98.0, 50.0, 44.0, 61.0, 47.0, 45.0, 46.0, 48.0]):
        run_epoch(cb, clock, fake_trainer(epoch, 0.1), train_s=seconds, val_s=None)
    assert cb.epoch_estimate() == 47.0  # the median of the last five; the 98 s warm-up epoch is gone


def test_epoch_without_validation_says_so(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cb = EpochProgress(clock=clock)
    with caplog.at_level(logging.INFO, logger="recsys_attn.tracking.progress"):
        run_epoch(cb, clock, fake_trainer(0, 0.5), train_s=3.0, val_s=None)  # a stale value is not shown
    assert caplog.messages == [
        "epoch 1/200 · train 3.0 s · val/ndcg@10 not validated · elapsed 3s · ETA 9m57s to max_epochs"
    ]


def test_line_shows_the_other_validation_metrics_asked_for(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cb = EpochProgress(also=("val/hr@10", "val/mrr", "val/absent"), clock=clock)
    with caplog.at_level(logging.INFO, logger="recsys_attn.tracking.progress"):
        run_epoch(cb, clock, fake_trainer(0, 0.1, hr_at_10=0.25, mrr=0.08), train_s=2.0, val_s=1.0)
    assert caplog.messages == [
        "epoch 1/200 · train 2.0 s · val/ndcg@10 0.1000 (best 0.1000 @ epoch 1) · val/hr@10 0.2500 · "
        "val/mrr 0.0800 · elapsed 3s · ETA 9m57s to max_epochs"
    ]


def test_expected_duration_is_logged_once_after_the_first_batches(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cb = EpochProgress(estimate_after=10, clock=clock)
    trainer, module = fake_trainer(0, None), SimpleNamespace(device=torch.device("cpu"))
    cb.on_train_epoch_start(trainer, module)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="recsys_attn.tracking.progress"):
        for batch_idx in range(14):
            clock.now += 30.0 if batch_idx == 0 else 2.0  # a slow start-up, then 2 s a batch: 96 s an epoch
            cb.on_train_batch_end(trainer, module, None, None, batch_idx)  # type: ignore[arg-type]
    assert caplog.messages == [
        "expected: about 1m36s per training epoch of 48 batches, 5h20m for 200 epochs "
        "(measured on 10 batches after the first; validation comes on top, early stopping may end sooner; "
        "each epoch's line re-estimates)"
    ]


def test_expected_duration_of_a_one_batch_epoch(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cb = EpochProgress(estimate_after=10, clock=clock)
    trainer, module = fake_trainer(0, None), SimpleNamespace(device=torch.device("cpu"))
    trainer.num_training_batches = 1
    cb.on_train_epoch_start(trainer, module)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="recsys_attn.tracking.progress"):
        clock.now += 3.0
        cb.on_train_batch_end(trainer, module, None, None, 0)  # type: ignore[arg-type]
    (message,) = caplog.messages
    assert message.startswith("expected: about 3s per training epoch of 1 batches, 10m00s for 200 epochs "), message
    assert "(measured on its only batch; " in message


def test_expected_duration_of_short_epochs_and_of_resumed_or_unlimited_runs() -> None:
    cb = EpochProgress()
    assert cb.expected(3.0, 3, 3, max_epochs=2, done=1).startswith(
        "expected: about 3s per training epoch of 3 batches, 3s for 1 epoch ("
    )
    assert ", no epoch limit (" in cb.expected(3.0, 3, 3, max_epochs=-1, done=0)
    with pytest.raises(ValueError, match="estimate_after"):
        EpochProgress(estimate_after=0)


def test_only_rank_zero_logs(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="recsys_attn.tracking.progress"):
        run_epoch(EpochProgress(clock=clock), clock, fake_trainer(0, 0.1, rank_zero=False), 1.0, 1.0)
    assert caplog.messages == []


def test_validation_after_fit_and_min_mode_do_not_confuse_the_best() -> None:
    clock = FakeClock()
    cb = EpochProgress("val/loss", mode="min", clock=clock)
    trainer = fake_trainer(0, None)
    trainer.callback_metrics = {"val/loss": torch.tensor(2.0)}
    run_epoch(cb, clock, trainer, 1.0, 1.0)
    trainer.callback_metrics = {"val/loss": torch.tensor(3.0)}
    trainer.current_epoch = 1
    run_epoch(cb, clock, trainer, 1.0, 1.0)
    assert (cb.best, cb.best_epoch) == (2.0, 1)
    trainer.state.fn, trainer.callback_metrics = TrainerFn.VALIDATING, {"val/loss": torch.tensor(0.5)}
    cb.on_validation_end(trainer, SimpleNamespace(device=torch.device("cpu")))  # type: ignore[arg-type]
    assert (cb.best, cb.best_epoch) == (2.0, 1)
    with pytest.raises(ValueError, match="mode"):
        EpochProgress(mode="maximum")


VALUES = [0.2, 0.3, 0.25, 0.1]
"""val/ndcg@10 logged by ``Scripted`` at epochs 1..4."""


class Scripted(L.LightningModule):
    """A linear model whose validation logs ``VALUES[epoch]`` as val/ndcg@10."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/ndcg@10", VALUES[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 4)), batch_size=4)


def fit(tmp_path: Path, max_epochs: int, ckpt_path: str | None = None) -> None:
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[EpochProgress(), ModelCheckpoint(dirpath=tmp_path, save_last=True)],
        default_root_dir=tmp_path,
    )
    trainer.fit(Scripted(), ckpt_path=ckpt_path)


def test_real_training_logs_each_epoch_and_keeps_the_best_across_a_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="recsys_attn.tracking.progress"):
        fit(tmp_path, max_epochs=3)
        fit(tmp_path, max_epochs=4, ckpt_path=str(tmp_path / "last.ckpt"))  # a fresh callback, restored
    messages = [r.getMessage() for r in caplog.records if r.name == "recsys_attn.tracking.progress"]
    lines = [m for m in messages if m.startswith("epoch ")]
    assert [line.split(" · ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3", "epoch 4/4"]
    assert [line.split(" · ")[2] for line in lines] == [
        "val/ndcg@10 0.2000 (best 0.2000 @ epoch 1)",
        "val/ndcg@10 0.3000 (best 0.3000 @ epoch 2)",
        "val/ndcg@10 0.2500 (best 0.3000 @ epoch 2)",
        "val/ndcg@10 0.1000 (best 0.3000 @ epoch 2)",
    ]
    assert lines[-1].endswith("· ETA 0s to max_epochs")
    expected = [m for m in messages if m.startswith("expected: ")]
    assert len(expected) == 2  # once per process: the first run and the resumed one
    assert "per training epoch of 2 batches, " in expected[0] and " for 3 epochs (" in expected[0]
    assert " for 1 epoch (" in expected[1]  # resumed after 3 of 4 epochs


def test_the_bar_updates_at_most_every_fifth_of_a_second_and_at_an_epochs_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's bar reads its metrics after every batch (a wait for a GPU); ours at most five times a second."""
    updated: list[int] = []
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", lambda self, t, m, o, b, idx: updated.append(idx))
    monkeypatch.setattr(EpochBar, "total_train_batches", property(lambda self: 100))
    clock = iter([10.0, 10.05, 10.1, 10.25, 10.3, 10.31])
    monkeypatch.setattr("recsys_attn.tracking.progress.time.monotonic", lambda: next(clock))
    bar = EpochBar()
    for idx in (0, 1, 2, 3, 4, 99):
        bar.on_train_batch_end(None, None, None, None, idx)  # type: ignore[arg-type]
    assert updated == [0, 3, 99]  # the first, the one 0.25 s later, the epoch's last
