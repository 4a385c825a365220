"""The shared datamodule: exact batches for both sample kinds, sharding, loaders, leakage."""

import re
from pathlib import Path

import pytest
import torch

from recsys_attn.data.batches import EvalRequest, EvalSplit, TrainRequest
from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.preprocess import Preparation
from recsys_attn.data.samples import SampleSpec
from recsys_attn.data.sampling import IndexBatches
from recsys_attn.data.sources import Source
from recsys_attn.data.split import SplitConfig
from recsys_attn.data.store import sliding_windows
from recsys_attn.errors import ConfigError
from tests.conftest import quiet_trainer, timed_datamodule, toy_datamodule

# user 1: items 10 11 12 13 14 15 ; user 2: 20 21 22 ; user 3: 30 31 (train only)
LINES = ["1 10", "1 11", "1 12", "1 13", "1 14", "1 15", "2 20", "2 21", "2 22", "3 30", "3 31"]
# remapped (by original id): 10..15 -> 1..6, 20..22 -> 7..9, 30,31 -> 10,11


def make_dm(tmp_path: Path, samples: SampleSpec | None = None, **settings: object) -> SeqDataModule:
    return toy_datamodule(tmp_path, LINES, samples or SampleSpec("next", 3), **settings)


def train_batch(dm: SeqDataModule, rows: list[int], seed: int = 0):
    return dm.on_after_batch_transfer(TrainRequest(torch.tensor(rows), seed), 0)


def test_sizes_and_popularity(tmp_path: Path) -> None:
    dm = make_dm(tmp_path)
    assert (dm.n_users, dm.n_items) == (3, 11)
    # training inputs: user 1 -> 1..4, user 2 -> 7, user 3 -> 10, 11
    expected = torch.zeros(12, dtype=torch.long)
    expected[[1, 2, 3, 4, 7, 10, 11]] = 1
    assert torch.equal(dm.item_popularity, expected)


def test_next_item_samples_are_exact(tmp_path: Path) -> None:
    dm = make_dm(tmp_path, SampleSpec("next", 3))
    # user 2 has one training item (7): nothing to predict, so it is no training sample
    assert dm.store.n_train_samples == 2 and dm.store.n_untrainable == 1
    batch = train_batch(dm, [0, 1])
    # user 1's training items 1..4, window of max_len + 1 = 4 items -> input 1 2 3, target 2 3 4
    assert batch.input[0].tolist() == [1, 2, 3] and batch.target[0].tolist() == [2, 3, 4]
    assert batch.input[1].tolist() == [0, 0, 10] and batch.target[1].tolist() == [0, 0, 11]


@pytest.mark.parametrize(("kind", "grouping", "expected"), [("next", 8, 4.0), ("next", 1, None), ("cloze", 8, 10 / 3)])
def test_grouped_batches_carry_the_loss_positions_of_a_random_batch(
    tmp_path: Path, kind: str, grouping: int, expected: float | None
) -> None:
    samples = SampleSpec("next", 3) if kind == "next" else SampleSpec("cloze", 4, mask_prob=1.0)
    dm = make_dm(tmp_path, samples, length_grouping=grouping)
    # next: user 1 has 3 targets, user 3 one -> 2 per sample; cloze (every item masked): windows of 4, 1 and 2
    # items, each also once with only its last item masked -> (4 + 1 + 2 + 3 x 1) / 6 = 5/3 per sample
    assert dm.store.sample_lengths.tolist() == ([4, 2] if kind == "next" else [4, 1, 2] * 2)
    got = train_batch(dm, [0, 1]).expected_targets
    assert got == expected if expected is None else got == pytest.approx(expected)


def test_sliding_windows(tmp_path: Path) -> None:
    dm = make_dm(tmp_path, SampleSpec("next", 2), window_stride=1)
    # user 1 (1..4): windows of 3 ending at 4, 3 -> [2,3,4], [1,2,3]; user 3: one; user 2 has nothing to predict
    assert dm.store.n_train_samples == 3
    batch = train_batch(dm, [0, 1, 2])
    assert batch.input.tolist() == [[2, 3], [1, 2], [0, 10]]
    assert batch.target.tolist() == [[3, 4], [2, 3], [0, 11]]
    assert batch.seq is not None and batch.seq.tolist() == [0, 0, 1]  # both windows of user 1 share a history


def test_sliding_windows_further_apart_than_their_width_leave_gaps_never_empty_windows(tmp_path: Path) -> None:
    dm = make_dm(tmp_path, SampleSpec("next", 2), window_stride=3)
    # user 1 (1..4): windows of 3 ending at 4 and at 1 would be [2,3,4] and [1] (a target without an input: no
    # sample); user 3: one
    assert dm.store.n_train_samples == 2
    batch = train_batch(dm, [0, 1])
    assert batch.input.tolist() == [[2, 3], [0, 10]] and batch.target.tolist() == [[3, 4], [0, 11]]


@pytest.mark.parametrize("width", [2, 4, 5, 201])
@pytest.mark.parametrize("stride", [1, 3, 4, 200, 450])
def test_sliding_windows_cover_every_target_and_never_hold_fewer_than_a_sample_needs(width: int, stride: int) -> None:
    lengths = torch.tensor([2, 3, 5, 6, 199, 200, 201, 202, 250, 401, 402, 1000])  # [T] each >= min_items
    starts = torch.cumsum(lengths, 0) - lengths  # [T]
    seq, w_starts, w_ends = sliding_windows(starts, starts + lengths, width, stride, min_items=2)  # [N] each
    for t in range(lengths.numel()):
        mine = seq == t  # [N]
        ends = w_ends[mine]  # [n] the windows' ends, from the sequence's own end backwards
        first = torch.maximum(ends - width, w_starts[mine])  # [n] each window's first item
        assert ends[0] == starts[t] + lengths[t] and (w_starts[mine] == starts[t]).all()
        assert ((ends - first) >= 2).all()  # an input and a target in every window
        # targets: every item but a window's first. Windows that touch (stride < width) cover every target, once
        # where they meet end to end (stride = width - 1), the last one reaching the sequence's first item and
        # none further; windows further apart leave gaps, as many as fit with two items each
        targets = torch.cat([torch.arange(int(a) + 1, int(b)) for a, b in zip(first, ends, strict=True)])  # [M]
        every = torch.arange(int(starts[t]) + 1, int(starts[t] + lengths[t]))  # [L - 1]
        if stride < width:
            assert torch.equal(targets.unique(), every) and first[-1] == starts[t]
            assert (first[:-1] > starts[t]).all()
        else:
            assert ends.numel() == 1 + (int(lengths[t]) - 2) // stride
        if stride >= width - 1:
            assert targets.unique().numel() == targets.numel()


def test_cloze_samples_with_last_item_copies(tmp_path: Path) -> None:
    dm = make_dm(tmp_path, SampleSpec("cloze", 4, mask_prob=1.0))
    assert dm.store.n_train_samples == 6
    mask = dm.n_items + 1
    batch = train_batch(dm, [0, 3])  # row 3 = user 1's last-item-only copy
    assert batch.input.tolist() == [[mask] * 4, [1, 2, 3, mask]]
    assert batch.target.tolist() == [[1, 2, 3, 4], [0, 0, 0, 4]]


def test_eval_batches_hold_history_target_and_seen(tmp_path: Path) -> None:
    dm = make_dm(tmp_path)
    val = dm.on_after_batch_transfer(EvalRequest(torch.tensor([0, 1]), EvalSplit.VAL), 0)
    test = dm.on_after_batch_transfer(EvalRequest(torch.tensor([0, 1]), EvalSplit.TEST), 0)
    assert val.users.tolist() == [1, 2] and val.target.tolist() == [5, 8]
    assert val.input.tolist() == [[2, 3, 4], [0, 0, 7]]
    assert test.target.tolist() == [6, 9] and test.input.tolist() == [[3, 4, 5], [0, 7, 8]]
    # items after the target: the test item for validation, nothing for the test set
    assert list(zip(val.later_rows.tolist(), val.later_items.tolist(), strict=True)) == [(0, 6), (1, 9)]
    assert test.later_rows.numel() == 0
    # the whole history is filtered, not only the last max_len items
    assert list(zip(test.seen_rows.tolist(), test.seen_items.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 4),
        (0, 5),
        (1, 7),
        (1, 8),
    ]


def test_whole_histories_cover_every_user_with_everything_known(tmp_path: Path) -> None:
    dm = make_dm(tmp_path)
    full = dm.store.evals[EvalSplit.FULL]
    assert len(full) == 3  # user 3 has no val/test item but is served
    batch = dm.store.eval_batch(torch.arange(3), EvalSplit.FULL)
    assert batch.users.tolist() == [1, 2, 3] and batch.target.tolist() == [0, 0, 0]
    assert batch.input.tolist() == [[4, 5, 6], [7, 8, 9], [0, 10, 11]]  # the test items included
    assert batch.seen_items.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert batch.later_rows.numel() == 0


def test_cloze_eval_appends_mask(tmp_path: Path) -> None:
    dm = make_dm(tmp_path, SampleSpec("cloze", 3, mask_prob=0.2))
    test = dm.on_after_batch_transfer(EvalRequest(torch.tensor([0]), EvalSplit.TEST), 0)
    assert test.input.tolist() == [[4, 5, dm.n_items + 1]]


def test_dataloader_path_matches_device_path(tmp_path: Path) -> None:
    samples = SampleSpec("cloze", 3, mask_prob=0.5)
    dev = make_dm(tmp_path, samples)
    workers = make_dm(tmp_path, samples, loader="dataloader")
    for split_loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        got = [b for b in getattr(workers, split_loader)()]
        want = [dev.on_after_batch_transfer(r, 0) for r in getattr(dev, split_loader)()]
        assert len(got) == len(want) == 1
        for g, w in zip(got, want, strict=True):
            for a, b in zip(g, w, strict=True):
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b  # cloze masks too


@pytest.mark.parametrize(("n", "world"), [(10, 1), (10, 3), (7, 2), (1, 2)])
def test_eval_sharding_sees_every_row_once(n: int, world: int) -> None:
    seen = torch.cat(
        [
            torch.cat(
                list(IndexBatches(n, 2, shuffle=False, rank=r, world_size=world)) or [torch.empty(0, dtype=torch.long)]
            )
            for r in range(world)
        ]
    )
    assert sorted(seen.tolist()) == list(range(n))


def test_train_sharding_equal_batches_per_rank_and_reshuffled_each_epoch() -> None:
    epoch = {"e": 0}
    ranks = [
        IndexBatches(10, 3, shuffle=True, seed=1, epoch_fn=lambda: epoch["e"], rank=r, world_size=3) for r in range(3)
    ]
    lens = {len(list(r)) for r in ranks}
    assert lens == {len(ranks[0])} == {2}
    first = torch.cat([torch.cat(list(r)) for r in ranks])
    assert set(first.tolist()) == set(range(10))
    epoch["e"] = 1
    second = torch.cat([torch.cat(list(r)) for r in ranks])
    assert not torch.equal(first, second)


def test_unknown_setting_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.batch_sise: unknown key"):
        make_dm(tmp_path, batch_sise=3)


def test_ml1m_no_leakage(real_data_dir: Path, tmp_path: Path) -> None:
    dm = SeqDataModule(
        Source(name="ml-1m", format="user_item", path="ml-1m/ml-1m.txt"),
        Preparation(),
        SplitConfig(),
        data_dir=str(real_data_dir),
        cache_dir=str(tmp_path),
    )
    dm.setup("fit")
    dm.connect(SampleSpec("next", 200))
    store = dm.store
    assert len(store.evals[EvalSplit.TEST]) == 6040 and dm.n_items == 3416
    # every training window and every validation input is free of the user's test item
    val, test, _ = store.evals
    assert torch.equal(val.users, test.users)
    assert store.windows.shape[0] == dm.n_users  # one window per user, in user order
    window_has_test = (store.windows.long() == test.targets[:, None]).any(1)
    assert not window_has_test.any()
    window_has_val = (store.windows.long() == val.targets[:, None]).any(1)
    assert not window_has_val.any()
    batch = store.eval_batch(torch.arange(len(val)), EvalSplit.VAL)
    assert not (batch.input == test.targets[:, None]).any()


def test_training_batches_know_their_sequence_and_skip_sequences_with_nothing_to_predict(tmp_path: Path) -> None:
    # user 1: 5 items (3 for training), user 2: 3 items (1 for training: no next-item target), user 3: 4 items
    lines = [f"1 {i}" for i in (1, 2, 3, 4, 5)] + [f"2 {i}" for i in (6, 7, 8)] + [f"3 {i}" for i in (2, 6, 7, 8)]
    dm = toy_datamodule(tmp_path, lines, SampleSpec("next", 4))
    store = dm.store
    assert store.n_train_samples == 2 and store.n_untrainable == 1
    batch = store.train_batch(torch.arange(2), seed=0)
    assert batch.seq is not None and batch.seq.tolist() == [0, 1]
    # each sequence's history holds exactly its training items
    assert store.history.contains(torch.tensor([0, 0, 0, 1, 1]), torch.tensor([1, 2, 3, 4, 2])).tolist() == [
        True,
        True,
        True,
        False,
        True,
    ]
    cloze = toy_datamodule(tmp_path / "cloze", lines, SampleSpec("cloze", 4, 0.2), cloze_last_item_samples=False)
    assert cloze.store.n_train_samples == 3 and cloze.store.n_untrainable == 0  # one item can be masked


def _padded_tokens(batches: list[torch.Tensor], lengths: torch.Tensor) -> int:
    return sum(int(lengths[b].max()) * b.numel() for b in batches)


def test_length_grouping_keeps_every_sample_once_and_cuts_padding() -> None:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 200, (1000,), generator=g)  # [n]
    epoch = {"e": 0}

    def batches(group: int, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
        ib = IndexBatches(1000, 32, shuffle=True, seed=3, epoch_fn=lambda: epoch["e"], rank=rank, world_size=world,
                          lengths=lengths, group=group)  # fmt: skip
        return list(ib)

    plain, grouped = batches(1), batches(8)
    assert sorted(torch.cat(grouped).tolist()) == list(range(1000))  # a permutation: nothing lost or repeated
    assert [b.numel() for b in grouped] == [32] * 31 + [8]  # full batches, the short one last
    assert _padded_tokens(grouped, lengths) < 0.7 * _padded_tokens(plain, lengths)
    assert all(int(lengths[b].max() - lengths[b].min()) < 60 for b in grouped[:-1])  # similar lengths together
    assert [torch.equal(a, b) for a, b in zip(grouped, batches(8), strict=True)] == [True] * 32  # repeatable
    epoch["e"] = 1
    assert not torch.equal(torch.cat(grouped), torch.cat(batches(8)))  # reshuffled each epoch
    ranks = [batches(8, r, 3) for r in range(3)]
    assert len({len(r) for r in ranks}) == 1  # DDP: every rank has as many batches
    assert set(torch.cat([torch.cat(r) for r in ranks]).tolist()) == set(range(1000))


# --- the model's samples ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [
        ("sample_kind", "next", "model=bert4rec: cloze"),
        ("max_len", 3, "model.max_len"),
        ("mask_prob", 0.5, "mask_prob"),
    ],
)
def test_what_the_model_decides_is_no_data_setting(tmp_path: Path, key: str, value: object, hint: str) -> None:
    with pytest.raises(ConfigError, match=rf"^data\.{key}: not a data setting any more; .*{re.escape(hint)}"):
        toy_datamodule(tmp_path, LINES, setup=False, **{key: value})


def test_batches_wait_for_a_model(tmp_path: Path) -> None:
    dm = toy_datamodule(tmp_path, LINES, setup=False)
    dm.setup("fit")
    assert dm.n_items == 11  # sizes and popularity do not depend on the model
    with pytest.raises(RuntimeError, match=r"no model connected; call connect\(model\.sample_spec\)"):
        dm.train_dataloader()


def test_the_trainer_hands_its_model_samples_to_the_data(tmp_path: Path) -> None:
    """Connected to next-item samples before, the datamodule serves BERT4Rec cloze samples under its trainer."""
    from recsys_attn.models.bert4rec import BERT4Rec

    dm = make_dm(tmp_path, SampleSpec("next", 3))
    model = BERT4Rec(dm.n_items, hidden_size=8, num_blocks=1, num_heads=1, max_len=4, mask_prob=0.5)
    quiet_trainer(tmp_path, max_steps=1, limit_val_batches=1, num_sanity_val_steps=0).fit(model, datamodule=dm)
    assert dm.spec == SampleSpec("cloze", 4, mask_prob=0.5) == model.sample_spec
    assert dm.store.n_train_samples == 6  # 3 windows + their last-item copies: cloze, not next-item samples
    test = dm.on_after_batch_transfer(EvalRequest(torch.tensor([0]), EvalSplit.TEST), 0)
    assert test.input.tolist() == [[3, 4, 5, dm.n_items + 1]]  # the history, then MASK


def test_sliding_windows_are_for_next_item_samples_only(tmp_path: Path) -> None:
    dm = make_dm(tmp_path, window_stride=1)
    with pytest.raises(ConfigError, match=r"^data\.window_stride: sliding windows are for next-item samples"):
        dm.connect(SampleSpec("cloze", 4, mask_prob=0.2))


# --- randomness -----------------------------------------------------------------------------------


def test_batches_draw_from_their_own_seed_never_the_global_random_state(tmp_path: Path) -> None:
    dm = make_dm(tmp_path, SampleSpec("cloze", 4, mask_prob=0.5), batch_size=2)
    before = torch.get_rng_state()
    first = [dm.on_after_batch_transfer(r, 0) for r in dm.train_dataloader()]
    assert torch.equal(torch.get_rng_state(), before)  # building batches left the user's random state alone
    torch.manual_seed(123)  # ... and does not read it either
    again = [dm.on_after_batch_transfer(r, 0) for r in dm.train_dataloader()]
    assert [(b.input.tolist(), b.rng_seed) for b in first] == [(b.input.tolist(), b.rng_seed) for b in again]
    masks = {str(train_batch(dm, [0, 1, 2], seed=s).input.tolist()) for s in range(8)}
    assert len(masks) > 1  # another seed, other masks
    seeds = {train_batch(dm, [0], seed=s).rng_seed for s in range(8)}
    assert len(seeds) == 8 and not seeds & set(range(8))  # the model's stream is apart from the masks'


def test_batch_seeds_follow_seed_epoch_batch_and_rank() -> None:
    epoch = {"e": 0}

    def seeds(rank: int = 0, seed: int = 1) -> list[int]:
        ib = IndexBatches(10, 3, shuffle=True, seed=seed, epoch_fn=lambda: epoch["e"], rank=rank, world_size=2)
        return [s for _, s in ib.seeded()]

    first = seeds()
    assert first == seeds() and len(set(first)) == len(first) == 2  # repeatable, one per batch
    assert not set(first) & set(seeds(rank=1)) and not set(first) & set(seeds(seed=2))
    epoch["e"] = 1
    assert not set(first) & set(seeds())  # a new epoch, new draws


# user 1: items 10..15 at 100..600 s; user 2: 20..22 at 1000..3000 s; user 3: 30, 31 at 5, 6 s
TIMED = ["1,10,100", "1,11,200", "1,12,300", "1,13,400", "1,14,500", "1,15,600"]
TIMED += ["2,20,1000", "2,21,2000", "2,22,3000", "3,30,5", "3,31,6"]


def timed_dm(tmp_path: Path, samples: SampleSpec) -> SeqDataModule:
    return timed_datamodule(tmp_path, TIMED, samples)


def test_batches_of_a_model_that_reads_times_carry_each_inputs_timestamp(tmp_path: Path) -> None:
    dm = timed_dm(tmp_path, SampleSpec("next", 3, times=True))
    batch = train_batch(dm, [0, 1])
    assert batch.input.tolist() == [[1, 2, 3], [0, 0, 10]]
    assert batch.times is not None and batch.times.tolist() == [[100, 200, 300], [0, 0, 5]]  # seconds, 0 at PAD
    test = dm.on_after_batch_transfer(EvalRequest(torch.tensor([0, 1]), EvalSplit.TEST), 0)
    assert test.input.tolist() == [[3, 4, 5], [0, 7, 8]]
    assert test.times is not None and test.times.tolist() == [[300, 400, 500], [0, 1000, 2000]]
    full = dm.store.eval_batch(torch.arange(3), EvalSplit.FULL)
    assert full.times is not None and full.times.tolist() == [[400, 500, 600], [1000, 2000, 3000], [0, 5, 6]]


def test_cloze_inputs_keep_the_times_of_masked_items_and_the_mask_takes_the_last_time(tmp_path: Path) -> None:
    dm = timed_dm(tmp_path, SampleSpec("cloze", 3, mask_prob=1.0, times=True))
    batch = train_batch(dm, [0])
    assert batch.input.tolist() == [[dm.n_items + 1] * 3]  # every item masked: what, not when
    assert batch.times is not None and batch.times.tolist() == [[200, 300, 400]]
    test = dm.on_after_batch_transfer(EvalRequest(torch.tensor([0]), EvalSplit.TEST), 0)
    assert test.input.tolist() == [[4, 5, dm.n_items + 1]]
    assert test.times is not None and test.times.tolist() == [[400, 500, 500]]


def test_batches_of_other_models_carry_no_times(tmp_path: Path) -> None:
    dm = timed_dm(tmp_path, SampleSpec("next", 3))
    assert train_batch(dm, [0]).times is None
    assert dm.store.eval_batch(torch.arange(2), EvalSplit.TEST).times is None


def test_a_model_that_reads_times_refuses_data_without_them(tmp_path: Path) -> None:
    dm = make_dm(tmp_path, SampleSpec("next", 3, times=True))
    with pytest.raises(ConfigError, match=r"11 interactions of the data have none.*model.time_buckets=0"):
        _ = dm.store
