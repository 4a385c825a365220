"""Degenerate data (a part of the split without any user) ends in one line saying what to change, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.errors import DataError
from recsys_attn.data.preprocess import Preparation, relax_advice
from recsys_attn.data.samples import SampleSpec
from recsys_attn.data.sources import Source
from recsys_attn.data.split import SplitConfig
from tests.conftest import quiet_trainer, run_cli

NEXT, CLOZE = SampleSpec("next", 5), SampleSpec("cloze", 5, mask_prob=0.5)
LOO = "leave-one-out holds out a user's last 2 items and needs 1 before them: 3 interactions"
TRAIN_PART = "under leave-one-out all of a user's items, or all but the last 2 when there are 3 or more"


def log(n_users: int, n_items: int, times: list[int] | None = None) -> str:
    """A csv log: each user takes ``n_items`` items (at ``times``, default 1, 2, ...)."""
    times = times or list(range(1, n_items + 1))
    rows = [f"u{u},i{(u + k) % 7},{times[k]}" for u in range(n_users) for k in range(n_items)]
    return "user_id,item_id,timestamp\n" + "\n".join(rows) + "\n"


def datamodule(
    tmp_path: Path,
    text: str,
    spec: SampleSpec | None = NEXT,
    prep: Preparation | None = None,
    split: SplitConfig | None = None,
    **settings: object,
) -> tuple[SeqDataModule, Path]:
    """A datamodule over the csv ``text``, set up as train.py does before the trainer exists."""
    path = tmp_path / "log.csv"
    path.write_text(text)
    columns = {"user": "user_id", "item": "item_id", "timestamp": "timestamp"}
    dm = SeqDataModule(
        Source(name="toy", format="csv", path=str(path), columns=columns),
        prep or Preparation(),
        split or SplitConfig(),
        data_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        **settings,
    )
    dm.setup("fit")  # no trainer yet: nothing is checked (evaluate, predict and export set up this way too)
    if spec is not None:
        dm.connect(spec)
    return dm, path


def under_trainer(dm: SeqDataModule, tmp_path: Path, stage: str, **trainer: object) -> None:
    """``dm.setup(stage)`` as a Lightning trainer calls it."""
    dm.trainer = quiet_trainer(tmp_path, **trainer)
    dm.setup(stage)


def test_no_user_with_a_validation_item_fails_fit_naming_the_file(tmp_path: Path) -> None:
    dm, path = datamodule(tmp_path, log(30, 2))
    with pytest.raises(DataError) as err:
        under_trainer(dm, tmp_path, "fit")
    assert str(err.value) == (
        f"data: no user of {path} has enough interactions for a validation item ({LOO}; the longest history has 2 "
        "after preparation); use a larger log"
    )


@pytest.mark.parametrize(("stage", "part"), [("validate", "validation"), ("test", "test")])
def test_validate_and_test_need_their_own_part(tmp_path: Path, stage: str, part: str) -> None:
    dm, path = datamodule(tmp_path, log(30, 2))
    with pytest.raises(DataError, match=rf"^data: no user of {path} has enough interactions for a {part} item \("):
        under_trainer(dm, tmp_path, stage)


def test_a_fit_without_validation_needs_no_validation_user(tmp_path: Path) -> None:
    dm, _ = datamodule(tmp_path, log(30, 2))
    under_trainer(dm, tmp_path, "fit", limit_val_batches=0)  # users of 2 items train on both
    assert dm.store.n_train_samples == 30


def test_no_training_sample_fails_fit(tmp_path: Path) -> None:
    dm, path = datamodule(tmp_path, log(30, 3))  # 1 training item each: no next-item target
    with pytest.raises(DataError) as err:
        under_trainer(dm, tmp_path, "fit")
    assert str(err.value) == (
        f"data: no user of {path} has enough interactions for a training sample (next-item samples need 2 items in a "
        f"user's training part, {TRAIN_PART}; the longest training part has 1); use a larger log"
    )


def test_cloze_samples_need_one_training_item(tmp_path: Path) -> None:
    dm, _ = datamodule(tmp_path, log(30, 3), CLOZE)
    under_trainer(dm, tmp_path, "fit")
    assert dm.store.n_train_samples > 0


def test_max_train_users_is_named_when_it_leaves_no_sample(tmp_path: Path) -> None:
    text = log(1, 3) + "\n".join(f"v,i{k},{k}" for k in range(6)) + "\n"  # u0: 1 training item, v: 4
    dm, _ = datamodule(tmp_path, text, max_train_users=1)
    with pytest.raises(DataError) as err:
        under_trainer(dm, tmp_path, "fit")
    assert str(err.value).endswith(
        "the longest training part among the first data.max_train_users=1 has 1); use a larger log or raise "
        "data.max_train_users"
    )


def test_the_filter_that_shortened_the_histories_is_named(tmp_path: Path) -> None:
    # every user: two common items and a third seen by nobody else, which the item k-core drops
    rows = [f"u{u},{item},{t}" for u in range(10) for t, item in enumerate(["a", "b", f"rare{u}"])]
    text = "user_id,item_id,timestamp\n" + "\n".join(rows) + "\n"
    dm, _ = datamodule(tmp_path, text, prep=Preparation(min_item_interactions=2))
    with pytest.raises(DataError) as err:
        under_trainer(dm, tmp_path, "validate")
    assert str(err.value).endswith(
        "; use a larger log or lower data.preparation.min_item_interactions (now 2) (preparation kept 20 of 30 rows)"
    )


def test_relax_advice_names_only_filters_that_shorten_histories() -> None:
    assert relax_advice(Preparation(), 30, 20) == ""  # dedup: only repeats
    assert relax_advice(Preparation(min_item_interactions=5), 30, 30) == ""  # nothing dropped
    both = relax_advice(Preparation(min_item_interactions=5, rating_threshold=4), 30, 10)
    assert both == (
        " or lower data.preparation.min_item_interactions (now 5) or data.preparation.rating_threshold (now 4.0) "
        "(preparation kept 10 of 30 rows)"
    )


def test_temporal_split_names_its_quantiles(tmp_path: Path) -> None:
    # every user at the same 8 times: the 0.9 and 0.95 quantiles are both the last time, no user between them
    dm, path = datamodule(tmp_path, log(30, 8), split=SplitConfig(kind="temporal"))
    with pytest.raises(DataError) as err:
        under_trainer(dm, tmp_path, "validate")
    assert str(err.value) == (
        f"data: no user of {path} has enough interactions for a validation item (data.split.kind=temporal needs a "
        "user with an interaction before the val_quantile=0.9 timestamp quantile and one from there to the "
        "test_quantile=0.95 quantile); lower data.split.val_quantile, or use data.split.kind=leave_one_out"
    )
    under_trainer(dm, tmp_path, "test")  # the last time is each user's test item


def test_temporal_split_without_test_users(tmp_path: Path) -> None:
    dm, _ = datamodule(tmp_path, log(30, 3, times=[5, 5, 5]), split=SplitConfig(kind="temporal"))
    with pytest.raises(DataError, match=r"test item \(data.split.kind=temporal needs .*; lower data.split.test_quant"):
        under_trainer(dm, tmp_path, "test")


# ---------------------------------------------------------------------------------- through the CLI


@pytest.mark.parametrize(
    ("n_items", "overrides", "message"),
    [
        (2, (), f"enough interactions for a validation item ({LOO}; the longest history has 2 after preparation)"),
        (3, (), "enough interactions for a training sample (next-item samples need 2 items"),
        (1, ("model=bert4rec",), f"enough interactions for a validation item ({LOO}; the longest history has 1"),
    ],
)
def test_train_fails_in_one_line(tmp_path: Path, n_items: int, overrides: tuple[str, ...], message: str) -> None:
    path = tmp_path / "log.csv"
    path.write_text(log(30, n_items))
    proc = run_cli(
        "recsys_attn.train",
        "data=interactions",
        f"data.source.path={path}",
        "data.preparation.min_user_interactions=0",
        "data.preparation.min_item_interactions=0",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "logger=none",
        "trainer.accelerator=cpu",
        "model.max_len=5",
        "model.hidden_size=8",
        *overrides,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [proc.stderr.strip().splitlines()[-1]], proc.stderr[-2000:]
    assert errors[0].startswith(f"error: data: no user of {path} has {message}"), errors[0]
