"""benchmarks/gpu.csv: the time-to-target reading of a run's CSV log and the rows bench_train.py appends."""

import csv
import math
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, benchmark_module
from tests.test_benchmarks import run_benchmark

gpu_csv = benchmark_module("gpu_csv")


def write_log(path: Path, epochs: list[tuple[float, float | None]]) -> Path:
    """A Lightning CSV log: per epoch a validation line (when there was one) and a training-time line."""
    lines = ["epoch,step,time/epoch_s,val/ndcg@10,val/hr@10"]
    for epoch, (seconds, ndcg) in enumerate(epochs):
        if ndcg is not None:
            lines.append(f"{epoch},{10 * epoch + 9},,{ndcg},0.3")
        lines.append(f"{epoch},{10 * epoch + 9},{seconds},,")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_time_to_target_sums_training_seconds_to_the_first_epoch_that_reached_it(tmp_path: Path) -> None:
    # validation every 2nd epoch (epochs 1, 3, 5): the target is first reached at epoch 3, after 4 epochs of training
    log = write_log(tmp_path / "m.csv", [(2.0, None), (3.0, 0.15), (2.5, None), (4.0, 0.181), (1.0, None), (1.0, 0.19)])
    assert gpu_csv.train_seconds_to_target(log, 0.18) == pytest.approx(11.5)
    assert gpu_csv.train_seconds_to_target(log, 0.15) == pytest.approx(5.0)  # reached exactly counts
    assert math.isnan(gpu_csv.train_seconds_to_target(log, 0.2))


def test_time_to_target_names_the_log_that_has_no_validation(tmp_path: Path) -> None:
    log = tmp_path / "m.csv"
    log.write_text("epoch,step,time/epoch_s\n0,9,2.0\n")
    with pytest.raises(ValueError, match=r"m\.csv.*val/ndcg@10"):
        gpu_csv.train_seconds_to_target(log, 0.18)


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {name: "x" for name in gpu_csv.COLUMNS}
    return {**base, "s_per_epoch_train": 0.123456, "seconds_to_target": math.nan, **changes}


def test_rows_append_under_one_header_with_nan_left_empty(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "gpu.csv"
    gpu_csv.append_row(path, row(model="SASRec"))
    gpu_csv.append_row(path, row(model="BERT4Rec", seconds_to_target=12.3))
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == gpu_csv.COLUMNS
    assert [r["model"] for r in rows] == ["SASRec", "BERT4Rec"]
    assert [r["seconds_to_target"] for r in rows] == ["", "12.3000"]
    assert rows[0]["s_per_epoch_train"] == "0.1235"


def test_a_row_with_other_columns_or_a_file_with_another_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gpu.csv"
    bad = row()
    del bad["commit"]
    with pytest.raises(ValueError, match="commit"):
        gpu_csv.append_row(path, bad)
    path.write_text("date,gpu\n")
    with pytest.raises(ValueError, match="header"):
        gpu_csv.append_row(path, row())


def test_the_committed_gpu_csv_has_the_columns() -> None:
    with (REPO_ROOT / "benchmarks" / "gpu.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(tuple(r) == gpu_csv.COLUMNS for r in rows)
    assert all(r["gpu"] and r["model"] and r["preset"] and float(r["test_ndcg@10"]) > 0 for r in rows)


@pytest.mark.slow
def test_bench_train_appends_the_row_of_its_run(real_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu.csv"
    tiny = ["data=ml-100k", "trainer=cpu", "model.max_len=10", "model.hidden_size=8", "callbacks=default"]
    args = ["--epochs", "3", "--no-record", "--target", "0.0", "--gpu-csv", str(out), "--", *tiny]
    run_benchmark("bench_train.py", args, tmp_path)
    with out.open() as fh:
        (got,) = list(csv.DictReader(fh))
    assert (got["model"], got["preset"], got["batch"], got["epochs"]) == ("SASRec", "", "128", "3")
    assert got["gpu"] == "none" and got["target_ndcg@10"] == "0.0000"
    # a target of 0 is reached by the first validation: the first epoch's training time
    assert 0 < float(got["seconds_to_target"]) <= 3 * float(got["s_per_epoch_train"])
    assert float(got["test_ndcg@10"]) > 0 and "--" not in got["command"]
