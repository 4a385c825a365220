"""Comparing runs: intervals, paired tests, refusals, and the ``compare`` CLI (real runs under ``slow``)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch

from recsys_attn.errors import WriteError
from recsys_attn.evaluation.comparison import compare, to_markdown
from recsys_attn.evaluation.outputs import PER_USER_FILE
from recsys_attn.evaluation.plots import INTERVALS_FILE, SEGMENTS_FILE, intervals_figure
from recsys_attn.evaluation.report import compare_runs
from recsys_attn.evaluation.runs import Run, load_run
from tests.conftest import run_cli
from tests.evaluation.test_labels import fake_run as fake_run_dir

PROTOCOL = {"data": "toy", "preparation": {}, "split": {"kind": "leave_one_out"}, "max_eval_users": None}


def fake_run(name: str, ndcg: torch.Tensor, users: int | None = None, protocol: dict | None = None) -> Run:
    n = users or ndcg.numel()
    rows = pl.DataFrame(
        {
            "split": ["test"] * n,
            "user_id": list(range(1, n + 1)),
            "history_len": [5] * n,
            "target_id": [3] * n,
            "rank": [0] * n,
            "ndcg@10": ndcg[:n].double().numpy(),
        }
    )
    return Run(name, Path(name), "", {}, rows, PROTOCOL if protocol is None else protocol)


def test_identical_runs_differ_by_nothing_and_a_better_one_is_significant() -> None:
    gen = torch.Generator().manual_seed(0)
    base = (torch.rand(300, generator=gen) < 0.3).double()
    better = torch.where(torch.rand(300, generator=gen) < 0.3, 1.0, base)  # hits kept, more added
    table = compare([fake_run("a", base), fake_run("b", base.clone()), fake_run("c", better)], n_samples=999)
    rows = {r["run"]: r for r in table.iter_rows(named=True)}
    assert rows["b"]["diff_ndcg@10"] == 0.0 and rows["b"]["p_ndcg@10"] == 1.0
    assert rows["c"]["diff_ndcg@10"] == pytest.approx(float((better - base).mean()))
    assert rows["c"]["p_ndcg@10"] < 0.01 and rows["c"]["significant_ndcg@10"]
    assert rows["a"]["ndcg@10_lo"] < rows["a"]["ndcg@10"] < rows["a"]["ndcg@10_hi"]
    md = to_markdown(table, ["ndcg@10"], "test", 999, 0.05)
    assert "| c | yes |" in md and "*" in md.split("| c | yes |")[1]


def test_runs_on_other_users_or_protocols_are_not_paired() -> None:
    base = torch.ones(50)
    other_protocol = {**PROTOCOL, "split": {"kind": "temporal"}}
    table = compare(
        [fake_run("a", base), fake_run("fewer", base, users=40), fake_run("temporal", base, protocol=other_protocol)],
        n_samples=99,
    )
    paired = dict(zip(table["run"], table["paired"], strict=True))
    assert paired["fewer"] == "different users or targets"
    assert paired["temporal"] == "different protocol (split)"
    assert table.filter(pl.col("run") == "fewer")["diff_ndcg@10"][0] is None
    assert "refused: different protocol (split)" in to_markdown(table, ["ndcg@10"], "test", 99, 0.05)


def write_run(path: Path, ndcg: list[float], segments: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    fake_run(path.name, torch.tensor(ndcg)).per_user.write_parquet(path / PER_USER_FILE)
    metrics = {"test/ndcg@10": sum(ndcg) / len(ndcg)}
    if segments:
        metrics |= {f"segments/test/history_{s}/ndcg@10": v for s, v in (("short", 0.1), ("long", 0.3))}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_the_report_names_runs_by_what_differs(tmp_path: Path) -> None:
    sasrec = write_run(fake_run_dir(tmp_path / "2026-12-03_19-21-34_531185", ["model=sasrec"]), [1, 0, 0.5, 0])
    bert = fake_run_dir(tmp_path / "2026-12-03_19-25-02_004211", ["model=bert4rec"], model="bert4rec")
    write_run(bert, [1, 1, 0.5, 0])
    md = compare_runs([str(sasrec), str(bert)], tmp_path / "out", samples=99)
    table = pl.read_csv(tmp_path / "out" / "comparison.csv")
    assert table["run"].to_list() == ["sasrec", "bert4rec"]
    assert table["path"].to_list() == [str(sasrec), str(bert)]  # the directories stay in the table
    text = md.read_text()
    assert "| sasrec | model=sasrec |" in text and "## Against the baseline sasrec" in text
    assert f"| bert4rec | {bert} |" in text and "2026-12-03" not in text.split("## Runs")[0]
    fig = intervals_figure(table, ["ndcg@10"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["sasrec", "bert4rec"]


def test_a_report_replaces_the_earlier_one_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("matplotlib")
    a = write_run(tmp_path / "a", [1.0, 0.0, 0.5, 0.0], segments=True)
    b = write_run(tmp_path / "b", [1.0, 1.0, 0.5, 0.0], segments=True)
    out = tmp_path / "out"
    compare_runs([str(a), str(b)], out, samples=99)
    before = listing(out)
    assert sorted(before) == ["comparison.csv", "comparison.md", INTERVALS_FILE, SEGMENTS_FILE]
    write_text = Path.write_text

    def full_at_the_markdown(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.name.startswith(".comparison.md"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_at_the_markdown)
    write_run(a, [1.0, 0.0, 0.5, 0.0])  # no segments now: the report would lose a plot ...
    write_run(b, [0.0, 0.0, 0.5, 0.0])  # ... and another result
    with pytest.raises(WriteError, match=r"comparison\.md: cannot write \(No space left on device\)$"):
        compare_runs([str(a), str(b)], out, samples=99)
    assert listing(out) == before  # every file of the earlier report, byte for byte, and no temporary
    monkeypatch.setattr(Path, "write_text", write_text)
    compare_runs([str(a), str(b)], out, samples=99)
    after = listing(out)
    assert sorted(after) == ["comparison.csv", "comparison.md", INTERVALS_FILE]  # no plot of the earlier runs left
    assert after["comparison.csv"] != before["comparison.csv"]


@pytest.mark.slow
def test_cli_compares_run_and_sweep_directories(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [1.0, 0.0, 0.5, 0.0])
    write_run(tmp_path / "sweep" / "0", [1.0, 1.0, 0.5, 0.0])
    write_run(tmp_path / "sweep" / "1", [0.0, 0.0, 0.5, 0.0])
    out = tmp_path / "out"
    proc = run_cli("recsys_attn.compare", f"runs=[{a},{tmp_path / 'sweep'}]", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pl.read_csv(out / "comparison.csv")
    assert table["run"].to_list() == ["a", "0", "1"]
    assert table["diff_ndcg@10"].to_list() == pytest.approx([None, 0.25, -0.25], nan_ok=True)
    assert "## Against the baseline a" in (out / "comparison.md").read_text()
    assert load_run(a, "test").accuracy_metrics == ["ndcg@10"]
    proc = run_cli("recsys_attn.compare", f"runs=[{tmp_path / 'nowhere'}]", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: runs[0]: no directory")


SASREC = (
    "data=ml-100k",
    "trainer.accelerator=cpu",
    "model.max_len=20",
    "model.hidden_size=32",
    "model.lr=5e-3",
    "trainer.max_epochs=5",
    "data.batch_size=64",
)


@pytest.mark.slow
def test_seeds_are_not_significant_and_sasrec_beats_popularity(
    tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    runs = {"pop": ["data=ml-100k", "model=popularity"], "s42": [*SASREC, "seed=42"], "s7": [*SASREC, "seed=7"]}
    for name, overrides in runs.items():  # about 70 s per SASRec run on a loaded 2-core CPU
        proc = run_cli(
            "recsys_attn.train",
            f"hydra.run.dir={tmp_path / name}",
            f"paths.cache_dir={shared_cache}",
            *overrides,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    def compared(*names: str) -> list[dict]:  # one row per run, in the order given (labels name what differs)
        out = tmp_path / "_vs_".join(names)
        dirs = ",".join(str(tmp_path / n) for n in names)
        proc = run_cli("recsys_attn.compare", f"runs=[{dirs}]", f"hydra.run.dir={out}", "samples=2000", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return list(pl.read_csv(out / "comparison.csv").iter_rows(named=True))

    seeds = compared("s42", "s7")[1]
    assert seeds["paired"] == "yes" and seeds["p_ndcg@10"] > 0.05, seeds
    versus = compared("pop", "s42")[1]
    assert versus["paired"] == "yes" and versus["diff_ndcg@10"] > 0 and versus["p_ndcg@10"] < 0.01, versus
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "pop_vs_s42" / "intervals.png").is_file()
    assert (tmp_path / "pop_vs_s42" / "segments_ndcg@10.png").is_file()


def test_a_finished_sweep_compares_its_jobs(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from recsys_attn.evaluation.sweep_compare import SweepCompare

    sweep = tmp_path / "sweep"
    write_run(sweep / "0", [1.0, 0.0, 0.5, 0.0])
    write_run(sweep / "1", [1.0, 1.0, 0.5, 0.0])
    (sweep / "2").mkdir()  # a failed job: no per-user rows, left out
    callback = SweepCompare(samples=99)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    callback.on_multirun_start(config)
    callback.on_multirun_end(config)
    assert pl.read_csv(sweep / "comparison.csv")["run"].to_list() == [0, 1]
    assert (sweep / "comparison.md").is_file()
