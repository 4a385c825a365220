"""Serving through the real CLI: original ids, history filtered, formats, user selection, new users from
history files, streaming, policy metadata, errors."""

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from recsys_attn.atomic import write_atomic
from tests.conftest import run_cli
from tests.tolerances import assert_close, tol


def predict(tmp: Path, ckpt: Path, cache: Path, *overrides: str) -> tuple[int, str]:
    proc = run_cli(
        "recsys_attn.predict",
        f"ckpt_path={ckpt}",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={tmp / 'run'}",
        "device=cpu",
        *overrides,
        cwd=tmp,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_every_user_gets_k_unseen_items_with_original_ids(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path, real_data_dir: Path
) -> None:
    code, out = predict(tmp_path, tiny_checkpoint, shared_cache, "k=5")
    assert code == 0, out[-3000:]
    recs = pl.read_parquet(tmp_path / "run" / "recommendations.parquet")
    log = pl.read_csv(
        real_data_dir / "ml-1m" / "ml-1m.txt", separator=" ", has_header=False, new_columns=["user_id", "item_id"]
    )
    assert recs.columns == ["user_id", "rank", "item_id", "score", "propensity", "n_unknown", "fallback", "cold"]
    assert recs["propensity"].eq(1.0).all() and recs["n_unknown"].eq(0).all() and not recs["fallback"].any()
    assert recs.height == 5 * log["user_id"].n_unique()  # history=all: every user, k items each
    assert recs.group_by("user_id").agg(pl.col("rank")).sort("user_id")["rank"].to_list()[0] == [0, 1, 2, 3, 4]
    assert set(recs["item_id"].unique().to_list()) <= set(log["item_id"].unique().to_list())
    # nothing the user already interacted with (the test item included) is recommended again
    assert recs.join(log, on=["user_id", "item_id"], how="inner").height == 0
    assert recs.group_by("user_id").agg(pl.col("score").diff().max())["score"].max() <= 0  # best first
    assert "30,200 recommendations for 6,040 users (k=5, policy=greedy)" in out


@pytest.mark.slow
def test_csv_for_chosen_users_in_their_order(tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path) -> None:
    code, out = predict(
        tmp_path, tiny_checkpoint, shared_cache, "k=3", "users=[42,1]", "history=test", "output=recs.csv"
    )
    assert code == 0, out[-3000:]
    recs = pl.read_csv(tmp_path / "recs.csv")  # relative to where the command ran
    assert recs["user_id"].to_list() == [42] * 3 + [1] * 3 and recs["rank"].to_list() == [0, 1, 2] * 2


@pytest.mark.slow
def test_movielens_ids_through_an_id_map(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path, real_data_dir: Path
) -> None:
    common = ["k=3", "users=[42,1]", "history=test"]
    code, out = predict(tmp_path, tiny_checkpoint, shared_cache, *common, "output=plain.csv")
    assert code == 0, out[-3000:]
    item_map = "data.source.item_id_map=ml-1m/sas_to_original_items.txt"
    code, out = predict(tmp_path, tiny_checkpoint, shared_cache, *common, item_map, "output=movielens.csv")
    assert code == 0, out[-3000:]
    to_movielens = dict(
        pl.read_csv(real_data_dir / "ml-1m" / "sas_to_original_items.txt", separator=" ", has_header=False).iter_rows()
    )
    plain, movielens = pl.read_csv(tmp_path / "plain.csv"), pl.read_csv(tmp_path / "movielens.csv")
    # the same checkpoint and ranking; only the ids shown change
    assert movielens["item_id"].to_list() == [to_movielens[i] for i in plain["item_id"].to_list()]
    assert movielens["score"].to_list() == plain["score"].to_list()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("output=recs.xlsx", "error: output: recs.xlsx must end in one of .parquet, .csv"),
        ("history=train", "error: history: 'train' is not one of val, test, all"),
        ("users=[1,999999]", "error: users: 1 id(s) not in the data, e.g. [999999]"),
        ("k=0", "error: k: must be >= 1 (got 0)"),
        ("batch_size=0", "error: batch_size: must be >= 1 (got 0)"),
        ("max_users=0", "error: max_users: must be >= 1 (got 0)"),
        ("histories=absent.jsonl", "error: histories: no file at"),
        ("histories=recs.txt", "error: histories: recs.txt must end in one of .csv, .tsv, .parquet, .jsonl, .ndjson"),
        ("policy=boltzmann", "error: policy: "),
        ("temperature=hot", "error: temperature: expected null or a finite number (got 'hot')"),
    ],
)
@pytest.mark.slow
def test_bad_settings_fail_with_one_line_naming_the_key_and_write_nothing(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path, override: str, message: str
) -> None:
    code, out = predict(tmp_path, tiny_checkpoint, shared_cache, override)
    assert code == 1
    assert message in out.strip().splitlines()[-1]
    assert not list(tmp_path.glob("recs*")) and not (tmp_path / "run" / "recommendations.parquet").exists()


@pytest.mark.slow
def test_a_diverged_checkpoint_fails_instead_of_writing_nothing(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path
) -> None:
    import torch

    ckpt = torch.load(tiny_checkpoint, weights_only=False)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and v.dim() == 2)
    ckpt["state_dict"][name] = torch.full_like(ckpt["state_dict"][name], float("nan"))
    torch.save(ckpt, tmp_path / "nan.ckpt")
    code, out = predict(tmp_path, tmp_path / "nan.ckpt", shared_cache, "k=3")
    assert code == 1
    assert "non-finite weights" in out.strip().splitlines()[-1] and "model.lr" in out
    assert not (tmp_path / "run" / "recommendations.parquet").exists()


def test_write_atomic_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out" / "recs.csv"

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("user_id,rank\n1,")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert not (tmp_path / "out").exists()  # no temporary, and not the folder the write created
    write_atomic(target, lambda tmp: tmp.write_text("ok\n"))
    with pytest.raises(OSError):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "ok\n" and [p.name for p in (tmp_path / "out").iterdir()] == ["recs.csv"]


def ml1m_log(real_data_dir: Path) -> pl.DataFrame:
    return pl.read_csv(
        real_data_dir / "ml-1m" / "ml-1m.txt", separator=" ", has_header=False, new_columns=["user_id", "item_id"]
    )


def write_histories(path: Path, histories: dict[int, list[object]]) -> Path:
    """``histories`` as ``path`` (by its suffix); table rows newest first, with timestamps giving the order."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"user_id": u, "items": i}) + "\n" for u, i in histories.items()))
        return path
    rows = [(u, item, t) for u, items in histories.items() for t, item in enumerate(items)]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row", strict=False)
    frame = frame.sort(["user_id", "timestamp"], descending=[False, True])
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path, separator="\t" if path.suffix == ".tsv" else ",")
    return path


@pytest.mark.slow
def test_new_users_in_every_format_are_served_like_the_same_known_users(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path, real_data_dir: Path
) -> None:
    log = ml1m_log(real_data_dir)
    known_ids = [1, 2, 3]
    code, out = predict(tmp_path, tiny_checkpoint, shared_cache, "k=5", f"users={known_ids}", "output=known.parquet")
    assert code == 0, out[-3000:]
    known = pl.read_parquet(tmp_path / "known.parquet").with_columns(pl.col("user_id") + 100_000)
    full = {u + 100_000: log.filter(pl.col("user_id") == u)["item_id"].to_list() for u in known_ids}
    for suffix in (".csv", ".tsv", ".parquet", ".jsonl"):
        path = write_histories(tmp_path / f"new{suffix}", full)
        code, out = predict(
            tmp_path, tiny_checkpoint, shared_cache, "k=5", f"histories={path}", f"output=n{suffix}.csv"
        )
        assert code == 0, out[-3000:]
        new = pl.read_csv(tmp_path / f"n{suffix}.csv", schema=known.schema)
        assert new.drop("score").equals(known.drop("score")), suffix
        # the same users' scores, computed in another batch: a forward pass's rounding (two blocks at hidden 16)
        assert_close(new["score"].to_torch(), known["score"].to_torch(), rtol=tol(torch.float32, 1000), what=suffix)
        assert "history items unknown to the model: 0 dropped (0 users); 0 users with no known item" in out


@pytest.mark.slow
def test_unknown_items_are_counted_and_a_user_with_none_known_gets_the_training_popularity(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path, real_data_dir: Path
) -> None:
    log = ml1m_log(real_data_dir)
    history = log.filter(pl.col("user_id") == 4)["item_id"].to_list()
    path = write_histories(
        tmp_path / "new.jsonl",
        {900_004: [*history[:2], 999_999, *history[2:], "0001"], 900_005: [999_999, "x"], 4: history},
    )
    code, out = predict(tmp_path, tiny_checkpoint, shared_cache, "k=5", f"histories={path}")
    assert code == 0, out[-3000:]
    assert "history items unknown to the model: 4 dropped (2 users); 1 users with no known item" in out
    recs = pl.read_parquet(tmp_path / "run" / "recommendations.parquet")
    mixed, none, same = (recs.filter(pl.col("user_id") == u) for u in (900_004, 900_005, 4))
    assert mixed["n_unknown"].to_list() == [2] * 5 and not mixed["fallback"].any()
    assert mixed.drop("user_id", "n_unknown").equals(same.drop("user_id", "n_unknown"))  # unknown items dropped
    # popularity in the training data: every user's items but the last two (the held-out ones)
    train = log.with_columns(n=pl.len().over("user_id"), pos=pl.int_range(pl.len()).over("user_id"))
    counts = train.filter((pl.col("n") < 3) | (pl.col("pos") < pl.col("n") - 2))["item_id"].value_counts()
    count_of = dict(counts.iter_rows())
    assert none["fallback"].all() and none["n_unknown"].to_list() == [2] * 5
    assert none["score"].to_list() == sorted(count_of.values(), reverse=True)[:5]
    assert [count_of[i] for i in none["item_id"]] == none["score"].to_list()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "bad.jsonl",
            '{"user_id": 1, "items": [1, 2]}\n{"user_id": 2, "items": [3,]}\n',
            "bad.jsonl:2: not valid JSON",
        ),
        ("bad.csv", "user_id,item\n1,2\n", "bad.csv:1: no column 'item_id'"),
        ("bad.tsv", "user_id\titem_id\n1\t2\n1\n", "bad.tsv:3: expected 2 tab-separated fields"),
    ],
)
@pytest.mark.slow
def test_a_malformed_history_file_fails_naming_file_and_line_and_writes_nothing(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text)
    code, out = predict(tmp_path, tiny_checkpoint, shared_cache, f"histories={name}", "output=recs.parquet")
    assert code == 1
    assert message in out.strip().splitlines()[-1] and out.strip().splitlines()[-1].startswith("error: ")
    assert not list(tmp_path.glob("*recs*")) and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_known_users_stream_in_row_groups_equal_to_one_block_with_the_policy_in_the_metadata(
    tmp_path: Path, tiny_checkpoint: Path, shared_cache: Path
) -> None:
    for batch, name in ((512, "small"), (8192, "one")):
        code, out = predict(tmp_path, tiny_checkpoint, shared_cache, f"batch_size={batch}", f"output={name}.parquet")
        assert code == 0, out[-3000:]
    small, one = pq.ParquetFile(tmp_path / "small.parquet"), pq.ParquetFile(tmp_path / "one.parquet")
    assert small.num_row_groups == 12 and one.num_row_groups == 1  # 6,040 users in batches of 512: a group each
    assert pl.read_parquet(tmp_path / "small.parquet").equals(pl.read_parquet(tmp_path / "one.parquet"))
    meta = {k.decode(): v.decode() for k, v in small.schema_arrow.metadata.items() if not k.startswith(b"ARROW")}
    assert meta == {
        "policy": "greedy",
        "policy_params": "{}",
        "seed": "42",
        "ckpt_path": str(tiny_checkpoint.resolve()),
        "k": "10",
        "users": "history=all",
        "filter_seen": "true",
    }
    policy = ["policy=temperature", "temperature=0.5", "seed=3", "max_users=100", "output=t.parquet"]
    code, out = predict(tmp_path, tiny_checkpoint, shared_cache, *policy)
    assert code == 0, out[-3000:]
    assert "1,000 recommendations for 100 users (k=10, policy=temperature)" in out
    drawn = pq.ParquetFile(tmp_path / "t.parquet")
    meta = drawn.schema_arrow.metadata
    assert meta[b"policy"] == b"temperature" and meta[b"policy_params"] == b'{"temperature": 0.5}'
    assert meta[b"seed"] == b"3"
    propensity = pl.read_parquet(tmp_path / "t.parquet")["propensity"]
    assert propensity.is_between(0, 1, closed="right").all() and propensity.lt(1).any()  # drawn, not greedy
