"""Readers of item feature files: each returns a ``key`` column (the item id as text), ``line``, and one column per
feature in the type its kind needs, with the kinds resolved.

Types out: ``categorical`` String; ``multi`` List(String); ``numeric`` Float64; ``vector`` List(Float64). A null
is an item without a value. A value that cannot be what its kind needs is an error naming the file, line (row of
a Parquet file, entry of a JSON object) and column.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys_attn.data.errors import DataError, shorten
from recsys_attn.data.feature_config import ColumnSettings, FeatureFile, check_vector_source
from recsys_attn.data.lines import SEPARATOR_NAMES, Layout, Rows, check_file, decoded_lines
from recsys_attn.data.readers import read_table_columns, table_header

MOVIELENS_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
"""The 19 genre flags of ML-100K's ``u.item``, in column order (its ``u.genre``)."""


@dataclass(frozen=True)
class RawFeatures:
    """A features file as read: ``frame`` has ``line``, ``key`` and one column per feature.

    Attributes:
        frame: The rows, in file order.
        kinds: Feature name -> its kind (``auto`` resolved).
        settings: Feature name -> its column settings.
        rows: Names a row of the file in errors.
        item_column: The file's column of item ids, in errors (``id`` of a MovieLens file, ``key`` of JSON).
    """

    frame: pl.DataFrame
    kinds: dict[str, str]
    settings: dict[str, ColumnSettings]
    rows: Rows
    item_column: str


def read_features(path: Path, spec: FeatureFile) -> RawFeatures:
    """Read ``path`` as ``spec`` says (its format, item column and columns)."""
    fmt = spec.resolved_format
    return _READERS[fmt](path, spec)


def _tabular(path: Path, spec: FeatureFile) -> RawFeatures:
    fmt = spec.resolved_format
    text = fmt != "parquet"
    kind = "parquet" if not text else f"{SEPARATOR_NAMES[',' if fmt == 'csv' else chr(9)]}-separated"
    expect = f"a {kind} table with a header and an item column '{spec.item_column}'"
    layout = Layout("," if fmt == "csv" else "\t", expect, header=True, quoted=True) if text else None
    check_file(path, expect, text=text)
    names = table_header(path, layout, spec.encoding, kind)
    if spec.item_column not in names:
        raise DataError(
            f"{path}: no item column '{spec.item_column}' ({spec.config_key}.item_column); columns: {shorten(names)}"
        )
    wanted = _wanted(path, spec, [n for n in names if n != spec.item_column])
    df = read_table_columns(path, layout, spec.encoding, [spec.item_column, *wanted], kind)
    rows = Rows(path, spec.encoding, text=text)
    df = df.rename({spec.item_column: "key"})
    kinds, settings = {}, {}
    for name in wanted:
        setting = (spec.columns or {}).get(name, ColumnSettings())
        where = f"{spec.config_key}.columns.{name}"
        column, kinds[name] = _typed(df, name, setting, text, rows, where)
        check_vector_source(kinds[name], fmt, where)
        df, settings[name] = df.with_columns(column.alias(name)), setting
    return RawFeatures(_keyed(df, rows, spec.item_column), kinds, settings, rows, spec.item_column)


def _wanted(path: Path, spec: FeatureFile, available: list[str]) -> list[str]:
    """The feature columns: those ``spec.columns`` names (each must exist), else every column."""
    if spec.columns is None:
        if not available:
            raise DataError(f"{path}: no feature column beside the item column '{spec.item_column}'")
        return available
    for name in spec.columns:
        if name not in available:
            raise DataError(
                f"{path}: no column '{name}' ({spec.config_key}.columns.{name}); columns: {shorten(available)}"
            )
    return list(spec.columns)


def _typed(
    df: pl.DataFrame, name: str, setting: ColumnSettings, text: bool, rows: Rows, where: str
) -> tuple[pl.Series, str]:
    """Column ``name`` in the type of its kind, and the kind (``auto`` decided by the column's values)."""
    col, kind = df[name], setting.kind
    what = f"column '{name}'"
    if text:  # every field read as text; empty is missing
        col = col.str.strip_chars().replace("", None)
        if kind == "auto":
            as_number = col.cast(pl.Float64, strict=False)
            kind = "numeric" if as_number.null_count() == col.null_count() else "categorical"
        if kind == "multi":
            col = col.str.split(setting.separator).list.eval(pl.element().str.strip_chars().replace("", None))
            return col.list.drop_nulls(), kind
        if kind == "numeric":
            bad = col.is_not_null() & col.cast(pl.Float64, strict=False).is_null()
            rows.check(df.with_columns(bad.alias("_bad")), pl.col("_bad"), name, f"{what} ({where}): not a number")
            return col.cast(pl.Float64), kind
        return col, kind
    dtype = col.dtype
    inner = dtype.inner if isinstance(dtype, pl.List | pl.Array) else None
    if kind == "auto":
        if inner is not None:
            kind = "vector" if inner.is_float() else "multi"
        elif dtype.is_numeric():
            kind = "numeric"
        else:
            kind = "categorical"
    if kind == "categorical" and (dtype in (pl.String, pl.Categorical, pl.Boolean) or dtype.is_integer()):
        return col.cast(pl.String), kind
    if kind == "multi":
        if dtype == pl.String:
            return col.str.split(setting.separator).list.eval(pl.element().str.strip_chars()).list.drop_nulls(), kind
        if inner is not None and (inner == pl.String or inner.is_integer()):
            return col.cast(pl.List(pl.String)).list.drop_nulls(), kind
    if kind == "numeric" and dtype.is_numeric():
        return col.cast(pl.Float64), kind
    if kind == "vector" and inner is not None and inner.is_numeric():
        return col.cast(pl.List(pl.Float64)), kind
    problem = f"{what} of type {dtype} cannot be a {kind} feature ({where}.kind)"
    rows.check(df, pl.col(name).is_not_null(), name, problem)  # names the first row with a value
    raise DataError(f"{rows.path}: {problem}")  # no row has a value


def _keyed(df: pl.DataFrame, rows: Rows, item_column: str) -> pl.DataFrame:
    """``df`` with ``key`` as text (integers without leading zeros, as the log's ids); a missing id is an error."""
    key = df["key"]
    if key.dtype != pl.String:
        key = key.cast(pl.String)
    key = key.str.strip_chars()
    df = df.with_columns(key.alias("key"))
    rows.check(df, pl.col("key").is_null() | (pl.col("key") == ""), "key", f"missing item id in '{item_column}'")
    return df.with_columns(canonical_key(pl.col("key")))


def canonical_key(ids: pl.Expr) -> pl.Expr:
    """Item ids as the text features are joined on: an integer id without sign or leading zeros (``007`` = ``7``)."""
    as_int = ids.cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)
    return pl.when(as_int.is_not_null()).then(as_int.cast(pl.String)).otherwise(ids.cast(pl.String)).alias("key")


def _refuse_repeated_keys(path: Path) -> Callable[[list[tuple[str, object]]], dict[str, object]]:
    """A ``json`` object hook that refuses an object naming one key twice (``json`` would keep the last silently)."""

    def build(pairs: list[tuple[str, object]]) -> dict[str, object]:
        first: dict[str, int] = {}
        for n, (key, _) in enumerate(pairs, start=1):
            if key in first:
                raise DataError(f"{path}: entry {n}: item {shorten(key)} appears again (first as entry {first[key]})")
            first[key] = n
        return dict(pairs)

    return build


def _json(path: Path, spec: FeatureFile) -> RawFeatures:
    """``{"item id": [values], ...}``: one multi-valued feature (``columns``' one name; ``attributes`` by default)."""
    check_file(path, "a JSON object {item id: [values]}")
    try:
        data = json.loads(path.read_text(encoding=spec.encoding), object_pairs_hook=_refuse_repeated_keys(path))
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not valid JSON ({shorten(exc)})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{item id: [values]}}, got a {type(data).__name__}")
    names = list(spec.columns or {"attributes": ColumnSettings("multi")})
    if len(names) != 1:
        raise DataError(f"{path}: a JSON features file holds one feature; {spec.config_key}.columns names {names}")
    name = names[0]
    setting = (spec.columns or {}).get(name, ColumnSettings("multi"))
    rows = Rows(path, spec.encoding, text=False)
    values = []
    for n, (key, value) in enumerate(data.items(), start=1):
        listed = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in listed):
            raise DataError(f"{path}: entry {n} (item {shorten(key)}): values must be text or integers, got {value!r}")
        values.append([str(v) for v in listed])
    kind = "multi" if setting.kind in ("auto", "multi") else setting.kind
    if kind != "multi":
        raise DataError(f"{path}: a JSON features file holds a multi feature, not {kind} ({spec.config_key}.columns)")
    df = pl.DataFrame(
        {"line": range(1, len(values) + 1), "key": list(data), name: values},
        schema={"line": pl.Int64, "key": pl.String, name: pl.List(pl.String)},
    )
    return RawFeatures(_keyed(df, rows, "key"), {name: kind}, {name: setting}, rows, "key")


def _movielens(pattern: str, fields: tuple[str, ...], expect: str) -> Callable[[Path, FeatureFile], pl.DataFrame]:
    """A reader of a MovieLens metadata file: each line matched by ``pattern`` into ``fields`` (and ``line``)."""

    def read(path: Path, spec: FeatureFile) -> pl.DataFrame:
        check_file(path, expect)
        numbered = [(n, text) for n, text in decoded_lines(path, spec.encoding) if text.strip()]
        lines = pl.DataFrame({"line": [n for n, _ in numbered], "text": [t for _, t in numbered]})
        lines = lines.with_columns(pl.col("line").cast(pl.Int64))
        parsed = lines.with_columns(pl.col("text").str.extract_groups(pattern)).unnest("text")
        bad = parsed.filter(pl.col(fields[0]).is_null()).head(1)
        if bad.height:
            line = int(bad["line"][0])
            text = next(t for n, t in numbered if n == line)
            raise DataError(f"{path}:{line}: expected {expect}, got '{shorten(text)}'")
        return parsed.rename({fields[0]: "key"})

    return read


_read_movies = _movielens(r"^(?<id>\d+)::(?<title>.*)::(?<genres>[^:]*)$", ("id",), "'id::title::genres' (movies.dat)")
_read_u_item = _movielens(
    r"^(?<id>\d+)\|(?<title>[^|]*)\|(?<date>[^|]*)\|[^|]*\|[^|]*\|(?<flags>[01](?:\|[01]){18})$",
    ("id",),
    "'id|title|release date|video date|url|' and 19 genre flags (u.item)",
)


def _movielens_features(path: Path, spec: FeatureFile, df: pl.DataFrame) -> RawFeatures:
    """``genres`` (multi) and ``year`` (numeric) of a MovieLens file parsed into ``genres`` lists and ``year``."""
    rows = Rows(path, spec.encoding)
    available = {"genres": "multi", "year": "numeric"}
    wanted = _wanted(path, spec, list(available))
    kinds, settings = {}, {}
    for name in wanted:
        setting = (spec.columns or {}).get(name, ColumnSettings())
        if setting.kind not in ("auto", available[name]):
            raise DataError(
                f"{path}: '{name}' is a {available[name]} feature of this file ({spec.config_key}.columns.{name}.kind)"
            )
        kinds[name], settings[name] = available[name], setting
    return RawFeatures(_keyed(df.select("line", "key", *wanted), rows, "id"), kinds, settings, rows, "id")


def _movies(path: Path, spec: FeatureFile) -> RawFeatures:
    """ML-1M's ``movies.dat``: genres (``Action|Comedy``) and the year in the title (``Toy Story (1995)``)."""
    df = _read_movies(path, spec).with_columns(
        pl.col("genres").str.split("|").list.eval(pl.element().replace("", None)).list.drop_nulls(),
        pl.col("title").str.extract(r"\((\d{4})\)\s*$").cast(pl.Float64).alias("year"),
    )
    return _movielens_features(path, spec, df)


def _u_item(path: Path, spec: FeatureFile) -> RawFeatures:
    """ML-100K's ``u.item``: the genres whose flag is 1 (names of ``u.genre``) and the release date's year."""
    flags = pl.col("flags").str.split("|")
    genres = pl.concat_list(
        [pl.when(flags.list.get(i) == "1").then(pl.lit(g)).otherwise(None) for i, g in enumerate(MOVIELENS_GENRES)]
    )
    df = _read_u_item(path, spec).with_columns(
        genres.list.drop_nulls().alias("genres"),
        pl.col("date").str.extract(r"(\d{4})$").cast(pl.Float64).alias("year"),
    )
    return _movielens_features(path, spec, df)


_READERS: dict[str, Callable[[Path, FeatureFile], RawFeatures]] = {
    "csv": _tabular,
    "tsv": _tabular,
    "parquet": _tabular,
    "json": _json,
    "movielens_movies": _movies,
    "movielens_items": _u_item,
}
