"""``python -m recsys_attn.ope`` end to end on a tiny checkpoint: outputs, exact agreement, errors."""

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
from recsys_attn.jobs.ope import CTR_FILE, REPORT_FILE, write_outputs
from tests.conftest import run_cli
from tests.tolerances import tol


def cli(module: str, tmp: Path, ckpt: Path, cache: Path, run: str, *overrides: str) -> tuple[int, str]:
    proc = run_cli(
        module,
        f"ckpt_path={ckpt}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={tmp / run}",
        "device=cpu",
        *overrides,
        cwd=tmp,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_the_report_and_the_ctr_table_appear_together_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at ``ope.json`` leaves the earlier run's pair whole: no new CTR table beside an old report."""
    write_outputs(tmp_path, {"ips": 0.5}, pl.DataFrame({"item_id": [1], "ctr": [0.5]}))
    old = (tmp_path / REPORT_FILE).read_text(), (tmp_path / CTR_FILE).read_bytes()
    write_text = Path.write_text

    def full_at_the_report(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.name.startswith(f".{REPORT_FILE}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_at_the_report)
    with pytest.raises(WriteError, match=rf"{REPORT_FILE}: cannot write \(No space left on device\)$"):
        write_outputs(tmp_path, {"ips": 0.9}, pl.DataFrame({"item_id": [2, 3], "ctr": [0.9, 0.1]}))
    assert sorted(p.name for p in tmp_path.iterdir()) == [REPORT_FILE, CTR_FILE]
    assert ((tmp_path / REPORT_FILE).read_text(), (tmp_path / CTR_FILE).read_bytes()) == old


@pytest.fixture
def greedy_log(tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path) -> Path:
    """The checkpoint's own top-4 of 300 users as a served log: propensity 1, made-up 0/1 rewards."""
    code, out = cli("recsys_attn.predict", tmp_path, tiny_checkpoint, shared_cache, "pred", "k=4", "max_users=300")
    assert code == 0, out[-3000:]
    recs = pl.read_parquet(tmp_path / "pred" / "recommendations.parquet")
    reward = ((pl.col("user_id") * 31 + pl.col("item_id") * 17) % 4 == 0).cast(pl.Int8)
    log = recs.drop("score").with_columns(propensity=pl.lit(1.0), reward=reward)
    log.write_csv(tmp_path / "served.csv")
    return tmp_path / "served.csv"


@pytest.mark.slow
def test_the_logging_policy_as_target_gets_the_logged_value_exactly(
    tmp_path: Path, greedy_log: Path, tiny_checkpoint: Path, shared_cache: Path
) -> None:
    """Greedy target on a greedy log: every weight is 1, so each estimator equals the logged mean reward.

    This holds only if each user's history, the id maps and the ranks line up with what ``predict`` served.
    """
    code, out = cli("recsys_attn.ope", tmp_path, tiny_checkpoint, shared_cache, "ope", f"logged={greedy_log}")
    assert code == 0, out[-3000:]
    report = json.loads((tmp_path / "ope" / "ope.json").read_text())
    log = pl.read_csv(greedy_log)
    logged_value = log["reward"].sum() / log["user_id"].n_unique()
    for name in ("logged", "ips", "snips", "dr"):
        assert set(report[name]) == {"value", "lo", "hi"}
        assert report[name]["value"] == pytest.approx(logged_value), name
        assert report[name]["lo"] < report[name]["value"] < report[name]["hi"], name
    assert report["policy"] == {"name": "greedy"} and report["slates"] == 300 and report["slots"] == 1200
    assert report["diagnostics"]["mean_weight_by_rank"] == pytest.approx([1.0] * 4)
    ctr = pl.read_parquet(tmp_path / "ope" / "served_ctr.parquet")
    assert ctr.columns == ["item_id", "impressions", "clicks", "ctr", "ctr_rank_adjusted"]
    assert ctr["impressions"].sum() == 1200 and ctr["clicks"].sum() == log["reward"].sum()
    expected = log.group_by("item_id").agg(pl.col("reward").mean().alias("want"))
    joined = ctr.join(expected, on="item_id")
    assert joined.height == ctr.height  # both ratios of the same counts in float64: a rounding each
    assert (joined["ctr"] - joined["want"]).abs().max() <= tol(torch.float64, 2)  # type: ignore[operator]
    assert "ips" in out and "ope.json" in out


@pytest.mark.slow
def test_another_target_policy_and_a_malformed_log(
    tmp_path: Path, greedy_log: Path, tiny_checkpoint: Path, shared_cache: Path
) -> None:
    common = (tmp_path, tiny_checkpoint, shared_cache)
    code, out = cli("recsys_attn.ope", *common, "temp", f"logged={greedy_log}", "policy=temperature", "temperature=2")
    assert code == 0, out[-3000:]
    report = json.loads((tmp_path / "temp" / "ope.json").read_text())
    assert report["policy"] == {"name": "temperature", "temperature": 2.0}
    # a greedy log cannot show a temperature policy's other slates: the weights say so
    assert report["diagnostics"]["mean_weight_by_rank"][0] < 0.5
    assert report["ips"]["value"] < report["logged"]["value"]

    lines = greedy_log.read_text().splitlines()
    cells = lines[5].split(",")
    cells[3] = "0"  # propensity of the fifth served item
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines[:5], ",".join(cells), *lines[6:]]) + "\n")
    assert lines[0].split(",")[3] == "propensity"
    code, out = cli("recsys_attn.ope", *common, "bad_run", f"logged={bad}")
    assert code != 0
    assert out.strip().splitlines()[-1] == f"error: {bad}, line 6: propensity 0.0 is not in (0, 1] " + (
        "(the logging policy's probability)"
    )
    assert not (tmp_path / "bad_run").exists()  # nothing written
    code, out = cli("recsys_attn.ope", *common, "h", f"logged={greedy_log}", "histories=new.parquet")
    assert code != 0 and out.strip().splitlines()[-1].startswith("error: histories: no file at ")


@pytest.mark.slow
def test_new_users_from_a_history_file_are_scored_as_predict_served_them(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path, real_data_dir: Path
) -> None:
    """Greedy target on a greedy log of users the data does not hold: every estimator equals the logged value.

    Exact only if ope reads each history (unknown items dropped; a user with none scored by popularity) as
    predict did when it served the slate.
    """
    log = pl.read_csv(real_data_dir / "ml-1m" / "ml-1m.txt", separator=" ", has_header=False, new_columns=["u", "i"])
    firsts = log.filter(pl.col("u") <= 200).group_by("u", maintain_order=True).agg(pl.col("i").head(30))
    lines = [json.dumps({"user_id": 500_000 + u, "items": [*items, 99_999]}) for u, items in firsts.iter_rows()]
    lines.insert(7, json.dumps({"user_id": 7, "items": [99_998]}))  # known id, nothing the model knows: fallback
    histories = tmp_path / "new.jsonl"
    histories.write_text("\n".join(lines) + "\n")
    common = (tmp_path, tiny_checkpoint, shared_cache)
    code, out = cli("recsys_attn.predict", *common, "pred", "k=4", f"histories={histories}")
    assert code == 0, out[-3000:]
    recs = pl.read_parquet(tmp_path / "pred" / "recommendations.parquet")
    assert recs.filter(pl.col("fallback"))["user_id"].unique().to_list() == [7]
    reward = ((pl.col("user_id") * 31 + pl.col("item_id") * 17) % 3 == 0).cast(pl.Int8)
    served = recs.drop("score").with_columns(propensity=pl.lit(1.0), reward=reward).sample(fraction=1.0, seed=3)
    served.write_csv(tmp_path / "served.csv")  # rows shuffled: ope must not rely on the log's order

    code, out = cli("recsys_attn.ope", *common, "ope", "logged=served.csv", f"histories={histories}")
    assert code == 0, out[-3000:]
    report = json.loads((tmp_path / "ope" / "ope.json").read_text())
    assert report["slates"] == 201 and report["histories"] == str(histories.resolve())
    logged_value = served["reward"].sum() / 201
    assert report["diagnostics"]["mean_weight_by_rank"] == pytest.approx([1.0] * 4)
    for name in ("logged", "ips", "snips", "dr"):
        assert report[name]["value"] == pytest.approx(logged_value), name

    stranger = served.head(4).with_columns(user_id=pl.lit(123_456, dtype=served["user_id"].dtype))
    stranger.vstack(served).write_csv(tmp_path / "stranger.csv")
    code, out = cli("recsys_attn.ope", *common, "s", "logged=stranger.csv", f"histories={histories}")
    assert code != 0 and not (tmp_path / "s").exists()
    assert out.strip().splitlines()[-1] == f"error: stranger.csv, line 2: user_id 123456 has no history in {histories}"


@pytest.mark.slow
def test_help_is_a_short_header_with_three_examples(tmp_path: Path) -> None:
    proc = run_cli("recsys_attn.ope", "--help", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) <= 25 and lines[0].startswith("python -m recsys_attn.ope ")
    assert len([line for line in lines if line.startswith("  python -m recsys_attn.ope ")]) == 3
    assert any(line.startswith("Outputs:") for line in lines)
    assert not list(tmp_path.iterdir())
