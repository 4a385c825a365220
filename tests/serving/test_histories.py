"""History files of new users: every format to the same blocks, time order, unknown items, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_attn.data.errors import DataError
from recsys_attn.serving.histories import HistoryBlock, read_histories

# The model's items: original ids 10, 20, 30, 40 are item_idx 1..4.
ITEMS = pl.DataFrame({"item_idx": [1, 2, 3, 4], "item_id": [10, 20, 30, 40]})
USERS = pl.DataFrame({"user_idx": [1], "user_id": [1]})  # only the dtype matters: integer user ids

# Rows in file order, timestamps out of order: user 7 saw 30 (t=1), 99 (unknown, t=2), 10 (t=3);
# user 5 saw only unknown items; user 6 saw 20.
ROWS = [(7, 10, 3), (5, 98, 1), (7, 30, 1), (6, 20, 5), (7, 99, 2), (5, 97, 2)]


def write_table(tmp_path: Path, suffix: str, rows: list[tuple[int, int, int]] = ROWS) -> Path:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    path = tmp_path / f"histories{suffix}"
    if suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path, separator="\t" if suffix == ".tsv" else ",")
    return path


def write_jsonl(tmp_path: Path, users: list[dict[str, object]], name: str = "histories.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(u) + "\n" for u in users))
    return path


def read_all(path: Path, block_users: int = 100, **kw: object) -> list[HistoryBlock]:
    return list(read_histories(path, kw.pop("users", USERS), kw.pop("items", ITEMS), block_users, **kw))  # type: ignore[arg-type]


def as_lists(blocks: list[HistoryBlock]) -> dict[object, tuple[list[int], int]]:
    """Each user's known item_idx (oldest first) and unknown count."""
    out = {}
    for b in blocks:
        for i, user in enumerate(b.user_ids.to_list()):
            out[user] = (b.values[b.starts[i] : b.ends[i]].tolist(), int(b.n_unknown[i]))
    return out


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_tables_order_each_user_by_time_and_count_unknown_items(tmp_path: Path, suffix: str) -> None:
    (block,) = read_all(write_table(tmp_path, suffix))
    assert block.user_ids.to_list() == [7, 5, 6]  # first appearance in the file
    assert block.user_ids.dtype == pl.Int64  # the data's user id dtype
    assert as_lists([block]) == {7: ([3, 1], 1), 5: ([], 2), 6: ([2], 0)}  # 30 then 10; 99 dropped
    assert block.values.dtype == torch.int32


def test_without_timestamps_the_file_order_stands(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("item_id,user_id\n30,7\n10,7\n20,6\n")  # any column order
    assert as_lists(read_all(path)) == {7: ([3, 1], 0), 6: ([2], 0)}


def test_json_lines_give_the_blocks_of_the_same_table(tmp_path: Path) -> None:
    users = [{"user_id": 7, "items": [30, 99, 10]}, {"user_id": 5, "items": [98, 97]}, {"user_id": 6, "items": [20]}]
    path = write_jsonl(tmp_path, users)
    assert as_lists(read_all(path)) == as_lists(read_all(write_table(tmp_path, ".csv")))
    assert [len(b) for b in read_all(path, block_users=2)] == [2, 1]  # bounded blocks, file order
    assert [b.user_ids.to_list() for b in read_all(path, block_users=2, max_users=2)] == [[7, 5]]


def test_json_lines_skip_blank_lines_and_take_empty_histories(tmp_path: Path) -> None:
    path = tmp_path / "h.ndjson"
    path.write_text('{"user_id": 1, "items": [10]}\n\n{"user_id": "2", "items": [], "extra": 1}\n')
    assert as_lists(read_all(path)) == {1: ([1], 0), 2: ([], 0)}


def test_item_ids_match_in_the_spelling_of_the_id_map(tmp_path: Path) -> None:
    # integer map: 10 and "10" are item 10, "010" and "10.5" are not (never silently item 10)
    path = write_jsonl(tmp_path, [{"user_id": 1, "items": [10, "10", "010", 10.5]}])
    assert as_lists(read_all(path)) == {1: ([1, 1], 2)}
    # text map: "010" is its own item; 10 is the text "10"
    text_items = pl.DataFrame({"item_idx": [1, 2], "item_id": ["010", "10"]})
    assert as_lists(read_all(path, items=text_items)) == {1: ([2, 2, 1], 1)}
    # JSON has one number type: 10.0 is the number 10, as a JSON parser in any language reads it
    assert as_lists(read_all(write_jsonl(tmp_path, [{"user_id": 1.0, "items": [10.0]}], "f.jsonl"))) == {1: ([1], 0)}
    csv = tmp_path / "h.csv"
    csv.write_text("user_id,item_id\n1,010\n1,10\n")
    assert as_lists(read_all(csv)) == {1: ([1], 1)}
    assert as_lists(read_all(csv, items=text_items)) == {1: ([1, 2], 0)}


def test_text_user_ids_for_data_with_text_user_ids(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"user_id": "007", "items": [10]}, {"user_id": 8, "items": [20]}])
    text_users = pl.DataFrame({"user_idx": [1], "user_id": ["a"]})
    (block,) = read_all(path, users=text_users)
    assert block.user_ids.to_list() == ["007", "8"]


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("h.csv", "user_id,item_id\n1,10\n2\n", "h.csv:3: expected 2 comma-separated fields"),
        ("h.csv", "user_id,item\n1,10\n", "h.csv:1: no column 'item_id'; expected a comma-separated table"),
        ("h.tsv", "user_id\titem_id\n1\t10\nx\t20\n", "h.tsv:3: user_id is not an integer, and the data's user"),
        ("h.csv", "user_id,item_id,timestamp\n1,10,5\n1,20,soon\n", "h.csv:3: column 'timestamp': 'soon' is not a"),
        ("h.csv", "", "h.csv: empty file"),
        ("h.jsonl", '{"user_id": 1, "items": [10]}\n{"user_id": 2, "items": [10}\n', "h.jsonl:2: not valid JSON"),
        ("h.jsonl", '{"user_id": 1, "items": [10]}\n[1, 2]\n', "h.jsonl:2: expected one JSON object a line"),
        ("h.jsonl", '{"user_id": 1, "items": 10}\n', 'h.jsonl:1: "items" must be a list of item ids'),
        ("h.jsonl", '{"user_id": 1, "items": [1]}\n\n{"items": [10]}\n', 'h.jsonl:3: no "user_id" (or null)'),
        ("h.jsonl", '{"user_id": 1}\n', 'h.jsonl:1: no "items" list (or null)'),
        ("h.jsonl", '{"user_id": 1, "items": [10, null]}\n', 'h.jsonl:1: "items" holds a null'),
        ("h.jsonl", '{"user_id": 1.5, "items": [10]}\n', "h.jsonl:1: user_id is not an integer"),
        ("h.jsonl", "\n\n", "h.jsonl: empty file"),
        ("h.txt", "1 10\n", "h.txt: a history file must end in one of .csv, .tsv, .parquet, .jsonl, .ndjson"),
    ],
)
def test_malformed_files_fail_naming_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        read_all(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_bad_line_in_a_later_block_is_named_with_its_own_line(tmp_path: Path) -> None:
    lines = [json.dumps({"user_id": u, "items": [10]}) for u in range(5)] + ['{"user_id": 9, "items": oops}']
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n")
    blocks = read_histories(path, USERS, ITEMS, 2)
    assert len(next(blocks)) == 2  # earlier blocks come first: the caller writes nothing until the end
    with pytest.raises(DataError, match=r"h.jsonl:6: not valid JSON"):
        list(blocks)


def test_a_bad_byte_names_its_line_and_no_data_setting(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b'{"user_id": 1, "items": [10]}\n{"user_id": 2, "items": ["\xff"]}\n')
    with pytest.raises(DataError, match=r"h.jsonl:2: byte .* is not valid utf-8; history files must be UTF-8$"):
        read_all(path)


def test_parquet_with_a_missing_column_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.parquet"
    pl.DataFrame({"user_id": [1], "item": [10]}).write_parquet(path)
    with pytest.raises(DataError, match=r"h.parquet: no column 'item_id'"):
        read_all(path)


# ------------------------------------------------------------------------------ a user on two lines


@pytest.mark.parametrize("block_users", [2, 100])  # the repeat in a later block, or in the same one
def test_a_user_on_two_json_lines_fails_naming_both_lines(tmp_path: Path, block_users: int) -> None:
    lines = [json.dumps({"user_id": f"u{u}", "items": [10]}) for u in range(6)]
    lines.insert(1, "")  # blank lines count in line numbers
    lines.append(json.dumps({"user_id": "u2", "items": [20]}))  # line 8; u2 is on line 4
    lines.append(json.dumps({"user_id": "u1", "items": [20]}))
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n")
    text_users = pl.DataFrame({"user_idx": [1], "user_id": ["a"]})
    message = r"h.jsonl:8: user_id 'u2' already appeared on line 4; each user must be on one line$"
    with pytest.raises(DataError, match=message):
        read_all(path, block_users, users=text_users)
    assert sum(len(b) for b in read_all(path, block_users, users=text_users, max_users=6)) == 6  # served: no repeat


def test_the_same_integer_id_written_as_text_is_the_same_user(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path, [{"user_id": 7, "items": [10]}, {"user_id": 8, "items": []}, {"user_id": "7", "items": []}]
    )
    with pytest.raises(DataError, match=r"h\w*.jsonl:3: user_id '7' already appeared on line 1"):
        read_all(path, block_users=1)


def test_users_whose_ids_hash_alike_are_told_apart_by_their_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pl.Series, "hash", lambda self, *a, **k: pl.Series(self.name, [0] * len(self), pl.UInt64))
    path = write_jsonl(tmp_path, [{"user_id": u, "items": [10]} for u in range(9)])
    assert [len(b) for b in read_all(path, block_users=2)] == [2, 2, 2, 2, 1]  # every hash equal, every user new
    path = write_jsonl(tmp_path, [{"user_id": u, "items": [10]} for u in [*range(9), 5]], "again.jsonl")
    with pytest.raises(DataError, match=r"again.jsonl:10: user_id '5' already appeared on line 6"):
        read_all(path, block_users=2)
