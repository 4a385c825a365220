"""On-disk cache of prepared data sets, keyed by source, preparation and input file.

Layout: ``<cache_dir>/prepared/<name>-<hash12>/{interactions,users,items}.parquet`` and
``meta.json``. A folder is written whole (``write_atomic``), so a folder with the final name is
always complete; concurrent writers (DDP ranks) keep the first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from recsys_attn.atomic import write_atomic
from recsys_attn.data.download import locate
from recsys_attn.data.errors import DataError
from recsys_attn.data.formats import read_interactions
from recsys_attn.data.id_maps import id_map_paths, translate_ids
from recsys_attn.data.prepared import Prepared
from recsys_attn.data.preprocess import Preparation, preprocess
from recsys_attn.data.sources import Source

log = logging.getLogger(__name__)

PREP_VERSION = 3  # 2: without timestamps, dedup drops only consecutive repeats; 3: timestamps in microseconds
"""Bump when readers or preprocessing change their output, to invalidate every cache."""

_FILES = ("interactions", "users", "items")


def cache_key(source: Source, prep: Preparation, input_path: Path, extra_inputs: tuple[Path, ...] = ()) -> str:
    """Hex sha256 of the source and preparation settings, PREP_VERSION and the inputs' size+mtime."""
    payload: dict[str, object] = {
        "source": asdict(source),
        "preparation": asdict(prep),
        "prep_version": PREP_VERSION,
        "input": _stat(input_path),
    }
    if extra_inputs:  # id maps: editing one must rebuild the cache too
        payload["extra_inputs"] = [_stat(p) for p in extra_inputs]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_prepared(source: Source, prep: Preparation, data_dir: str | Path, cache_dir: str | Path) -> Prepared:
    """Return the prepared data set, from the cache when its key matches, else built and cached.

    Args:
        source: Where the raw log is and how to read it.
        prep: Filters applied to it.
        data_dir: Folder relative source paths are resolved against (downloads land there).
        cache_dir: Root of the cache; prepared sets go to ``<cache_dir>/prepared/``.
    """
    input_path = locate(source, data_dir)
    maps = id_map_paths(source, data_dir)
    key = cache_key(source, prep, input_path, tuple(maps.values()))
    root = Path(cache_dir).expanduser().absolute() / "prepared"
    folder = root / f"{source.name}-{key[:12]}"
    if (folder / "meta.json").is_file():
        log.info("%s: reusing prepared cache %s", source.name, folder)
        return read_prepared(folder)
    pattern = re.compile(rf"{re.escape(source.name)}-[0-9a-f]{{12}}")
    others = sorted(p.name for p in root.glob(f"{source.name}-*") if pattern.fullmatch(p.name))
    if others:
        log.info(
            "%s: config or input changed (no cache %s; found %s); preparing again",
            source.name,
            folder.name,
            ", ".join(others),
        )
    else:
        log.info("%s: no prepared cache yet; preparing %s", source.name, input_path)
    raw = read_interactions(input_path, source)
    prepared = translate_ids(preprocess(raw, prep, source.name), raw, maps, input_path)
    meta = {
        **prepared.meta,
        "source": asdict(source),
        "input": {"path": str(input_path), **_stat(input_path)},
        "prep_version": PREP_VERSION,
        "config_hash": key,
    }
    prepared = Prepared(prepared.interactions, prepared.users, prepared.items, meta)
    _write(prepared, folder)
    return Prepared(prepared.interactions, prepared.users, prepared.items, {**meta, "cache_path": str(folder)})


def read_prepared(folder: Path) -> Prepared:
    """Read a prepared data set written by ``load_prepared``."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        frames = {name: pl.read_parquet(folder / f"{name}.parquet") for name in _FILES}
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"prepared cache {folder} is unreadable ({exc}); delete the folder to rebuild it") from exc
    meta["cache_path"] = str(folder)
    return Prepared(frames["interactions"], frames["users"], frames["items"], meta)


def _stat(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write(prepared: Prepared, folder: Path) -> None:
    """Write ``prepared`` to ``folder`` whole (``write_atomic``), unless another process wrote it first."""

    def write(tmp: Path) -> None:
        for name in _FILES:
            # lz4: a local cache favours write speed (several times zstd's) over size
            getattr(prepared, name).write_parquet(tmp / f"{name}.parquet", compression="lz4")
        # meta.json last: a folder holding it is complete
        (tmp / "meta.json").write_text(json.dumps(prepared.meta, indent=2, default=str) + "\n")

    try:
        write_atomic(folder, write, folder=True)
    except OSError:  # the rename fails when folder exists: a concurrent writer (a DDP rank) won
        if not (folder / "meta.json").is_file():
            raise
        log.info("%s was written meanwhile by another process; keeping it", folder)
    else:
        log.info("prepared data cached in %s", folder)
