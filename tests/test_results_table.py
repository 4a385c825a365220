"""benchmarks/results_table.py: the README's results tables follow benchmarks/reproduce.csv."""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def rt() -> ModuleType:
    return benchmark_module("results_table")


def write_csv(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def row(preset: str, seed: int, test: str, overrides: str = "", converged: str = "yes", **rest: str) -> dict[str, str]:
    return {
        "preset": preset,
        "seed": str(seed),
        "overrides": overrides,
        "converged": converged,
        "s_per_epoch": "40.00",
        "machine": "Linux-6.18-x86_64-with-glibc2.36, 2 cores",
        "test_ndcg@10": test,
        "published_ndcg@10": "0.0531",
        **rest,
    }


def test_the_readme_tables_are_the_csvs(rt: ModuleType) -> None:
    assert rt.main(["--check"]) == 0, "README.md and benchmarks/reproduce.csv disagree: make results-table"


def test_a_changed_csv_row_fails_the_check_until_the_readme_is_rewritten(rt: ModuleType, tmp_path: Path) -> None:
    columns = ("preset", "seed", "overrides", "converged", "s_per_epoch", "machine", "test_ndcg@10")
    table = write_csv(tmp_path / "r.csv", [row("sasrec_beauty-s3rec", 42, "0.0546")], (*columns, "published_ndcg@10"))
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\n{rt.BEGIN}\n{rt.END}\n\nafter\n")
    assert rt.main(["--check", "--csv", str(table), "--readme", str(readme)]) == 1
    assert rt.main(["--csv", str(table), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "| `sasrec_beauty-s3rec` | — | 42 | 0.0546 |" in text and text.endswith(f"{rt.END}\n\nafter\n")
    assert rt.main(["--check", "--csv", str(table), "--readme", str(readme)]) == 0
    write_csv(table, [row("sasrec_beauty-s3rec", 42, "0.0547")], (*columns, "published_ndcg@10"))
    assert rt.main(["--check", "--csv", str(table), "--readme", str(readme)]) == 1


def test_seeds_are_averaged_and_the_latest_converged_row_of_a_seed_counts(rt: ModuleType, tmp_path: Path) -> None:
    rows = [
        row("sasrec_beauty-s3rec", 42, "0.0500", **{"test_ndcg@10_lo": "0.0480", "test_ndcg@10_hi": "0.0520"}),
        row("sasrec_beauty-s3rec", 42, "0.0540", **{"test_ndcg@10_lo": "0.0520", "test_ndcg@10_hi": "0.0560"}),
        # not converged (a time limit, placed on a GPU): does not replace the converged row of its seed
        row("sasrec_beauty-s3rec", 42, "0.0900", "trainer=gpu trainer.max_time=00:00:01:00", "no (max_time)"),
        row("sasrec_beauty-s3rec", 1, "0.0560", **{"test_ndcg@10_lo": "0.0530", "test_ndcg@10_hi": "0.0590"}),
        row("sasrec_beauty-s3rec", 2, "0.0550"),  # recorded before the interval columns
        # an override the preset already sets is no setting: the same configuration
        row("sasrec_beauty-s3rec", 3, "0.0570", "model.max_len=50"),
        row("sasrec_beauty-s3rec", 42, "0.0600", "features=beauty-s3rec"),
        row("sasrec_ml-1m", 42, "0.1800"),
    ]
    table = write_csv(tmp_path / "r.csv", rows, tuple(rows[0]))
    groups = rt.grouped(table)
    assert list(groups) == ["beauty-s3rec", "ml-1m"]
    ids_only = groups["beauty-s3rec"][rt.Config("sasrec_beauty-s3rec", ())]
    assert [(r.seed, r.test) for r in ids_only] == [("42", 0.054), ("1", 0.056), ("2", 0.055), ("3", 0.057)]
    assert list(groups["beauty-s3rec"]) == [
        rt.Config("sasrec_beauty-s3rec", ()),
        rt.Config("sasrec_beauty-s3rec", ("features=beauty-s3rec",)),
    ]
    text = rt.tables(table)
    line = next(x for x in text.splitlines() if x.startswith("| `sasrec_beauty-s3rec` | — |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2:6] == [
        "42, 1, 2, 3",
        "0.0555",
        "0.0540–0.0570 (sd 0.0013)",
        "42: 0.0520–0.0560; 1: 0.0530–0.0590; 2: not recorded; 3: not recorded",
    ]
    assert cells[7:] == ["40.00, 40.00, 40.00, 40.00", "2 cores", "0.0531"]  # s/epoch: one per seed
    beauty = text.split("**ml-1m**")[0]
    assert beauty.index("features=beauty-s3rec") < beauty.index("| `sasrec_beauty-s3rec` | — |")  # best first


LRUREC = (
    "model.positions=rotary model.dropout=0.2 model.weight_decay=0.01 data.window_stride=200 "
    "trainer.gradient_clip_val=5 callbacks.early_stopping.patience=30"
)


def test_overrides_that_compose_another_preset_are_that_preset(rt: ModuleType, tmp_path: Path) -> None:
    other_cpu = "Linux-6.18-x86_64-with-glibc2.36, 2 cores, AMD EPYC, AVX2"
    rows = [
        row("sasrec_ml-1m", 42, "0.1880", LRUREC),
        row("sasrec_ml-1m", 1, "0.1900", f"{LRUREC} trainer=gpu", machine=other_cpu),
        row("sasrec_ml-1m_lrurec", 2, "0.1890"),
        row("sasrec_ml-1m", 42, "0.1840", "model.positions=rotary"),  # only part of it: not that preset
        row("hstu_ml-1m", 42, "0.1715", "data=ml-1m model.time_buckets=0"),
    ]
    table = write_csv(tmp_path / "r.csv", rows, tuple(rows[1]))
    configs = rt.grouped(table)["ml-1m"]
    assert [r.seed for r in configs[rt.Config("sasrec_ml-1m_lrurec", ())]] == ["42", "1", "2"]
    assert rt.Config("sasrec_ml-1m", ("model.positions=rotary",)) in configs
    lines = {x.split(" | ")[0] + x.split(" | ")[1]: x for x in rt.tables(table).splitlines() if x.startswith("| `")}
    cells = [c.strip() for c in lines["| `sasrec_ml-1m_lrurec`—"].strip("|").split("|")]
    assert cells[2:4] == ["42, 1, 2", "0.1890"]
    # the preset's own published figure (LRURec's), not the 2023 one its rows recorded under sasrec_ml-1m
    assert cells[-1] == "0.1902"
    assert cells[-2] == "42: 2 cores; 1: 2 cores, AMD EPYC, AVX2; 2: 2 cores"  # which seed ran where
    hstu = [c.strip() for c in lines["| `hstu_ml-1m``data=ml-1m` `model.time_buckets=0`"].strip("|").split("|")]
    assert hstu[-1] == "0.1720 (another protocol: context)"


def test_a_readme_without_its_markers_fails_in_one_line(rt: ModuleType) -> None:
    with pytest.raises(SystemExit, match="needs one"):
        rt.with_tables("# no markers\n", "")
