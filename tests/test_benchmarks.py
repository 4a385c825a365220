"""The benchmark scripts run end to end (tiny settings, nothing recorded)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, benchmark_module


def run_benchmark(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/<script>`` with ``args`` in ``cwd``; it must exit 0 (its stderr's end says why not)."""
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_bench_precision_reports_both_precisions_and_the_speedup(real_data_dir: Path, tmp_path: Path) -> None:
    results = REPO_ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text()
    overrides = ["model=bert4rec", "data=ml-100k", "trainer=cpu", "model.max_len=10", "model.hidden_size=8"]
    proc = run_benchmark("bench_precision.py", ["--no-record", "--epochs", "1", "--", *overrides], tmp_path)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 4, proc.stdout[-2000:]
    assert "trainer.precision=32-true" in rows[0] and "trainer.precision=bf16-mixed" in rows[1]
    assert "| 32-true |" in rows[2] and rows[2].endswith("| 1.00x |")
    assert "| bf16-mixed |" in rows[3] and rows[3].endswith("x |")
    assert results.read_text() == before  # --no-record leaves the results alone


@pytest.mark.slow
def test_bench_features_times_each_model_with_and_without_features(real_data_dir: Path, tmp_path: Path) -> None:
    results = REPO_ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text()
    tiny = ["--data", "ml-100k", "--features", "ml-100k", "--epochs", "1", "--rounds", "1", "--no-record"]
    models = ["--models", "sasrec", "gru4rec", "--fusion", "concat", "--", "model.hidden_size=8", "model.max_len=10"]
    proc = run_benchmark("bench_features.py", [*tiny, *models], tmp_path)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[2] for row in rows] == ["sasrec", "gru4rec"], proc.stdout[-2000:]
    assert all("`features=ml-100k model.feature_fusion=concat`" in row for row in rows)
    ratios = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(ratios) == {"sasrec", "gru4rec"}
    assert all(r["time_ratio"] > 0 and r["memory_ratio"] > 0 for r in ratios.values())
    assert results.read_text() == before  # --no-record leaves the results alone


def test_rows_go_to_the_end_of_their_own_table() -> None:
    with_rows = benchmark_module("bench_train").with_rows
    text = "# R\n\n## A\n\n| h |\n|---|\n| a1 |\n\nnote\n\n## B\n\n| h |\n|---|\n| b1 |\n"
    assert with_rows(text, "| a2 |\n", "## A", "unused") == text.replace("| a1 |\n", "| a1 |\n| a2 |\n")
    assert with_rows(text, "| b2 |\n", "## B", "unused") == text + "| b2 |\n"
    assert with_rows(text, "| c1 |\n", "## C", "\n## C\n\n| h |\n|---|\n") == text + "\n## C\n\n| h |\n|---|\n| c1 |\n"


def test_bench_catalog_times_the_losses_and_ranking(tmp_path: Path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_catalog.py"
    args = ["--items", "5000", "--positions", "64", "--users", "8", "--repeats", "1", "--device", "cpu", "--no-record"]
    proc = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[3].split(" ")[0] for r in rows] == ["ce", "sampled_softmax", "full-ranking"]
    assert "(one logits block)" in rows[0]  # 5,001 x 64 logits fit under ce_max_logits


@pytest.mark.slow
def test_bench_serve_reports_memory_and_speed_per_size(real_data_dir: Path, tmp_path: Path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_serve.py"
    results = REPO_ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text()
    args = ["--users", "200", "300", "--threads", "1", "--no-record"]
    proc = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [r[3] for r in rows] == ["200", "300"] and all(r[4].startswith("jsonl, ") for r in rows)
    assert all(float(r[5]) > 0 and float(r[8].replace(",", "")) > 0 for r in rows)  # peak RSS MiB, users/s
    assert [r[9] for r in rows] == ["1", "1"]  # fewer users than one batch: one row group
    assert results.read_text() == before  # --no-record leaves the results alone


def test_gpu_compare_metrics_fails_only_when_equal_metrics_were_expected(tmp_path: Path) -> None:
    script = REPO_ROOT / "benchmarks" / "gpu" / "compare_metrics.py"
    results = REPO_ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text()
    runs = {"one": 0.25, "same": 0.25, "other": 0.5}
    for name, ndcg in runs.items():
        (tmp_path / name).mkdir()
        metrics = {"test/ndcg@10": ndcg, "test/users": 3.0, "time/epoch_s_median": ndcg * 4}  # time/* not compared
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics))

    def compare(two: str, *flags: str) -> subprocess.CompletedProcess[str]:
        args = [str(tmp_path / "one"), str(tmp_path / two), "--no-record", *flags]
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=False)

    same = compare("same", "--expect-equal")
    assert same.returncode == 0, same.stderr[-2000:]
    assert "| 3 / 3 | 2 | 0 | n/a | 1.000 / 1.000 | 0.2500 / 0.2500 |" in same.stdout
    other = compare("other", "--expect-equal")
    assert other.returncode == 1 and "test/ndcg@10: 0.25 vs 0.5" in other.stdout
    assert compare("other").returncode == 0  # differences reported, not failed, unless expected equal
    assert results.read_text() == before


def test_catalog_agreement_is_the_largest_relative_difference_of_loss_and_gradients() -> None:
    """The check bench_catalog runs on liger-kernel (GPU only), here on the renumbering it uses: cross-entropy over
    ``items[1:]`` with targets - 1 is the project's ``ce`` (row 0 excluded); a scaled loss is caught."""
    import torch
    import torch.nn.functional as F

    agreement = benchmark_module("bench_catalog").agreement
    from recsys_attn.models.losses import LossContext, get_loss

    g = torch.Generator().manual_seed(0)
    items = (torch.randn(301, 16, generator=g) * 0.3).requires_grad_()  # [V, D]
    hidden = torch.randn(40, 16, generator=g).requires_grad_()  # [N, D]
    targets = torch.randint(1, 301, (40,), generator=g)  # [N]
    ours = lambda: get_loss("ce")(hidden, targets, items, LossContext(300))  # noqa: E731
    plain = lambda: F.cross_entropy(hidden @ items[1:].T, targets - 1)  # noqa: E731
    assert agreement(ours, plain, [hidden, items]) < 1e-5
    assert agreement(ours, lambda: plain() * 1.01, [hidden, items]) > 5e-3


def test_stopping_replays_a_curve_where_plain_patience_cuts_a_learning_run(tmp_path: Path) -> None:
    module = benchmark_module("stopping")
    read_curve, replay = module.read_curve, module.replay
    # Rises to 0.10 at epoch 5, one lucky spike, dips under it for 4 epochs, then climbs to 0.14 by epoch 20.
    curve = [0.02, 0.04, 0.06, 0.08, 0.10, 0.09, 0.095, 0.092, 0.098] + [0.10 + 0.004 * i for i in range(1, 12)]
    curve[4] = 0.11
    raw, smoothed = replay(curve, patience=4, smoothing=0.0), replay(curve, patience=4, smoothing=0.8)
    assert raw.stop == 9 and (raw.best_epoch, raw.best) == (5, 0.11)  # cut in the dip
    assert smoothed.stop is None and smoothed.best_epoch == 20  # runs on and keeps the later best
    log = tmp_path / "train.log"  # a log of two invocations: the resumed one repeats epoch 2
    log.write_text(
        "epoch 1/9 · train 1.0 s · val/ndcg@10 0.0100 (best 0.0100 @ epoch 1) · ETA 1s\n"
        "epoch 2/9 · train 1.0 s · val/ndcg@10 0.0200 (best 0.0200 @ epoch 2) · ETA 1s\n"
        "epoch 2/9 · train 1.0 s · val/ndcg@10 0.0250 (best 0.0250 @ epoch 2) · ETA 1s\n"
        "epoch 3/9 · train 1.0 s · val/ndcg@10 0.0300 (best 0.0300 @ epoch 3) · ETA 1s\n"
    )
    assert read_curve(log) == [0.01, 0.025, 0.03]
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(  # train validates the best checkpoint once more after the fit: epoch 2, not trained
        "epoch,step,train/loss_epoch,val/ndcg@10\n0,5,1.0,\n0,5,,0.01\n1,10,0.9,\n1,10,,0.02\n2,10,,0.02\n"
    )
    assert read_curve(metrics) == [0.01, 0.02]


def test_bench_history_tables_groups_as_ours_does(tmp_path: Path) -> None:
    """polars' streaming engine (and DuckDB, where installed) give our grouping, ours through its bucket path."""
    script = REPO_ROOT / "benchmarks" / "bench_history_tables.py"
    args = ["--rows", "20000", "--check", "--part-rows", "4000"]
    proc = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.splitlines()[-1])
    assert results["check @ 20000"] == {"same": True}
    assert results["ours @ 20000"]["rows"] == results["polars streaming @ 20000"]["rows"] == 20000


def test_bench_overhead_reports_the_three_ratios(tmp_path: Path) -> None:
    """The overhead benchmark runs the real train command and a plain loop and prints its ratios as JSON (no timing
    is asserted: speed is what the benchmark records, not what a test checks)."""
    script = REPO_ROOT / "benchmarks" / "bench_overhead.py"
    args = ["--models", "sasrec", "--epochs", "2", "--steps", "20", "--rounds", "2", "--no-record"]
    proc = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.splitlines()[-1])["sasrec"]
    assert {"step_ratio", "op_ratio", "val_ratio"} <= set(got)
    assert got["ours_ops_per_step"] > 0 and got["plain_ops_per_step"] > 0 and got["val_passes"] == 2.0
    assert got["rounds"] == 2.0 and got["step_ratio_min"] <= got["step_ratio"] <= got["step_ratio_max"]
    # a step splits into the batch (training step) and what comes between batches; medians: close, not equal
    assert 0 < got["ours_inside_ms"] < got["ours_step_ms"] and 0 < got["ours_between_ms"] < got["ours_step_ms"]
    # the diagnostic plain loop that builds each batch first: its step and its build, each timed
    assert got["plain_built_step_ms"] > 0 and got["plain_build_ms"] > 0
    built = got["plain_built_step_ms"] + got["plain_build_ms"]
    assert got["step_ratio_building"] == pytest.approx(got["ours_step_ms"] / built, rel=0.5)  # medians of pairs


def test_bench_scale_measures_preparation_and_an_epoch(tmp_path: Path) -> None:
    """The scale benchmark writes a synthetic log, prepares it and trains an epoch through the real commands."""
    script = REPO_ROOT / "benchmarks" / "bench_scale.py"
    args = ["--rows", "60000", "--no-record", "--train", "trainer.limit_train_batches=2", "model.max_len=20"]
    proc = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells = [c.strip() for c in proc.stdout.splitlines()[-1].strip("|").split("|")]
    assert cells[3:6] == ["60,000", "415", "26,744"]  # rows, users in ML-20M's proportion, items
    assert all(float(c) > 0 for c in cells[6:])  # prepare s and GiB, epoch s, train GiB
