"""Item features of a prepared catalogue: feature files read, joined on the item ids, encoded and cached.

``load_item_features`` turns a ``FeatureSet`` into ``ItemFeatures`` (row ``i`` = ``item_idx`` i): categorical
values become codes of a vocabulary (most frequent first), multi-valued ones rows of codes, numbers are scaled
over the catalogue, vectors kept. An item without a value gets the ``MISSING`` code (or a zero row and its
``missing`` flag). The result is cached beside the prepared log, keyed by the settings, the files and the
prepared log: a changed features file is read again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import torch

from recsys_attn.atomic import write_atomic
from recsys_attn.data.download import data_path, locate
from recsys_attn.data.errors import DataError
from recsys_attn.data.feature_config import FeatureFile, FeatureSet
from recsys_attn.data.feature_readers import RawFeatures, canonical_key, read_features
from recsys_attn.data.item_features import FIRST_VALUE, MISSING, NO_ITEM, FeatureColumn, ItemFeatures
from recsys_attn.data.prepared import Prepared
from recsys_attn.data.readers import read_id_map
from recsys_attn.data.sources import Source
from recsys_attn.errors import ConfigError

log = logging.getLogger(__name__)

FEATURES_VERSION = 1
"""Bump when reading or encoding changes its output, to invalidate every features cache."""


def load_item_features(
    features: FeatureSet, source: Source, prepared: Prepared, data_dir: str | Path, cache_dir: str | Path
) -> ItemFeatures | None:
    """The encoded features of ``prepared``'s items (None without feature files), from the cache when it matches."""
    if not features:
        return None
    paths = [locate(f, data_dir) for f in features.files]
    maps = [_key_map_path(f, source, data_dir) for f in features.files]
    key = _cache_key(features, paths, maps, prepared)
    folder = Path(cache_dir).expanduser().absolute() / "features" / f"{source.name}-{key[:12]}"
    if (folder / "features.pt").is_file():
        log.info("%s: reusing encoded features %s", source.name, folder)
        return _read(folder)
    catalogue = prepared.items.sort("item_idx").select("item_idx", canonical_key(pl.col("item_id")))
    columns: list[FeatureColumn] = []
    for spec, path, key_map in zip(features.files, paths, maps, strict=True):
        keyed = catalogue if key_map is None else _mapped(catalogue, key_map)
        columns += encode(read_features(path, spec), keyed, spec, prepared.n_items)
    result = ItemFeatures(tuple(columns))
    _write(result, folder, features)
    return result


def with_feature_items(features: FeatureSet, prepared: Prepared, data_dir: str | Path) -> Prepared:
    """``prepared`` with the items only feature files with ``unknown_items=add`` name appended to its catalogue.

    The new items get ``item_idx`` ``n_items + 1, ...`` in the order of their first row (file by file) and no
    interaction: cold items, scored through their features. Their ids take the type of the log's item ids.
    """
    adding = [f for f in features.files if f.unknown_items == "add"]
    if not adding:
        return prepared
    known = prepared.items.select(canonical_key(pl.col("item_id")))
    id_type = prepared.items.schema["item_id"]
    new: list[pl.DataFrame] = []
    for spec in adding:
        if spec.key_map is not None:
            raise ConfigError(
                f"{spec.config_key}.unknown_items=add: this file is keyed through key_map={spec.key_map}, so its "
                "new items have no id in the log's numbering; key it by the log's item ids, or use report"
            )
        raw = read_features(locate(spec, data_dir), spec)
        rows = raw.frame.select("key", "line").unique("key", keep="first", maintain_order=True)
        rows = rows.join(
            pl.concat([known, *(n.select("key") for n in new)]), on="key", how="anti", maintain_order="left"
        )
        ids = rows.with_columns(pl.col("key").cast(id_type, strict=False).alias("item_id"))
        raw.rows.check(ids, pl.col("item_id").is_null(), "key", f"an item id that is not of the log's type ({id_type})")
        new.append(ids.select("key", "item_id"))
    added = pl.concat(new).select("item_id")
    if not added.height:
        return prepared
    n = prepared.n_items
    rows = added.with_columns(
        (pl.int_range(pl.len()) + n + 1).cast(prepared.items.schema["item_idx"]).alias("item_idx")
    )
    items = pl.concat([prepared.items, rows.select(prepared.items.columns)])
    log.info(
        "%d items have features and no interaction (unknown_items=add): added to the catalogue of %d as cold items",
        added.height,
        n,
    )
    meta = {**prepared.meta, "n_items": items.height, "feature_only_items": added.height}
    return Prepared(prepared.interactions, prepared.users, items, meta)


def _key_map_path(spec: FeatureFile, source: Source, data_dir: str | Path) -> Path | None:
    """The key map to apply, or None: none set, or the log's ids are already the original ones (the same map)."""
    if spec.key_map is None:
        return None
    path = data_path(spec.key_map, data_dir)
    if source.item_id_map is not None:
        if data_path(source.item_id_map, data_dir) == path:
            return None  # data.source.item_id_map gave the log these ids already
        raise DataError(
            f"{spec.config_key}.key_map={spec.key_map} and data.source.item_id_map={source.item_id_map} both rename "
            "the log's item ids; keep the one that gives the ids of the features file"
        )
    if not path.is_file():
        raise DataError(f"{spec.config_key}.key_map: no file at {path}")
    return path


def _mapped(catalogue: pl.DataFrame, key_map: Path) -> pl.DataFrame:
    """``catalogue`` keyed by the original ids ``key_map`` gives its item ids; an unmapped item is an error."""
    table = read_id_map(key_map).select(
        pl.col("file_id").cast(pl.String).alias("key"), pl.col("original_id").cast(pl.String).alias("original")
    )
    joined = catalogue.join(table, on="key", how="left", maintain_order="left")
    unmapped = joined.filter(pl.col("original").is_null())
    if unmapped.height:
        raise DataError(f"{key_map}: item id {unmapped['key'][0]} of the log has no line (features key map)")
    return joined.select("item_idx", pl.col("original").alias("key"))


def encode(raw: RawFeatures, catalogue: pl.DataFrame, spec: FeatureFile, n_items: int) -> list[FeatureColumn]:
    """Each feature of ``raw`` encoded for item_idx 0..n_items (``catalogue``: ``item_idx``, ``key``)."""
    frame, rows = raw.frame, raw.rows
    first = frame.select("line", "key", pl.col("line").min().over("key").alias("_first"))
    again = first.filter(pl.col("line") != pl.col("_first")).sort("line").head(1)
    if again.height:
        line, item, first_line = again.row(0)
        row = "line" if rows.text else "row"
        rows.check(
            frame,
            pl.col("line") == line,
            "key",
            f"item {item} of column '{raw.item_column}' appears again (first on {row} {first_line})",
        )
    known = frame.join(catalogue, on="key", how="left", maintain_order="left")
    unknown = known.filter(pl.col("item_idx").is_null())
    if unknown.height:
        if spec.unknown_items == "error":
            line, item = unknown.select("line", "key").row(0)
            raise DataError(
                f"{rows.at(line)}: item {item} is not in the catalogue "
                f"({spec.config_key}.unknown_items=report counts such rows instead)"
            )
        log.info(
            "%s: %d of %d rows name items the prepared log does not have (dropped by its preparation?); ignored",
            spec.label,
            unknown.height,
            frame.height,
        )
    per_item = catalogue.join(known.drop("key"), on="item_idx", how="left").sort("item_idx")  # [n_items] rows
    without = int(per_item["line"].null_count())
    if without:
        log.info("%s: %d of %d items have no row; they get the 'missing' embedding", spec.label, without, n_items)
    idx = torch.from_numpy(per_item["item_idx"].to_numpy().astype("int64"))  # [n_items]
    out = []
    for name, kind in raw.kinds.items():
        where = f"column '{name}' ({spec.config_key}.columns.{name})"
        encoder = _ENCODERS[kind]
        out.append(encoder(name, per_item, idx, n_items, raw, where))
    return out


def _rows_of(n_items: int, idx: torch.Tensor, values: torch.Tensor, fill: float | int = 0) -> torch.Tensor:
    """``[n_items + 1, ...]`` with ``values`` ``[n, ...]`` at rows ``idx`` ``[n]`` and ``fill`` elsewhere."""
    out = torch.full((n_items + 1, *values.shape[1:]), fill, dtype=values.dtype)  # [n_items + 1, ...]
    out[idx] = values
    return out


def _missing(n_items: int, idx: torch.Tensor, null: pl.Series) -> torch.Tensor:
    """``[n_items + 1]`` bool: True for an item whose value is null (never row 0)."""
    return _rows_of(n_items, idx, torch.from_numpy(null.to_numpy().copy()), False)


def _vocab(values: pl.Series) -> pl.DataFrame:
    """``value`` and ``code`` of every distinct value: the most frequent first, ties by value (deterministic)."""
    counts = values.drop_nulls().value_counts(name="n").rename({values.name: "value"})
    ranked = counts.sort(["n", "value"], descending=[True, False])
    return ranked.with_columns((pl.int_range(pl.len()) + FIRST_VALUE).cast(pl.Int64).alias("code"))


def _categorical(
    name: str, per_item: pl.DataFrame, idx: torch.Tensor, n: int, raw: RawFeatures, where: str
) -> FeatureColumn:
    values = per_item[name]
    vocab = _vocab(values)
    codes = values.to_frame("value").join(vocab, on="value", how="left", maintain_order="left")["code"]
    column = torch.from_numpy(codes.fill_null(MISSING).to_numpy().astype("int64"))  # [n_items]
    missing = _missing(n, idx, values.is_null())
    return FeatureColumn(name, "categorical", _rows_of(n, idx, column, NO_ITEM), missing, tuple(vocab["value"]))


def _multi(name: str, per_item: pl.DataFrame, idx: torch.Tensor, n: int, raw: RawFeatures, where: str) -> FeatureColumn:
    lists = per_item.select("item_idx", pl.col(name).list.unique(maintain_order=True).alias("value"))
    exploded = lists.explode("value").drop_nulls("value")  # [M] (item, value) pairs
    vocab = _vocab(exploded["value"])
    coded = exploded.join(vocab, on="value", how="left", maintain_order="left")
    coded = coded.with_columns(pl.int_range(pl.len()).over("item_idx").alias("pos"))
    width = int(coded.select(pl.col("pos").max().fill_null(0)).item()) + 1
    empty = lists["value"].is_null() | (lists["value"].list.len() == 0)  # [n_items]
    values = torch.full((n + 1, width), NO_ITEM, dtype=torch.int64)  # [n_items + 1, W]
    values[idx[torch.from_numpy(empty.to_numpy().copy())], 0] = MISSING
    item = torch.from_numpy(coded["item_idx"].to_numpy().astype("int64"))  # [M]
    pos = torch.from_numpy(coded["pos"].to_numpy().astype("int64"))  # [M]
    values[item, pos] = torch.from_numpy(coded["code"].to_numpy().astype("int64"))
    return FeatureColumn(name, "multi", values, _missing(n, idx, empty), tuple(vocab["value"]))


def _numeric(
    name: str, per_item: pl.DataFrame, idx: torch.Tensor, n: int, raw: RawFeatures, where: str
) -> FeatureColumn:
    col = pl.col(name)
    raw.rows.check(raw.frame, col.is_nan() | col.is_infinite(), name, f"{where}: NaN or infinite")
    scale = raw.settings[name].scale
    if scale == "log":
        raw.rows.check(raw.frame, col < 0, name, f"{where}: a negative value cannot be scaled by 'log'")
    value = col.log1p() if scale == "log" else col
    if scale in ("standard", "log"):  # a constant (or single) value is only centred
        value = (value - value.mean()) / pl.when(value.std() > 0).then(value.std()).otherwise(1.0)
    elif scale == "minmax":
        span = value.max() - value.min()
        value = (value - value.min()) / pl.when(span > 0).then(span).otherwise(1.0)
    values = per_item.select(value)[name]  # [n_items] scaled over the catalogue's items
    column = torch.from_numpy(values.fill_null(0.0).to_numpy().astype("float32"))[:, None]  # [n_items, 1]
    return FeatureColumn(name, "numeric", _rows_of(n, idx, column), _missing(n, idx, per_item[name].is_null()))


def _vector(
    name: str, per_item: pl.DataFrame, idx: torch.Tensor, n: int, raw: RawFeatures, where: str
) -> FeatureColumn:
    col = pl.col(name)
    size = raw.frame.select(col.list.len().drop_nulls().first()).item()
    if not size:
        raise DataError(f"{raw.rows.path}: {where}: no vector has a value")
    raw.rows.check(raw.frame, col.list.len() != size, "key", f"{where}: a vector of another length than {size}")
    raw.rows.check(
        raw.frame,
        col.list.eval(pl.element().is_nan() | pl.element().is_infinite()).list.any(),
        "key",
        f"{where}: NaN or infinite in the vector",
    )
    values = per_item[name]
    dense = values.fill_null([0.0] * size).list.to_array(size).to_numpy().astype("float32")  # [n_items, d]
    column = torch.from_numpy(dense)
    return FeatureColumn(name, "vector", _rows_of(n, idx, column), _missing(n, idx, values.is_null()))


_ENCODERS = {"categorical": _categorical, "multi": _multi, "numeric": _numeric, "vector": _vector}


def _cache_key(features: FeatureSet, paths: list[Path], maps: list[Path | None], prepared: Prepared) -> str:
    """Hex sha256 of the settings, the files' and key maps' size and mtime, and the prepared log's key."""
    payload: dict[str, Any] = {
        "features": features.to_dict(),
        "version": FEATURES_VERSION,
        "files": [_stat(p) for p in paths],
        "maps": [None if m is None else _stat(m) for m in maps],
        "prepared": prepared.meta.get("config_hash"),
        "n_items": prepared.n_items,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _stat(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write(features: ItemFeatures, folder: Path, settings: FeatureSet) -> None:
    """Write ``features`` to ``folder`` whole (another process's copy, written meanwhile, is kept)."""
    saved = [asdict(c) for c in features.columns]

    def write(tmp: Path) -> None:
        torch.save(saved, tmp / "features.pt")
        (tmp / "settings.json").write_text(json.dumps(settings.to_dict(), indent=2) + "\n")

    try:
        write_atomic(folder, write, folder=True)
    except OSError:
        if not (folder / "features.pt").is_file():
            raise
    else:
        log.info("features encoded: %s; cached in %s", _summary(features), folder)


def _read(folder: Path) -> ItemFeatures:
    try:
        saved = torch.load(folder / "features.pt", weights_only=True)
        columns = tuple(FeatureColumn(**{**c, "vocab": tuple(c["vocab"])}) for c in saved)
    except (OSError, RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise DataError(f"features cache {folder} is unreadable ({exc}); delete the folder to rebuild it") from exc
    return ItemFeatures(columns)


def _summary(features: ItemFeatures) -> str:
    parts = []
    for c in features.columns:
        size = f"{len(c.vocab)} values" if c.vocab else f"width {c.width}"
        parts.append(f"{c.name} ({c.kind}, {size}, {int(c.missing.sum())} items missing)")
    return ", ".join(parts)
