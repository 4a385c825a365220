"""Logs of served slates: every malformation fails with one message naming the file and line; ids to indices."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_attn.data.prepared import Prepared
from recsys_attn.errors import ConfigError
from recsys_attn.serving.logs import LogError, index_log, read_log

GOOD = """user_id,item_id,rank,propensity,reward,score
u1,b,0,0.5,1,3.2
u1,a,1,0.25,0,1.0
u2,c,0,1.0,0,2.0
"""


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def prepared() -> Prepared:
    return Prepared(
        interactions=pl.DataFrame({"user_idx": [1], "item_idx": [1], "timestamp": [None]}),
        users=pl.DataFrame({"user_idx": [1, 2], "user_id": ["u2", "u1"]}),
        items=pl.DataFrame({"item_idx": [1, 2, 3], "item_id": ["a", "b", "c"]}),
        meta={},
    )


def test_a_good_log_becomes_one_padded_slate_per_user(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    log = read_log(path)
    assert log.columns == ["_row", "user_id", "item_id", "rank", "propensity", "reward"]
    slates = index_log(log, prepared().users, prepared().items, path)
    assert slates.users.tolist() == [1, 2]  # by user_idx: u2, then u1
    assert slates.items.tolist() == [[3, 0], [2, 1]]
    torch.testing.assert_close(slates.propensity, torch.tensor([[1.0, 1.0], [0.5, 0.25]]))
    assert slates.reward.tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert slates.shown.tolist() == [[True, False], [True, True]]
    parquet = tmp_path / "log.parquet"
    pl.read_csv(path).write_parquet(parquet)
    assert index_log(read_log(parquet), prepared().users, prepared().items, parquet).items.tolist() == [[3, 0], [2, 1]]


BAD = [
    ("user_id,item_id,rank,reward\nu1,a,0,1\n", "log.csv: no column 'propensity'"),
    ("user_id,item_id,rank,propensity,reward\n", "log.csv: no rows"),
    (GOOD.replace("u1,a,1,0.25", "u1,a,1,0"), r"log.csv, line 3: propensity 0.0 is not in \(0, 1\]"),
    (GOOD.replace("u2,c,0,1.0", "u2,c,0,1.5"), r"log.csv, line 4: propensity 1.5 is not in \(0, 1\]"),
    (GOOD.replace("u2,c,0,1.0", "u2,c,0,high"), "log.csv, line 4: propensity 'high' is not a number"),
    (GOOD.replace("u1,a,1,", "u1,a,1.5,"), "log.csv, line 3: rank 1.5 is not an integer"),
    (GOOD.replace("u1,a,1,", "u1,a,first,"), "log.csv, line 3: rank 'first' is not an integer"),
    (GOOD.replace("u1,a,1,", "u1,a,-1,"), "log.csv, line 3: rank -1 is negative"),
    (GOOD.replace("u1,a,1,", "u1,a,,"), "log.csv, line 3: rank is empty"),
    (GOOD.replace("u1,a,1,", "u1,a,0,"), "log.csv, line 2: user 'u1' has rank 0 twice; the log holds one slate per"),
    (GOOD.replace("u1,a,1,", "u1,a,2,"), "log.csv, line 2: user 'u1''s ranks have a gap"),
    (GOOD.replace("u1,a,1,", "u1,b,1,"), "log.csv, line 2: user 'u1' was served item 'b' twice"),
    (GOOD.replace("u2,c,0,1.0,0", "u2,c,0,1.0,inf"), "log.csv, line 4: reward inf is not a finite number"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(": ", 1)[-1][:30] for _, m in BAD])
def test_a_malformed_log_names_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(LogError, match=message):
        read_log(write(tmp_path, text))


def test_parquet_rows_are_counted_from_one(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.read_csv(write(tmp_path, GOOD.replace("u1,a,1,0.25", "u1,a,1,0"))).write_parquet(path)
    with pytest.raises(LogError, match=r"log.parquet, row 2: propensity 0.0"):
        read_log(path)
    pl.DataFrame({"user_id": [1], "item_id": [1], "rank": [0.0], "propensity": [1.0], "reward": [0]}).write_parquet(
        path
    )
    with pytest.raises(LogError, match="column rank holds Float64 values; ranks must be integers"):
        read_log(path)


def test_unknown_users_and_items_name_their_line(tmp_path: Path) -> None:
    for old, new, message in [
        ("u2,c", "u9,c", "log.csv, line 4: user_id 'u9' is not a user of the data"),
        ("u1,a", "u1,z", "log.csv, line 3: item_id 'z' is not an item the model knows"),
    ]:
        path = write(tmp_path, GOOD.replace(old, new))
        with pytest.raises(LogError, match=message):
            index_log(read_log(path), prepared().users, prepared().items, path)


def test_a_missing_file_or_another_format_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="logged: no file at"):
        read_log(tmp_path / "none.csv")
    with pytest.raises(ConfigError, match=r"logged: .*log.json must end in one of .parquet, .csv"):
        read_log(write(tmp_path, "{}", "log.json"))
    with pytest.raises(LogError, match=r"log\.parquet: cannot read it as parquet"):
        read_log(write(tmp_path, GOOD, "log.parquet"))
