"""``new_user_slates``: the logged users' histories picked out of a history file, one batch row per slate."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from recsys_attn.data.prepared import Prepared
from recsys_attn.data.samples import SampleSpec
from recsys_attn.serving import targets
from recsys_attn.serving.logs import LogError, read_log
from recsys_attn.serving.targets import new_user_slates


def prepared() -> Prepared:
    return Prepared(
        interactions=pl.DataFrame({"user_idx": [1], "item_idx": [1], "timestamp": [None]}),
        users=pl.DataFrame({"user_idx": [1], "user_id": ["old"]}),
        items=pl.DataFrame({"item_idx": [1, 2, 3, 4], "item_id": ["a", "b", "c", "d"]}),
        meta={},
    )


HISTORIES = [
    {"user_id": "x", "items": ["a", "b"]},
    {"user_id": "y", "items": ["c", "zz", "d", "a"]},  # zz: unknown to the model, dropped
    {"user_id": "z", "items": ["b"]},
    {"user_id": "w", "items": ["zz"]},  # nothing known: an empty history (served the popularity ranking)
    {"user_id": "v", "items": ["d", "c"]},
]


def write(tmp_path: Path, log: str) -> tuple[Path, Path]:
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(h) + "\n" for h in HISTORIES))
    (tmp_path / "log.csv").write_text("user_id,item_id,rank,propensity,reward\n" + log)
    return tmp_path / "h.jsonl", tmp_path / "log.csv"


@pytest.mark.parametrize("read_block", [1, 2, 65_536])
def test_only_logged_users_are_kept_in_file_order_with_one_batch_row_per_slate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_block: int
) -> None:
    monkeypatch.setattr(targets, "READ_BLOCK", read_block)  # logged users spread over several read blocks
    histories, logged = write(tmp_path, "v,a,0,0.5,1\nw,b,0,1.0,0\nw,a,1,0.5,1\ny,b,0,0.5,0\n")
    slates, batches = new_user_slates(histories, read_log(logged), logged, prepared(), SampleSpec("next", 3), 2)
    # users numbered in the history file's order among those logged: y, w, v
    assert slates.users.tolist() == [1, 2, 3]
    assert slates.items.tolist() == [[2, 0], [2, 1], [1, 0]]
    rows = list(batches)
    assert [b.users.numel() for b in rows] == [2, 1]
    inputs = [r for b in rows for r in b.input.tolist()]
    assert inputs[0][-3:] == [3, 4, 1]  # y: c d a (zz dropped)
    assert inputs[1] == [0] * len(inputs[1])  # w: nothing known
    assert inputs[2][-2:] == [4, 3]  # v: d c


def test_a_logged_user_missing_from_the_history_file_names_the_log_line(tmp_path: Path) -> None:
    histories, logged = write(tmp_path, "x,a,0,0.5,1\nq,b,0,1.0,0\n")
    with pytest.raises(LogError, match=rf"^{logged}, line 3: user_id 'q' has no history in {histories}$"):
        new_user_slates(histories, read_log(logged), logged, prepared(), SampleSpec("next", 3), 2)
