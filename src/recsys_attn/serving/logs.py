"""Logs of served slates: read, check (errors name the file and line), and turn into internal-index tensors.

A log holds one row per served item: ``user_id, item_id, rank, propensity, reward`` (original ids; other
columns are ignored), e.g. the output of ``predict policy=...`` with a ``reward`` column joined on. Each user
has one slate whose ranks run 0, 1, 2, ... (0 = top) with no gap and no repeated item; ``propensity`` is the
logging policy's probability of that item at that rank given the items above, in (0, 1]; ``reward`` is a
finite number (1/0 for a click).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import torch

from recsys_attn.constants import PAD
from recsys_attn.errors import ConfigError, RecsysError
from recsys_attn.serving.ope_estimators import LoggedSlates

LOG_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "rank", "propensity", "reward")

READERS: dict[str, Callable[[Path], pl.DataFrame]] = {
    ".parquet": pl.read_parquet,
    ".csv": lambda path: pl.read_csv(path, infer_schema_length=None),
}

ROW = "_row"
"""The row index (0-based, data rows) kept beside the columns, so later checks can name the line."""


class LogError(RecsysError):
    """A log of served slates is malformed; the message names the file and the line (or column)."""


def read_log(path: str | Path) -> pl.DataFrame:
    """The checked log: the five columns and ``_row``, sorted by user, then rank.

    Raises:
        ConfigError: naming ``logged`` when there is no such file or it is neither .parquet nor .csv.
        LogError: naming the file and line when a column is missing or a value is wrong.
    """
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"logged: {path} must end in one of {', '.join(READERS)}")
    if not path.is_file():
        raise ConfigError(f"logged: no file at {path.resolve()}")
    try:
        frame = reader(path)
    except Exception as exc:  # a truncated or foreign file: name it, not a Rust traceback
        raise LogError(f"{path}: cannot read it as {path.suffix[1:]} ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in LOG_COLUMNS if c not in frame.columns]
    if missing:
        raise LogError(f"{path}: no column {missing[0]!r}; a log needs {', '.join(LOG_COLUMNS)} (one row per item)")
    if frame.height == 0:
        raise LogError(f"{path}: no rows; a log needs one row per served item")
    frame = frame.select(LOG_COLUMNS).with_row_index(ROW)
    at = _locator(path)
    for col in LOG_COLUMNS:
        _first_bad(frame, pl.col(col).is_null(), at, f"{col} is empty")
    frame = _integer_ranks(frame, path, at)
    frame = _numbers(frame, "propensity", at)
    frame = _numbers(frame, "reward", at)
    _first_bad(frame, ~pl.col("reward").is_finite(), at, "reward {reward} is not a finite number")
    in_range = (pl.col("propensity") > 0) & (pl.col("propensity") <= 1)
    _first_bad(frame, ~in_range, at, "propensity {propensity} is not in (0, 1] (the logging policy's probability)")
    _first_bad(frame, pl.col("rank") < 0, at, "rank {rank} is negative (0 = the top of the slate)")
    twice_ranked = pl.struct("user_id", "rank").is_duplicated()
    _first_bad(frame, twice_ranked, at, "user {user_id} has rank {rank} twice; the log holds one slate per user")
    twice_served = pl.struct("user_id", "item_id").is_duplicated()
    _first_bad(frame, twice_served, at, "user {user_id} was served item {item_id} twice")
    gaps = pl.col("rank").max().over("user_id") + 1 != pl.len().over("user_id")
    _first_bad(frame, gaps, at, "user {user_id}'s ranks have a gap; each slate's ranks run 0, 1, 2, ... (rank {rank})")
    return frame.sort("user_id", "rank")


def index_log(
    log: pl.DataFrame,
    users: pl.DataFrame,
    items: pl.DataFrame,
    path: str | Path,
    unknown_user: str = "is not a user of the data",
) -> LoggedSlates:
    """The log's slates in internal indices; one slate per user, in order of ``user_idx``.

    Args:
        log: The checked log (``read_log``).
        users: ``user_id`` -> ``user_idx`` of the users whose histories the target reads (the data's, or those
            of a history file).
        items: ``item_id`` -> ``item_idx`` of the model's items (the data's).
        path: The log file, named in errors.
        unknown_user: What an error says of a logged user missing from ``users``.

    Raises:
        LogError: naming the line of a user or item ``users``/``items`` does not hold.
    """
    at = _locator(Path(path))
    frame = _joined(log, users, "user_id", "user_idx")
    _first_bad(frame, pl.col("user_idx").is_null(), at, "user_id {user_id} " + unknown_user.replace("{", "{{"))
    frame = _joined(frame, items, "item_id", "item_idx")
    _first_bad(frame, pl.col("item_idx").is_null(), at, "item_id {item_id} is not an item the model knows")
    frame = frame.sort("user_idx", "rank").with_columns(
        (pl.col("user_idx").rank("dense") - 1).cast(pl.Int64).alias("_slate")
    )
    slate = torch.from_numpy(frame["_slate"].to_numpy().copy())  # [N]
    rank = torch.from_numpy(frame["rank"].cast(pl.Int64).to_numpy().copy())  # [N]
    n_slates = int(slate.max()) + 1 if slate.numel() else 0
    k = int(rank.max()) + 1 if rank.numel() else 1
    user_idx = torch.zeros(n_slates, dtype=torch.long).index_put_((slate,), _tensor(frame, "user_idx"))  # [S]
    item_idx = torch.full((n_slates, k), PAD, dtype=torch.long).index_put_((slate, rank), _tensor(frame, "item_idx"))
    propensity = torch.ones(n_slates, k).index_put_((slate, rank), _tensor(frame, "propensity").float())  # [S, K]
    reward = torch.zeros(n_slates, k).index_put_((slate, rank), _tensor(frame, "reward").float())  # [S, K]
    shown = torch.zeros(n_slates, k, dtype=torch.bool).index_put_((slate, rank), torch.tensor(True))  # [S, K]
    return LoggedSlates(user_idx, item_idx, propensity, reward, shown)


def _locator(path: Path) -> Callable[[int], str]:
    """``row -> "<file>, line <n>"`` (CSV: the header is line 1) or ``"<file>, row <n>"`` (Parquet, 1-based)."""
    if path.suffix.lower() == ".csv":
        return lambda row: f"{path}, line {row + 2}"
    return lambda row: f"{path}, row {row + 1}"


def _first_bad(frame: pl.DataFrame, bad: pl.Expr, at: Callable[[int], str], message: str) -> None:
    """Raise ``LogError("<where>: <message>")`` for the first row (in file order) where ``bad`` holds.

    ``message`` may name columns in braces (``{rank}``); they are filled from that row.
    """
    found = frame.filter(bad.fill_null(True)).sort(ROW).head(1)
    if found.height:
        row = found.row(0, named=True)
        values = {k: repr(v) if k.endswith("_id") else v for k, v in row.items()}
        raise LogError(f"{at(row[ROW])}: {message.format(**values)}")


def _integer_ranks(frame: pl.DataFrame, path: Path, at: Callable[[int], str]) -> pl.DataFrame:
    """``rank`` as Int64; a column of another type fails on its first non-integer value, or as a whole."""
    dtype = frame.schema["rank"]
    if dtype.is_integer():
        return frame.with_columns(pl.col("rank").cast(pl.Int64))
    as_float = pl.col("rank").cast(pl.Float64, strict=False)
    _first_bad(frame, as_float.is_null() | (as_float != as_float.floor()), at, "rank {rank!r} is not an integer")
    raise LogError(f"{path}: column rank holds {dtype} values; ranks must be integers (0 = the top of the slate)")


def _numbers(frame: pl.DataFrame, col: str, at: Callable[[int], str]) -> pl.DataFrame:
    if not frame.schema[col].is_numeric():
        as_float = pl.col(col).cast(pl.Float64, strict=False)
        _first_bad(frame, as_float.is_null(), at, f"{col} {{{col}!r}} is not a number")
    return frame.with_columns(pl.col(col).cast(pl.Float64))


def _joined(frame: pl.DataFrame, ids: pl.DataFrame, id_col: str, idx_col: str) -> pl.DataFrame:
    """``frame`` with ``idx_col`` from the id map ``ids`` (null where the id is unknown or of another type)."""
    key = pl.col(id_col).cast(ids.schema[id_col], strict=False).alias("_key")
    return frame.with_columns(key).join(ids.rename({id_col: "_key"}), on="_key", how="left").drop("_key")


def _tensor(frame: pl.DataFrame, col: str) -> torch.Tensor:
    return torch.from_numpy(frame[col].to_numpy().copy())
