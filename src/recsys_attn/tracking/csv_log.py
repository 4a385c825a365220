"""A CSV logger whose ``metrics.csv`` survives a resumed run (Lightning's deletes it when the folder exists).

Lightning's ``CSVLogger`` removes an existing ``metrics.csv`` when it opens its folder, so a run resumed from
``last.ckpt`` into its own run directory (``make reproduce``, ``ckpt_path=...``) kept only the epochs after
the resume, silently. Here the file is continued instead: at the first row this process logs, the rows of
epochs from that row's epoch on are dropped (a partly logged epoch, cut off by the interruption, is logged
again by the resumed run) and the earlier ones kept; a run that starts at epoch 0 starts a fresh file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from recsys_attn.atomic import write_atomic


class ContinuingWriter(ExperimentWriter):
    """Lightning's writer, continuing an existing ``metrics.csv`` up to the epoch the new rows start at."""

    def __init__(self, log_dir: str) -> None:
        self._first_row = True  # set before the parent's __init__, which calls _check_log_dir_exists
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # called by __init__: keep the file, take over its columns
        path = Path(self.metrics_file_path)
        if path.is_file():
            with path.open(newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self._first_row:
            self._first_row = False
            self.keep_before(metrics_dict.get("epoch"))
        super().log_metrics(metrics_dict, step)

    def keep_before(self, epoch: float | None) -> None:
        """Rewrite ``metrics.csv`` with only its rows of epochs before ``epoch`` (none: all rows go)."""
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        start = float(epoch) if epoch is not None else 0.0
        kept = [row for row in rows if row.get("epoch") not in (None, "") and float(row["epoch"]) < start]

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)

        if kept:
            write_atomic(path, write)
        else:  # a fresh start: the next save writes a new file with its own header
            path.unlink()
            self.metrics_keys = []


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` (same arguments and files) that continues ``metrics.csv`` across a resume."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ContinuingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ContinuingWriter(log_dir=self.log_dir)
        return self._experiment  # type: ignore[return-value]
