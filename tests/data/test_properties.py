"""Properties that hold for every log, checked on logs hypothesis draws: id remapping, splits, batch builders."""

from __future__ import annotations

import polars as pl
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_attn.constants import PAD
from recsys_attn.data.batches import cloze_batch, left_pad, next_item_batch
from recsys_attn.data.preprocess import Preparation, preprocess
from recsys_attn.data.split import SplitConfig, split_interactions

SETTINGS = settings(max_examples=40, deadline=None)

# (user, item, timestamp) rows: few users and items so that repeats, ties and short histories all occur
ROWS = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 9), st.integers(0, 5)),
    min_size=1,
    max_size=60,
)


def raw_log(rows: list[tuple[int, int, int]], string_ids: bool) -> pl.DataFrame:
    """A reader's frame of ``rows`` in file order; ids as strings with leading zeros when ``string_ids``."""
    users = [f"u{u:02d}" if string_ids else u for u, _, _ in rows]
    items = [f"0{i}" if string_ids else i * 7 for _, i, _ in rows]
    return pl.DataFrame(
        {
            "user": users,
            "item": items,
            "timestamp": [t for _, _, t in rows],
            "rating": [None] * len(rows),
            "line": list(range(1, len(rows) + 1)),
        },
        schema_overrides={"rating": pl.Float64, "line": pl.Int64, "timestamp": pl.Int64},
    )


@SETTINGS
@given(rows=ROWS, string_ids=st.booleans())
def test_remapped_ids_map_back_to_the_same_log_in_time_order(
    rows: list[tuple[int, int, int]], string_ids: bool
) -> None:
    raw = raw_log(rows, string_ids)
    prepared = preprocess(raw, Preparation(dedup=False), "toy")
    # indices are 1..n, one per original id, assigned in the order of the original ids
    for table, column in ((prepared.users, "user"), (prepared.items, "item")):
        assert table[f"{column}_idx"].to_list() == list(range(1, table.height + 1))
        assert table[f"{column}_id"].to_list() == sorted(set(raw[column].to_list()))
    back = (
        prepared.interactions.join(prepared.users, on="user_idx", maintain_order="left")
        .join(prepared.items, on="item_idx", maintain_order="left")
        .select(pl.col("user_id").alias("user"), pl.col("item_id").alias("item"), "timestamp")
    )
    # the same rows, each user's contiguous and chronological (file order among equal timestamps)
    expected = raw.sort(["user", "timestamp", "line"]).select("user", "item", "timestamp")
    assert back.to_dicts() == expected.to_dicts()


def _prepared_splits(rows: list[tuple[int, int, int]], config: SplitConfig) -> tuple[torch.Tensor, object]:
    prepared = preprocess(raw_log(rows, False), Preparation(dedup=False), "toy")
    splits = split_interactions(prepared.interactions, prepared.n_items, config)
    users = prepared.interactions["user_idx"].to_torch().long()  # [N] owner of each position
    return users, splits


@SETTINGS
@given(rows=ROWS, temporal=st.booleans())
def test_no_held_out_position_is_in_any_training_or_validation_input(
    rows: list[tuple[int, int, int]], temporal: bool
) -> None:
    config = SplitConfig(kind="temporal") if temporal else SplitConfig()
    owner, s = _prepared_splits(rows, config)
    n = s.values.numel()  # type: ignore[attr-defined]
    train = torch.zeros(n, dtype=torch.bool)  # [N] positions read by some training sequence
    for start, end in zip(s.train_starts.tolist(), s.train_ends.tolist(), strict=True):  # type: ignore[attr-defined]
        train[start:end] = True
        assert owner[start:end].unique().numel() == 1  # a training sequence is one user's
    val, test = s.val, s.test  # type: ignore[attr-defined]
    val_inputs = torch.zeros(n, dtype=torch.bool)  # [N]
    for start, end in zip(val.starts.tolist(), val.ends.tolist(), strict=True):
        val_inputs[start:end] = True
    assert not train[test.ends].any() and not val_inputs[test.ends].any()  # the test target is never an input
    assert not train[val.ends].any()  # the validation target is never trained on
    assert torch.equal(s.values[test.ends], test.targets) and torch.equal(s.values[val.ends], val.targets)  # type: ignore[attr-defined]
    assert torch.equal(owner[test.ends], test.users) and torch.equal(owner[val.ends], val.users)
    # each evaluated input is its user's prefix right before the target, within the user's own rows
    for es in (val, test):
        assert bool((es.starts < es.ends).all()) and torch.equal(owner[es.starts], es.users)
    if not temporal:  # leave-one-out: the last item is the test target, the one before it the validation target
        ends = torch.bincount(owner)[1:].cumsum(0)  # [U] exclusive end of each user's rows
        assert torch.equal(test.ends, ends[test.users - 1] - 1)
        assert len(val) == len(test) and torch.equal(val.ends, test.ends - 1)


@SETTINGS
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=8),
    width=st.integers(1, 10),
    data=st.data(),
)
def test_left_pad_keeps_the_last_items_right_aligned(lengths: list[int], width: int, data: st.DataObject) -> None:
    seqs = [data.draw(st.lists(st.integers(1, 50), min_size=n, max_size=n)) for n in lengths]
    values = torch.tensor([v for seq in seqs for v in seq], dtype=torch.long)  # [N]
    ends = torch.tensor(lengths).cumsum(0)  # [R]
    starts = ends - torch.tensor(lengths)  # [R]
    padded = left_pad(values, starts, ends, width)  # [R, width]
    for row, seq in zip(padded.tolist(), seqs, strict=True):
        kept = seq[-width:] if seq else []
        assert row == [PAD] * (width - len(kept)) + kept


WINDOWS = st.lists(
    st.integers(0, 6).flatmap(lambda pad: st.lists(st.integers(1, 30), min_size=7 - pad, max_size=7 - pad)),
    min_size=1,
    max_size=6,
)


def _windows(seqs: list[list[int]]) -> torch.Tensor:
    return torch.tensor([[PAD] * (7 - len(s)) + s for s in seqs])  # [B, 7] left-padded


@SETTINGS
@given(seqs=WINDOWS)
def test_next_item_targets_are_each_input_s_successor(seqs: list[list[int]]) -> None:
    rows = _windows(seqs)  # [B, 7]
    batch = next_item_batch(rows)
    width = batch.input.shape[1]
    inp, target = rows[:, -1 - width : -1], rows[:, -width:]  # [B, W] the untrimmed columns
    assert torch.equal(batch.input, inp)
    assert torch.equal(batch.target, torch.where(inp != PAD, target, PAD))  # no target without an input
    if bool((batch.input != PAD).any()):  # trimmed: the first column holds an item somewhere
        assert bool((batch.input != PAD).any(0)[0])


@SETTINGS
@given(seqs=WINDOWS, mask_prob=st.floats(0.05, 1.0), seed=st.integers(0, 2**31 - 1), last_only=st.data())
def test_cloze_masks_only_real_items_and_targets_exactly_the_masked(
    seqs: list[list[int]], mask_prob: float, seed: int, last_only: st.DataObject
) -> None:
    rows = _windows(seqs)  # [B, 7]
    flags = torch.tensor(last_only.draw(st.lists(st.booleans(), min_size=len(seqs), max_size=len(seqs))))  # [B]
    mask_token = 99
    batch = cloze_batch(rows, flags, mask_prob, mask_token, torch.Generator().manual_seed(seed))
    width = batch.input.shape[1]
    original = rows[:, -width:]  # [B, W]
    masked = batch.input == mask_token  # [B, W]
    assert not bool((masked & (original == PAD)).any())  # padding is never masked
    assert torch.equal(batch.input, torch.where(masked, mask_token, original))  # nothing else changes
    assert torch.equal(batch.target, torch.where(masked, original, PAD))  # targets: exactly the masked items
    last_masked = masked[flags]  # [F, W] rows that mask only their last item
    assert bool(last_masked[:, -1].all()) and not bool(last_masked[:, :-1].any())
