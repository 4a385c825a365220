"""Lightning callbacks of our own."""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor

from recsys_attn.atomic import write_atomic


class EpochTimer(L.Callback):
    """Wall-clock seconds of each epoch's training and of its validation pass, kept apart.

    The durations travel in checkpoints so a resumed run reports every epoch it ran; they are restored
    only when fitting, so testing the best checkpoint after fit does not roll them back.
    """

    def __init__(self) -> None:
        self.durations: list[float] = []
        """Training seconds per epoch (validation excluded)."""
        self.val_durations: list[float] = []
        """Seconds per validation pass during fit."""
        self._mark = 0.0
        self._train_s = 0.0
        self._val_start = 0.0
        self._stage: str | None = None
        self._val_logged = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stage = stage  # Lightning calls setup before it restores callback states

    def _now(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":  # kernels run asynchronously: wait for the last ones
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark, self._train_s = self._now(pl_module), 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._val_start = self._now(pl_module)
            self._train_s += self._val_start - self._mark

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._mark = self._now(pl_module)
            self.val_durations.append(self._mark - self._val_start)
            self._val_logged = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.durations.append(self._train_s + self._now(pl_module) - self._mark)
        pl_module.log("time/epoch_s", self.durations[-1], on_epoch=True, sync_dist=False, rank_zero_only=True)
        if not self._val_logged:  # Lightning allows no logging in on_validation_end
            pl_module.log("time/val_s", self.val_durations[-1], on_epoch=True, sync_dist=False, rank_zero_only=True)
            self._val_logged = True

    @property
    def median(self) -> float:
        """Median training seconds per epoch."""
        return statistics.median(self.durations) if self.durations else float("nan")

    @property
    def val_median(self) -> float:
        """Median seconds per validation pass."""
        return statistics.median(self.val_durations) if self.val_durations else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {"durations": self.durations, "val_durations": self.val_durations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._stage not in (None, "fit"):
            return
        self.durations = list(state_dict.get("durations", []))
        self.val_durations = list(state_dict.get("val_durations", []))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint whole or not at all: a temporary file in its own folder, synced, renamed (``write_atomic``).

    Lightning's default stages the file in the system temp folder and moves it into place, which across
    file systems is a copy onto the final name: a full disk left a truncated ``epoch_000.ckpt``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()  # torch's own file writer reports a full disk as a RuntimeError, not an OSError
        torch.save(checkpoint, buffer)
        write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


class ResumableCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that keeps tracking the best model when a run resumes into a new run directory.

    Lightning drops the best score and path when ``dirpath`` changed since the checkpoint was written,
    so a resumed run would test its own best instead of the overall best. Files of the earlier run are
    referenced, never deleted. ``last.ckpt`` is the state after every epoch, so resuming from it never
    repeats training and evaluating it scores the final model. Checkpoints are written atomically
    (``AtomicCheckpointIO``) unless the trainer was given a checkpoint IO of its own.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_dir = state_dict.get("dirpath")
        if saved_dir is not None and self.dirpath is not None and _same_folder(state_dict, self.dirpath):
            state_dict = _moved_to(state_dict, self.dirpath)
        super().load_state_dict(state_dict)
        if state_dict.get("dirpath") != self.dirpath:
            self.best_model_score = state_dict.get("best_model_score")
            self.best_model_path = state_dict.get("best_model_path", "")
            self.best_k_models = dict(state_dict.get("best_k_models", {}))
            self.kth_best_model_path = state_dict.get("kth_best_model_path", "")
            self.kth_value = state_dict.get("kth_value", self.kth_value)

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        if self.dirpath is not None and self.save_last is True:  # never ``last-v1.ckpt``: one last, overwritten
            self.last_model_path = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refresh ``last.ckpt`` after every epoch (Lightning only does when it saved a new best)."""
        super().on_train_epoch_end(trainer, pl_module)
        skip = bool(getattr(trainer, "fast_dev_run", False)) or trainer.sanity_checking or trainer.state.fn != "fit"
        if self.save_last and not skip and getattr(self, "_last_written_step", None) != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self.dirpath is not None and Path(filepath).resolve().parent == Path(self.dirpath).resolve():
            super()._remove_checkpoint(trainer, filepath)


def _same_folder(state: dict[str, Any], dirpath: str | Path) -> bool:
    """Whether a checkpoint callback's saved state was written in ``dirpath``, reached by another path.

    Either both paths name one folder (symbolic links), or the run directory was moved: the saved folder
    is gone and ``dirpath`` holds the saved best checkpoint under the same file name.
    """
    saved = Path(state["dirpath"])
    if saved.resolve() == Path(dirpath).resolve():
        return True
    best = state.get("best_model_path") or ""
    moved = not saved.exists() and bool(best) and Path(best).parent == saved
    return moved and (Path(dirpath) / Path(best).name).exists()


def _moved_to(state: dict[str, Any], dirpath: str | Path) -> dict[str, Any]:
    """``state`` with every checkpoint path of its own folder rewritten into ``dirpath``."""
    saved = Path(state["dirpath"])

    def here(path: Any) -> Any:
        return str(Path(dirpath) / Path(path).name) if path and Path(path).parent == saved else path

    moved = {key: here(state.get(key)) for key in ("best_model_path", "kth_best_model_path", "last_model_path")}
    best_k = {here(path): score for path, score in state.get("best_k_models", {}).items()}
    return {**state, **moved, "best_k_models": best_k, "dirpath": str(dirpath)}


class SmoothedEarlyStopping(EarlyStopping):
    """Early stopping on an exponential moving average of the monitored metric.

    A noisy, slowly rising curve (BERT4Rec's Cloze training) dips below its best for a while before
    rising again; patience counted on the raw value cuts such a run while it still learns. Here the
    patience counts validations without improvement of ``ema = smoothing * ema + (1 - smoothing) * value``
    (``smoothing=0`` is plain early stopping). The model kept is still the best raw checkpoint.
    """

    def __init__(self, *args: Any, smoothing: float = 0.0, **kwargs: Any) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"callbacks.early_stopping.smoothing: expected a value in [0, 1), got {smoothing!r}")
        super().__init__(*args, **kwargs)
        self.smoothing = smoothing
        self.smoothed: Tensor | None = None

    def _evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        if bool(torch.isfinite(current)):
            prev = self.smoothed
            self.smoothed = (
                current if prev is None else self.smoothing * prev.to(current) + (1 - self.smoothing) * current
            )
            current = self.smoothed
        return super()._evaluate_stopping_criteria(current)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "smoothed": self.smoothed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.smoothed = state_dict.get("smoothed")


class StopCheckpoint(L.Callback):
    """When a run is stopped from outside (SIGTERM, Ctrl-C), make sure a ``last.ckpt`` to resume from exists.

    ``ResumableCheckpoint`` writes ``last.ckpt`` at the end of every epoch; a stop inside a later epoch keeps
    that one (resuming runs the interrupted epoch again, exactly). A stop inside the first epoch, before any
    ``last.ckpt``, saves the state it reached there (Lightning resumes from that step).
    """

    def __init__(self) -> None:
        self.saved: Path | None = None
        """The checkpoint to resume from after a stop (None until a stop)."""
        self.signal: str | None = None
        """``SIGTERM`` or ``Ctrl-C`` once stopped."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self.signal = "SIGTERM"
        elif isinstance(exception, KeyboardInterrupt):
            self.signal = "Ctrl-C"
        else:
            return
        checkpoint = trainer.checkpoint_callback
        dirpath = getattr(checkpoint, "dirpath", None)
        last = str(getattr(checkpoint, "last_model_path", "") or "")
        if last and Path(last).is_file():
            self.saved = Path(last)
        elif dirpath is not None:
            self.saved = Path(dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"
            trainer.save_checkpoint(self.saved)
