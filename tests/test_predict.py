"""Top-K export through the real CLI: original ids, history filtered, formats, user selection, errors."""

from pathlib import Path

import polars as pl
import pytest

from recsys_attn.atomic import write_atomic
from tests.conftest import run_cli


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
    assert recs.columns == ["user_id", "rank", "item_id", "score"]
    assert recs.height == 5 * log["user_id"].n_unique()  # history=all: every user, k items each
    assert recs.group_by("user_id").agg(pl.col("rank")).sort("user_id")["rank"].to_list()[0] == [0, 1, 2, 3, 4]
    assert set(recs["item_id"].unique().to_list()) <= set(log["item_id"].unique().to_list())
    # nothing the user already interacted with (the test item included) is recommended again
    assert recs.join(log, on=["user_id", "item_id"], how="inner").height == 0
    assert recs.group_by("user_id").agg(pl.col("score").diff().max())["score"].max() <= 0  # best first
    assert "30,200 recommendations for 6,040 users" in out


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
