"""benchmarks/reproduce.py: a preset trained in its own run directory, resumed, recorded (tables in tmp only)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest
from omegaconf import OmegaConf

from recsys_attn.evaluation.outputs import KEY_COLUMNS
from recsys_attn.evaluation.report import compare_runs
from tests.conftest import REPO_ROOT, benchmark_module

SCRIPT = REPO_ROOT / "benchmarks" / "reproduce.py"
# SASRec-CE preset settings on ml-100k, tiny: a few steps per epoch, 100 evaluated users.
TINY = (
    "data=ml-100k",
    "trainer.accelerator=cpu",
    "model.max_len=10",
    "model.hidden_size=16",
    "data.batch_size=64",
    "trainer.limit_train_batches=4",
    "data.max_eval_users=100",
    "logger=none",
)
SCORES = ("val_ndcg@10", "test_ndcg@10", "test_hr@10")


@pytest.fixture(scope="module")
def rp() -> ModuleType:
    return benchmark_module("reproduce")


@pytest.fixture(scope="module")
def real_tables() -> tuple[str, bool]:
    """benchmarks/REPRODUCE.md before the tests, and whether reproduce.csv existed: the tests must not touch them."""
    benchmarks = REPO_ROOT / "benchmarks"
    return (benchmarks / "REPRODUCE.md").read_text(), (benchmarks / "reproduce.csv").exists()


def reproduce_cli(tmp: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python benchmarks/reproduce.py sasrec_ml-1m <TINY> <args>`` from ``tmp``, tables in ``tmp/results``."""
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "sasrec_ml-1m",
            *TINY,
            f"paths.cache_dir={cache}",
            "--results-dir",
            "results",
            *args,
        ],
        cwd=tmp,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def csv_rows(tmp: Path) -> list[dict[str, str]]:
    with (tmp / "results" / "reproduce.csv").open() as fh:
        return list(csv.DictReader(fh))


def the_run_dir(tmp: Path, seed: int = 42) -> Path:
    """The one run directory reproduce.py made under ``tmp``/logs (TINY's settings name it by their digest)."""
    (run_dir,) = (tmp / "logs" / "reproduce").glob(f"sasrec_ml-1m+*/seed{seed}")
    return run_dir


def scores(run_dir: Path) -> dict[str, float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}


@pytest.mark.slow
def test_a_run_cut_short_resumes_to_the_uninterrupted_result(
    tmp_path: Path, real_data_dir: Path, shared_cache: Path, real_tables: tuple[str, bool]
) -> None:
    patient = "callbacks.early_stopping.patience=100"
    reproduce_cli(tmp_path, shared_cache, patient, "trainer.max_epochs=2")  # "killed" after 2 epochs
    resumed = reproduce_cli(tmp_path, shared_cache, patient, "trainer.max_epochs=4")
    run_dir = the_run_dir(tmp_path)  # the fixed run directory of the preset, its settings and seed
    assert f"ckpt_path='{run_dir / 'checkpoints' / 'last.ckpt'}'" in resumed.stderr
    reproduce_cli(tmp_path, shared_cache, patient, "trainer.max_epochs=4", "--run-dir", "straight")

    first, second, straight = csv_rows(tmp_path)
    assert (first["epochs"], first["converged"]) == ("2", "no (max_epochs)")
    assert (second["epochs"], second["converged"]) == ("4", "no (max_epochs)")
    assert [second[k] for k in SCORES] == [straight[k] for k in SCORES]
    assert scores(run_dir) == scores(tmp_path / "straight")  # every val/* and test/* metric, exactly

    ledger = json.loads((run_dir / "reproduce_state.json").read_text())["invocations"]
    assert [i["status"] for i in ledger] == ["completed", "completed"]
    wall_s = sum(i["fit_s"] for i in ledger)  # both invocations' time/fit_s
    assert (second["wall_s"], second["s_per_epoch"]) == (f"{wall_s:.1f}", f"{wall_s / 4:.2f}")
    assert (second["published_ndcg@10"], second["source"].split(":")[0]) == (
        "0.1821",
        "Klenitskiy & Vasilev, RecSys 2023",
    )
    log = (run_dir / "train.log").read_text()
    assert "epoch 3/4 · train " in log and "to max_epochs" in log  # the progress line reaches train.log
    assert "epoch 1/4 · " not in log  # the second invocation carried on from epoch 3

    again = reproduce_cli(tmp_path, shared_cache, patient, "trainer.max_epochs=4")  # finished: record only
    assert "recording it again without training" in again.stderr and "recsys_attn.train" not in again.stderr
    assert len(json.loads((run_dir / "reproduce_state.json").read_text())["invocations"]) == 2
    assert csv_rows(tmp_path)[-1] == second

    markdown = (tmp_path / "results" / "REPRODUCE.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| `sasrec_ml-1m`")]
    assert len(table) == 4 and table[1].split(" | ")[6] == "no (max_epochs)"
    title = (REPO_ROOT / "benchmarks" / "REPRODUCE.md").read_text().split("## Runs")[0]
    assert markdown.startswith(title)  # the real file's title, as the script writes it
    assert (REPO_ROOT / "benchmarks" / "REPRODUCE.md").read_text() == real_tables[0]
    assert (REPO_ROOT / "benchmarks" / "reproduce.csv").exists() == real_tables[1]


@pytest.mark.slow
def test_early_stopping_counts_as_converged_and_is_not_trained_again(
    tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    # lr 1e-30: updates vanish below float32 resolution, so every epoch scores the same and patience 1
    # stops after epoch 2 of 4, an epoch that is not a new best;
    # last.ckpt (written after every epoch) must still record the stop, or the run would be resumed
    stop_early = ("callbacks.early_stopping.patience=1", "model.lr=1e-30")
    reproduce_cli(tmp_path, shared_cache, *stop_early, "trainer.max_epochs=4")
    again = reproduce_cli(tmp_path, shared_cache, *stop_early, "trainer.max_epochs=4")
    assert "recording it again without training" in again.stderr

    run_dir = the_run_dir(tmp_path)
    (run_dir / "metrics.json").unlink()  # as if killed while testing: test the best checkpoint, train nothing
    tested = reproduce_cli(tmp_path, shared_cache, *stop_early, "trainer.max_epochs=4")
    assert tested.stderr.count("trainer.max_epochs=4 trainer.max_epochs=2") == 1
    assert "epoch 3/4" not in (run_dir / "train.log").read_text()
    rows = csv_rows(tmp_path)
    assert [(r["epochs"], r["converged"]) for r in rows] == [("2", "yes")] * 3
    assert [r["test_ndcg@10"] for r in rows[1:]] == [rows[0]["test_ndcg@10"]] * 2


def test_a_killed_invocation_counts_until_its_last_checkpoint(rp: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(b"")
    os.utime(last, (1000.0, 1000.0))
    ledger = [
        rp.Invocation(started=100.0, commit="a", machine="m", overrides=[], status="completed", fit_s=50.0),
        rp.Invocation(started=900.0, commit="b", machine="m", overrides=[]),  # killed 100 s after it started
    ]
    rp.settle(ledger, tmp_path)
    assert [(i.status, i.fit_s) for i in ledger] == [("completed", 50.0), ("stopped", 100.0)]

    (tmp_path / "metrics.json").write_text(json.dumps({"time/fit_s": 7.5}))
    os.utime(tmp_path / "metrics.json", (1300.0, 1300.0))
    ledger += [rp.Invocation(started=1200.0, commit="b", machine="m", overrides=[])]  # this one finished
    ledger += [rp.Invocation(started=1400.0, commit="b", machine="m", overrides=[])]  # killed before a checkpoint
    rp.settle(ledger, tmp_path)
    assert [(i.status, i.fit_s) for i in ledger[2:]] == [("completed", 7.5), ("stopped", 0.0)]

    row = rp.make_row("sasrec_ml-1m", 42, [], {"train/epochs": 4.0, "test/ndcg@10": 0.2}, ledger, "yes")
    assert (row["wall_s"], row["s_per_epoch"], row["commit"]) == ("157.5", "39.38", "a + b")


def test_convergence_labels(rp: ModuleType) -> None:
    assert rp.convergence(True, 37, 300) == "yes"
    assert rp.convergence(False, 300, 300) == "no (max_epochs)"
    assert rp.convergence(False, 31, 300) == "no (interrupted)"  # e.g. trainer.max_time
    assert rp.convergence(False, 31, float("inf")) == "no (interrupted)"


def test_rows_go_to_both_tables_and_unknown_presets_have_no_published_figure(rp: ModuleType, tmp_path: Path) -> None:
    ledger = [rp.Invocation(0.0, "abc", "Linux, 2 cores", [], status="completed", fit_s=90.0)]
    metrics = {"train/epochs": 3.0, "val/ndcg@10": 0.1, "test/ndcg@10": 0.09, "test/hr@10": 0.2}
    known = rp.make_row("bert4rec_ml-1m", 42, ["trainer=gpu"], metrics, ledger, "yes")
    unknown = rp.make_row("my_preset", 3, [], metrics, ledger, "no (max_epochs)")
    assert (known["published_ndcg@10"], unknown["published_ndcg@10"], unknown["source"]) == ("0.1537", "", "")
    assert (known["seed"], known["overrides"], unknown["seed"], unknown["overrides"]) == ("42", "trainer=gpu", "3", "")
    rp.record(known, tmp_path)
    rp.record(unknown, tmp_path)

    with (tmp_path / "reproduce.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == rp.COLUMNS
        assert list(reader) == [known, unknown]  # the machine's comma survives
    rows = [line for line in (tmp_path / "REPRODUCE.md").read_text().splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `bert4rec_ml-1m` `trainer=gpu` | 42 | abc | Linux, 2 cores |")
    assert rows[0].endswith("| 0.1537 | " + known["source"] + " | -0.0637 (-41.4%) |")
    assert rows[1].endswith("| 0.0900 | 0.2000 |  |  |  |")


def test_run_dir_and_checkpoint_belong_to_the_script(rp: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"hydra\.run\.dir is set by reproduce\.py"):
        rp.main(["sasrec_ml-1m", f"hydra.run.dir={tmp_path}", "--results-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"ckpt_path is set by reproduce\.py"):
        rp.main(["sasrec_ml-1m", "ckpt_path=x.ckpt", "--results-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="Could not find 'experiment/nope'"):
        rp.main(["nope", "--results-dir", str(tmp_path)])


def test_each_set_of_settings_and_each_seed_has_its_own_run(rp: ModuleType) -> None:
    assert rp.run_name("sasrec_ml-1m", []) == "sasrec_ml-1m"
    assert rp.run_name("sasrec_ml-1m", ["features=ml-1m"]) == "sasrec_ml-1m+features=ml-1m"
    # where, how and how long it runs do not make another run: it may be carried on elsewhere
    place = ["trainer=gpu", "trainer.max_time=00:00:10:00", "trainer.max_epochs=400", "logger=wandb", "paths.log_dir=x"]
    assert rp.run_name("sasrec_ml-1m", ["features=ml-1m", *place]) == "sasrec_ml-1m+features=ml-1m"
    # the order of the settings changes nothing; long or path-like settings become a digest
    a, b = ["model.lr=0.01", "model.dropout=0.2"], ["model.dropout=0.2", "model.lr=0.01"]
    assert rp.run_name("p", a) == rp.run_name("p", b) == "p+model.dropout=0.2+model.lr=0.01"
    long = rp.run_name("p", [f"model.x{i}=1" for i in range(20)])
    assert long.startswith("p+") and len(long) == 12 and long != rp.run_name("p", [f"model.x{i}=2" for i in range(20)])
    assert "/" not in rp.run_name("p", ["features.path=/data/f.parquet"])
    assert rp.without_seed(["seed=3", "model.lr=1", "+seed=4", "++seed=5"]) == ["model.lr=1"]


@pytest.mark.slow
def test_a_seed_is_a_run_of_its_own_and_a_column_of_the_row(
    tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    reproduce_cli(tmp_path, shared_cache, "trainer.max_epochs=1")
    reproduce_cli(tmp_path, shared_cache, "trainer.max_epochs=1", "seed=7")
    rows = csv_rows(tmp_path)
    assert [r["seed"] for r in rows] == ["42", "7"]
    assert (
        rows[0]["overrides"]
        == rows[1]["overrides"]
        == " ".join([*TINY, f"paths.cache_dir={shared_cache}", "trainer.max_epochs=1"])
    )
    assert the_run_dir(tmp_path, 42).parent == the_run_dir(tmp_path, 7).parent  # one set of settings, two seeds
    assert rows[0]["test_ndcg@10"] != rows[1]["test_ndcg@10"]  # the seed reached the training

    # each row's evidence is kept beside the tables: a paired test over them works once the run dirs are gone
    kept = [tmp_path / "results" / "runs" / the_run_dir(tmp_path).parent.name / f"seed{s}" for s in (42, 7)]
    for seed, path in zip((42, 7), kept, strict=True):  # slimmed to the key columns: the metrics follow from the rank
        original = pl.read_parquet(the_run_dir(tmp_path, seed) / "per_user.parquet")
        assert pl.read_parquet(path / "per_user.parquet").equals(original.select(KEY_COLUMNS))
    shutil.rmtree(tmp_path / "logs")
    report = compare_runs([str(p) for p in kept], tmp_path / "cmp", samples=200)
    table = pl.read_csv(report.with_suffix(".csv"))
    assert table.height == 2
    assert table["ndcg@10"].to_list() == pytest.approx([float(r["test_ndcg@10"]) for r in rows], abs=5e-5)


def test_the_archive_replaces_an_older_copy_whole(rp: ModuleType, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    full = pl.DataFrame({"split": ["test"], "user_id": [1], "history_len": [3], "target_id": [7], "rank": [2]})
    full.with_columns(pl.lit(1.0).alias("hr@5")).write_parquet(run / "per_user.parquet")
    (run / ".hydra" / "config.yaml").write_text("a: 1\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"big")
    dest = tmp_path / "kept" / "p" / "seed1"
    rp.archive(run, dest, {"commit": "abc"})
    (run / ".hydra" / "config.yaml").write_text("a: 2\n")
    (dest.with_name("seed1.new")).mkdir()  # left by a copy killed half-way
    rp.archive(run, dest, {"commit": "def"})
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        ".hydra/config.yaml",
        "metrics.json",
        "per_user.parquet",
        "row.json",
    ]  # no checkpoint; the row it backs
    assert (dest / ".hydra" / "config.yaml").read_text() == "a: 2\n"
    assert pl.read_parquet(dest / "per_user.parquet").equals(full)  # ranks only: compare derives the metrics
    assert json.loads((dest / "row.json").read_text()) == {"commit": "def"}
    assert [p.name for p in dest.parent.iterdir()] == ["seed1"]  # no temporary, no old copy left beside it


def test_a_run_without_what_compare_reads_is_not_kept(rp: ModuleType, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    dest = tmp_path / "kept" / "seed1"
    with pytest.raises(SystemExit, match=r"per_user.parquet, .hydra/config.yaml"):
        rp.archive(run, dest, {})
    assert not dest.exists()


@pytest.mark.parametrize("path", ["/logs/reproduce/p+features=ml-1m/seed42", "/my runs/it's here/seed1"])
def test_a_run_directory_reaches_hydra_whole(rp: ModuleType, path: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (override,) = OverridesParser.create().parse_overrides([f"hydra.run.dir={rp.hydra_quoted(path)}"])
    assert override.value() == path


def test_a_run_of_other_settings_is_neither_carried_on_nor_recorded_as_todays(rp: ModuleType, tmp_path: Path) -> None:
    """A run directory whose saved config trains other settings than the preset composes now (a preset changed
    since) is refused, naming the settings, before anything is trained or recorded."""
    today = rp.compose_preset("sasrec_ml-1m", [])
    assert rp.settings_changed(today, rp.compose_preset("sasrec_ml-1m", ["trainer.max_epochs=3"])) == []
    old = rp.compose_preset("sasrec_ml-1m", ["model.positions=from_start", "data.batch_size=64"])
    assert rp.settings_changed(old, today) == [
        f"data.batch_size: 64 -> {today.data.batch_size!r}",
        f"model.positions: 'from_start' -> {today.model.positions!r}",
    ]
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(old))
    (run_dir / "metrics.json").write_text("{}")  # a finished run: it would be recorded again
    refused = r"other settings than experiment=sasrec_ml-1m.*model\.positions: 'from_start'"
    with pytest.raises(SystemExit, match=refused):
        rp.main(["sasrec_ml-1m", "--run-dir", str(run_dir), "--results-dir", str(tmp_path / "results")])
    assert not (tmp_path / "results").exists()


KEPT_ROWS = sorted((REPO_ROOT / "benchmarks" / "runs").glob("*/seed*/row.json"))


@pytest.mark.parametrize("row_file", KEPT_ROWS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_a_kept_run_is_labelled_with_what_it_trained(rp: ModuleType, row_file: Path) -> None:
    """Each run kept in benchmarks/runs: its row's preset and overrides compose today to the settings its saved config
    trained, it lies under the run name of those settings, and reproduce.csv holds the same row. A preset that takes
    a new setting must re-base the overrides of the rows recorded before (and move their kept runs), or the README's
    tables and ``compare`` would label an old run with the preset's new settings."""
    from recsys_attn.evaluation.runs import read_settings

    row = json.loads(row_file.read_text())
    overrides = row["overrides"].split()
    saved = read_settings(row_file.parent).config
    assert saved is not None, f"{row_file.parent}: no .hydra/config.yaml"
    now = rp.compose_preset(row["preset"], [*overrides, f"seed={row['seed']}"])
    assert rp.settings_changed(saved, now) == []
    assert row_file.parent.parent.name == rp.run_name(row["preset"], overrides)
    with (REPO_ROOT / "benchmarks" / "reproduce.csv").open(newline="") as fh:
        recorded = [{k: r[k] for k in row} for r in csv.DictReader(fh)]
    assert row in recorded


def test_the_resumed_command_parses_where_run_directories_hold_equals_signs(
    rp: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    run_dir = tmp_path / "sasrec_ml-1m+model.dropout=0.2+model.positions=rotary" / "seed42"  # a readable run name
    resume = run_dir / "checkpoints" / "last.ckpt"
    seen: list[list[str]] = []

    class Child:  # the training process, not started: its command is what is checked
        def __init__(self, cmd: list[str]) -> None:
            seen.append(cmd)

        def __enter__(self) -> Child:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(rp.subprocess, "Popen", Child)
    assert rp.run_train("sasrec_ml-1m", ["model.dropout=0.2"], run_dir, resume) == 0
    (cmd,) = seen
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(cmd[3:])}
    assert parsed["ckpt_path"] == str(resume) and parsed["hydra.run.dir"] == str(run_dir)
