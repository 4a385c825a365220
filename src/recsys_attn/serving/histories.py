"""Histories of users the model has never seen, read from a file in original ids, in blocks ready to serve.

The format follows the file's suffix:

- ``.csv``, ``.tsv``, ``.parquet``: a header naming ``user_id``, ``item_id`` and optionally ``timestamp``, one
  interaction a row, a user's rows anywhere in the file; users come in the order of their first row, each user's
  items ordered by timestamp, then by file order. Checked as the project's tabular reader checks a log; a file of
  more than ``history_tables.PART_ROWS`` rows is split on disk into buckets of whole users, each grouped alone, and
  merged back in order (``history_tables``): memory does not grow with the file (a few bytes a user are kept).
- ``.jsonl``, ``.ndjson``: one user a line, ``{"user_id": ..., "items": [...]}``, items oldest first. Read in
  blocks of users, so memory stays bounded however long the file is; each line is served as it stands, and a
  user id on a second line is an error naming both lines (ids seen are kept as 64-bit hashes, 8 bytes a user).

Item ids are matched as text against the model's id map spelled its own way: with integer ids, ``5`` and
``"5"`` are item 5 but ``"05"`` is not, and is counted as unknown like any id the model never saw. User ids
take the dtype of the data's user ids (an integer data set needs integer user ids). Unknown items are dropped
and counted per user; a user left with none is served the popularity ranking by the caller.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import Tensor

from recsys_attn.data.errors import DataError, shorten
from recsys_attn.data.lines import Rows, check_file, decoded_lines
from recsys_attn.data.samples import SampleSpec
from recsys_attn.data.split import EvalSet
from recsys_attn.errors import ConfigError
from recsys_attn.serving.history_tables import ENCODING, read_table
from recsys_attn.serving.seen_ids import SeenHashes

Frames = Generator[pl.DataFrame, None, None]
"""What a format's reader yields: frames of ``user_id`` (text), ``items`` (list of text, oldest first), ``line``."""

ENCODING_ADVICE = "; set data.source.encoding"
"""How the message of an undecodable byte (``data.lines.decoded_lines``) starts its advice, dropped here."""

JSONL_EXPECT = 'one JSON object a line, {"user_id": ..., "items": [...]}'
_JSONL_SCHEMA = pl.Schema({"user_id": pl.String(), "items": pl.List(pl.String())})


def history_file(value: str, key: str = "histories") -> Path:
    """The history file named by the setting ``key``: a file with a suffix of ``SUFFIXES``.

    Raises:
        ConfigError: naming ``key`` when the suffix is not one of ``SUFFIXES`` or there is no such file.
    """
    path = Path(value)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"{key}: {path} must end in one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise ConfigError(f"{key}: no file at {path.resolve()}")
    return path


@dataclass(frozen=True)
class HistoryBlock:
    """Consecutive users of a history file, their known items as flat tensors (the layout of ``EvalSet``)."""

    user_ids: pl.Series  # [U] original user ids, in the data's user id dtype
    values: Tensor  # [I] int32 item_idx of the items the model knows, users concatenated, oldest first
    starts: Tensor  # [U] int64 start of each user's items in values
    ends: Tensor  # [U] int64 exclusive end
    n_unknown: Tensor  # [U] int32 history items the model does not know (dropped)

    def __len__(self) -> int:
        return int(self.starts.numel())

    def eval_set(self) -> EvalSet:
        """The block as an ``EvalSet`` over ``values``: row ``i`` is user ``i``'s whole history, no target."""
        n = len(self)
        return EvalSet(torch.arange(n), self.starts, self.ends, torch.zeros(n, dtype=torch.long), self.ends)


def read_histories(
    path: Path, users: pl.DataFrame, items: pl.DataFrame, block_users: int, max_users: int | None = None
) -> Iterator[HistoryBlock]:
    """The histories of ``path`` in blocks of at most ``block_users`` users, in file order.

    Args:
        path: A ``.csv``/``.tsv``/``.parquet``/``.jsonl``/``.ndjson`` file (``SUFFIXES``).
        users: The data's ``user_idx``/``user_id`` table (its ``user_id`` dtype is the one user ids get).
        items: The data's ``item_idx``/``item_id`` table, the model's items.
        block_users: Users per block.
        max_users: Only the first ``max_users`` users (all when None).

    Raises:
        DataError: A malformed file, naming the file and line: for JSON lines when the block holding it is reached,
            for a table before the first block.
    """
    path = Path(path)
    read = SUFFIXES.get(path.suffix.lower())
    if read is None:
        raise DataError(f"{path}: a history file must end in one of {', '.join(SUFFIXES)}")
    user_dtype = users.schema["user_id"]
    by_text = items.select(pl.col("item_id").cast(pl.String), pl.col("item_idx").cast(pl.Int32))
    rows = Rows(path, ENCODING, text=path.suffix.lower() != ".parquet")
    frames = read(path, block_users)
    try:
        served = _head(frames, max_users)
        if read is _jsonl:
            served = _each_user_once(path, served)
        for frame in served:
            yield _block(frame, by_text, user_dtype, rows)
    except DataError as exc:
        if ENCODING_ADVICE not in str(exc):
            raise
        # a history file is always UTF-8: no data.source.encoding to set
        raise DataError(str(exc).split(ENCODING_ADVICE)[0] + "; history files must be UTF-8") from None
    finally:
        frames.close()  # a table's reader removes its temporary files now, also when stopped early


def _head(frames: Iterator[pl.DataFrame], max_users: int | None) -> Iterator[pl.DataFrame]:
    """The non-empty ``frames`` up to ``max_users`` users in all (all when None)."""
    left = max_users
    for frame in frames:
        if left is not None:
            frame = frame.head(left)
            left -= frame.height
        if frame.height:
            yield frame
        if left == 0:
            return


def _block(frame: pl.DataFrame, by_text: pl.DataFrame, user_dtype: pl.DataType, rows: Rows) -> HistoryBlock:
    """A ``HistoryBlock`` of ``frame`` (``user_id`` text, ``items`` list of text, ``line``)."""
    user_ids = _user_ids(frame, user_dtype, rows)
    lengths = frame["items"].list.len().cast(pl.Int64).to_torch()  # [U]
    flat = frame.filter(pl.col("items").list.len() > 0)["items"].explode().rename("item_id")  # [I] in user order
    found = flat.to_frame().join(by_text, on="item_id", how="left", maintain_order="left")["item_idx"]  # [I]
    known = found.is_not_null().to_torch()  # [I]
    row_of = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)  # [I] user of each item
    n_known = torch.bincount(row_of[known], minlength=lengths.numel())  # [U]
    ends = torch.cumsum(n_known, 0)  # [U]
    values = found.drop_nulls().to_torch().to(torch.int32)  # [I'] known items only, order kept
    return HistoryBlock(user_ids, values, ends - n_known, ends, (lengths - n_known).to(torch.int32))


def _user_ids(frame: pl.DataFrame, user_dtype: pl.DataType, rows: Rows) -> pl.Series:
    """``frame``'s text ``user_id`` in the data's dtype; an id that is not of it fails naming its line."""
    text = frame["user_id"]
    if not user_dtype.is_integer():
        return text.cast(user_dtype)
    parsed = text.cast(pl.Int64, strict=False)
    bad = parsed.is_null() | (parsed.cast(pl.String) != text)  # '007', '1.5', 'abc'
    if bad.any():
        rows.check(frame, pl.lit(bad), "user_id", "user_id is not an integer, and the data's user ids are integers")
    return parsed.cast(user_dtype)


# --------------------------------------------------------------------------------------------
# Each format to frames of ``user_id`` (text), ``items`` (list of text, oldest first) and ``line``.


def _tabular(separator: str | None) -> Callable[[Path, int], Frames]:
    """The reader of a csv (``,``), tsv (tab) or parquet (None) file of ``user_id,item_id[,timestamp]`` rows."""

    def read(path: Path, block_users: int) -> Frames:
        yield from read_table(path, separator, block_users)

    return read


def _jsonl(path: Path, block_users: int, stop: int | None = None) -> Frames:
    """Blocks of ``block_users`` non-blank lines of a JSON-lines file (before line ``stop``), parsed by polars."""
    check_file(path, JSONL_EXPECT)
    lines: list[int] = []
    texts: list[str] = []
    empty = True
    for lineno, text in decoded_lines(path, ENCODING):
        if stop is not None and lineno >= stop:
            break
        if not text.strip():
            continue
        lines.append(lineno)
        texts.append(text)
        if len(texts) == block_users:
            yield _parse_jsonl(path, lines, texts)
            lines, texts, empty = [], [], False
    if texts:
        yield _parse_jsonl(path, lines, texts)
    elif empty:
        raise DataError(f"{path}: empty file, expected {JSONL_EXPECT}")


def _parse_jsonl(path: Path, lines: list[int], texts: list[str]) -> pl.DataFrame:
    """``user_id``, ``items`` and ``line`` of the JSON objects ``texts`` found on ``lines``."""
    try:
        frame = pl.read_ndjson(io.StringIO("\n".join(texts)), schema=_JSONL_SCHEMA)
    except pl.exceptions.PolarsError as exc:
        _first_bad_json(path, lines, texts)
        where = f"{path}:{lines[0]}-{lines[-1]}"
        raise DataError(f"{where}: could not be parsed as {JSONL_EXPECT}: {shorten(exc)}") from exc
    if frame.height != len(texts):  # polars read one line as several objects, or as none
        _first_bad_json(path, lines, texts)
        raise DataError(f"{path}:{lines[0]}-{lines[-1]}: could not be parsed as {JSONL_EXPECT}")
    frame = frame.with_columns(pl.Series("line", lines, dtype=pl.Int64))
    checks = [
        (pl.col("user_id").is_null(), "user_id", f'no "user_id" (or null); expected {JSONL_EXPECT}'),
        (pl.col("items").is_null(), "items", f'no "items" list (or null); expected {JSONL_EXPECT}'),
        (
            pl.col("items").list.eval(pl.element().is_null()).list.any(),
            "items",
            '"items" holds a null; expected item ids',
        ),
    ]
    if frame.select(pl.any_horizontal(bad.any() for bad, _, _ in checks)).item():  # one pass when all is well
        rows = Rows(path, ENCODING)
        for bad, key, problem in checks:
            rows.check(frame, bad, key, problem)
    return frame


def _first_bad_json(path: Path, lines: list[int], texts: list[str]) -> None:
    """Raise ``DataError`` for the first of ``texts`` that is not a JSON object with an ``items`` list."""
    import json

    for line, text in zip(lines, texts, strict=True):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line}: not valid JSON ({exc.msg}), got '{shorten(text)}'") from None
        if not isinstance(value, dict):
            raise DataError(f"{path}:{line}: expected {JSONL_EXPECT}, got '{shorten(text)}'")
        if not isinstance(value.get("items", []), list):
            raise DataError(f"{path}:{line}: \"items\" must be a list of item ids, got '{shorten(text)}'")
        if isinstance(value.get("user_id"), dict | list):
            raise DataError(f"{path}:{line}: \"user_id\" must be a number or a string, got '{shorten(text)}'")


def _each_user_once(path: Path, frames: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """``frames`` of a JSON-lines file; a ``user_id`` on a second line fails naming both lines.

    Ids of earlier frames are kept as their 64-bit hashes (``SeenHashes``); a hash seen before is looked up in the
    file before it is reported, so two ids sharing a hash are no error.
    """
    seen = SeenHashes()
    for frame in frames:
        ids = frame["user_id"]
        lines = frame["line"].to_numpy()  # [U] ascending
        hashes = ids.hash().to_numpy()  # [U] uint64
        first = frame.select(pl.col("line").min().over("user_id")).to_series().to_numpy()  # [U] within the frame
        again = np.flatnonzero(lines != first)  # [r] rows whose id is on an earlier line of the frame
        repeat = (int(lines[again[0]]), int(first[again[0]]), int(again[0])) if again.size else None
        for row in np.flatnonzero(seen.seen(hashes)).tolist():  # in line order; almost always none
            if repeat is not None and lines[row] >= repeat[0]:
                break
            earlier = _first_line_of(path, ids[row], int(lines[row]))
            if earlier is not None:
                repeat = (int(lines[row]), earlier, row)
                break
        if repeat is not None:
            line, before, row = repeat
            raise DataError(
                f"{path}:{line}: user_id '{shorten(ids[row])}' already appeared on line {before}; "
                "each user must be on one line"
            )
        seen.add(hashes)
        yield frame


def _first_line_of(path: Path, user_id: str, before: int) -> int | None:
    """The first line of ``path`` before line ``before`` whose ``user_id`` is ``user_id`` (None: there is none)."""
    for frame in _jsonl(path, 1 << 16, stop=before):
        found = frame.filter(pl.col("user_id") == user_id)["line"]
        if found.len():
            return int(found[0])
    return None


SUFFIXES: dict[str, Callable[[Path, int], Frames]] = {
    ".csv": _tabular(","),
    ".tsv": _tabular("\t"),
    ".parquet": _tabular(None),
    ".jsonl": _jsonl,
    ".ndjson": _jsonl,
}
"""The reader of each history file suffix: ``(path, block_users) -> frames of user_id, items, line``."""


def refuse_untimed(spec: SampleSpec, source: str) -> None:
    """Refuse, in one line, to serve a model that reads timestamps from ``source``, whose histories have none."""
    if spec.times:
        raise ConfigError(
            f"this model reads each history item's timestamp (model.time_buckets), and histories from {source} "
            "are read without them: serve the data set's own users (predict without a history file), or train "
            "with model.time_buckets=0"
        )
