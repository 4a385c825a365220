"""The ``features`` config group as typed settings: which files describe the items, and how each column is read.

A features config is either one file's settings (``features=ml-1m``, ``features=file features.path=<file>``) or
``files:`` a list of them (``features=none`` is the empty list). Every key is checked: a typo fails naming it
(``features.files[1].columns.year.scale``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import PurePath
from typing import Any, get_type_hints

from recsys_attn.data.errors import DataError
from recsys_attn.data.item_features import FEATURE_KINDS
from recsys_attn.errors import ConfigError
from recsys_attn.settings import build_settings, check_ranges, check_type, check_types

FEATURE_FORMATS = ("auto", "csv", "tsv", "parquet", "json", "movielens_movies", "movielens_items")
"""``auto``: by the file's suffix (.csv, .tsv, .parquet, .json); ``json``: ``{item id: [values]}`` (S3-Rec's
attributes); ``movielens_movies``: ML-1M's ``movies.dat`` (genres, year); ``movielens_items``: ML-100K's ``u.item``
(genres, year)."""

SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".json": "json"}

SCALES = ("standard", "minmax", "log", "none")
"""How a numeric feature is scaled over the catalogue's items: ``standard`` (zero mean, unit variance), ``minmax``
(to [0, 1]), ``log`` (``log1p`` of a non-negative value, then standard), ``none``."""

UNKNOWN_ITEMS = ("report", "error", "add")
"""What a file row naming an item the catalogue lacks does: counted and reported (a prepared log drops rare items,
so a full catalogue file names more items than it keeps), an error naming its line, or ``add``: the item joins
the catalogue with no interaction (a new item, cold: scored through its features, ``predict`` can recommend it).
``add`` changes the catalogue every metric ranks, so it is not the standard protocol's."""

COLUMN_KINDS = ("auto", *FEATURE_KINDS)
"""``auto``: by the column's type (text: categorical, a list of text or integers: multi, a number: numeric, a list
of floats: vector); integer codes of a category need ``kind: categorical``."""


@dataclass(frozen=True)
class ColumnSettings:
    """How one column of a features file becomes a feature.

    Attributes:
        kind: One of ``COLUMN_KINDS``.
        separator: ``multi`` from a text column (csv/tsv): the character between values (``Action|Comedy``).
        scale: ``numeric``: one of ``SCALES``.
    """

    kind: str = "auto"
    separator: str = "|"
    scale: str = "standard"

    def check(self, where: str) -> ColumnSettings:
        check_types(self, where)
        check_ranges(
            self,
            where,
            [
                ("kind", self.kind in COLUMN_KINDS, f"expected one of {', '.join(COLUMN_KINDS)}"),
                ("separator", len(self.separator) == 1, "expected one character"),
                ("scale", self.scale in SCALES, f"expected one of {', '.join(SCALES)}"),
            ],
        )
        return self


@dataclass(frozen=True)
class FeatureFile:
    """One file of item features, keyed by the original item id.

    Attributes:
        path: The file, relative to the data directory (or absolute).
        format: One of ``FEATURE_FORMATS``.
        name: Names the file in messages and its download (default: the file's name).
        url, sha256, archive_member: Where a missing file is downloaded from and its checksum, as for a log.
        encoding: Text encoding (csv/tsv/json/MovieLens files).
        item_column: csv/tsv/parquet: the column of item ids.
        key_map: ``file_id original_id`` per line (like ``data.source.item_id_map``): the file is keyed by the
            original ids of the log's item ids (ml-1m.txt's numbering to MovieLens ids). Not needed when
            ``data.source.item_id_map`` already gives the log its original ids.
        columns: Feature name (a column of the file) -> its settings (a kind alone: ``genres: multi``); null:
            every column but the item column, kinds by type.
        unknown_items: One of ``UNKNOWN_ITEMS``.
    """

    path: str
    format: str = "auto"
    name: str | None = None
    url: str | None = None
    sha256: str | None = None
    archive_member: str | None = None
    encoding: str = "utf-8"
    item_column: str = "item_id"
    key_map: str | None = None
    columns: dict[str, ColumnSettings] | None = None
    unknown_items: str = "report"
    config_key: str = field(default="features", compare=False)
    """Where the file's settings are (``features`` or ``features.files[i]``), for messages."""

    @property
    def resolved_format(self) -> str:
        """``format``, with ``auto`` decided by the suffix."""
        if self.format != "auto":
            return self.format
        suffix = PurePath(self.path).suffix.lower()
        if suffix not in SUFFIX_FORMATS:
            raise ConfigError(
                f"{self.config_key}.format: 'auto' cannot tell the format of {self.path!r} by its suffix; "
                f"set it to one of {', '.join(FEATURE_FORMATS[1:])}"
            )
        return SUFFIX_FORMATS[suffix]

    @property
    def label(self) -> str:
        """The file's name in messages and downloads."""
        return self.name or PurePath(self.path).name

    @property
    def what(self) -> str:
        """The file in words, for messages."""
        return f"features file {self.label!r}"


@dataclass(frozen=True)
class FeatureSet:
    """Every features file of a run (empty: ids alone)."""

    files: tuple[FeatureFile, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.files)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for the cache key and the run's records)."""
        return {"files": [_file_dict(f) for f in self.files]}


def _file_dict(f: FeatureFile) -> dict[str, Any]:
    out = {k.name: getattr(f, k.name) for k in fields(f) if k.name not in ("columns", "config_key")}
    out["columns"] = None if f.columns is None else {n: vars(c) for n, c in f.columns.items()}
    return out


_FILE_KEYS = tuple(k.name for k in fields(FeatureFile) if k.name != "config_key")


def feature_set(config: Any, where: str = "features") -> FeatureSet:
    """The ``FeatureSet`` of a ``features`` config: None or ``{}`` (none), one file's keys, or ``files: [...]``."""
    if config is None or isinstance(config, FeatureSet):
        return config or FeatureSet()
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: expected a mapping (one file's settings, or 'files: [...]'), got {config!r}")
    if not config:
        return FeatureSet()
    if "files" in config:
        extra = sorted(set(config) - {"files", "path"})
        if extra:
            raise ConfigError(f"{where}.{extra[0]}: unknown key beside 'files' (put file settings in each file)")
        files = config["files"]
        if files is None:
            return FeatureSet()
        if not isinstance(files, Sequence) or isinstance(files, str):
            raise ConfigError(f"{where}.files: expected a list of files, got {files!r}")
        parsed = tuple(_feature_file(f, f"{where}.files[{i}]") for i, f in enumerate(files))
    else:
        parsed = (_feature_file(config, where),)
    names = [name for f in parsed for name in (f.columns or {})]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: feature {repeated[0]!r} is named by two files; rename one column")
    return FeatureSet(parsed)


def _feature_file(config: Any, where: str) -> FeatureFile:
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: expected a file's settings (path, format, columns, ...), got {config!r}")
    values = dict(config)
    unknown = sorted(set(values) - set(_FILE_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; valid keys are {', '.join(sorted(_FILE_KEYS))}")
    if values.get("path") in (None, "", "???"):
        raise ConfigError(f"{where}.path: set the features file (features=file features.path=<file>)")
    columns = values.pop("columns", None)
    settings = FeatureFile(**values, config_key=where)
    hints = get_type_hints(FeatureFile)
    for key in _FILE_KEYS:
        if key != "columns":
            check_type(f"{where}.{key}", getattr(settings, key), hints[key])
    check_ranges(
        settings,
        where,
        [
            ("format", settings.format in FEATURE_FORMATS, f"expected one of {', '.join(FEATURE_FORMATS)}"),
            ("unknown_items", settings.unknown_items in UNKNOWN_ITEMS, f"expected one of {', '.join(UNKNOWN_ITEMS)}"),
            ("item_column", bool(settings.item_column), "must name the column of item ids"),
        ],
    )
    try:
        "\n\t ,:|".encode(settings.encoding)
    except (LookupError, TypeError):
        raise ConfigError(
            f"{where}.encoding={settings.encoding!r} is not a known encoding (utf-8, latin-1, ...)"
        ) from None
    _ = settings.resolved_format  # fails now on an undecidable 'auto'
    return FeatureFile(**{**vars(settings), "columns": _columns(columns, f"{where}.columns")})


def _columns(config: Any, where: str) -> dict[str, ColumnSettings] | None:
    if config is None:
        return None
    if not isinstance(config, Mapping) or not config:
        raise ConfigError(f"{where}: expected a mapping of feature names to kinds or settings, got {config!r}")
    out = {}
    for name, spec in config.items():
        key = f"{where}.{name}"
        if isinstance(spec, str):
            spec = {"kind": spec}
        elif spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{key}: expected a kind ({', '.join(COLUMN_KINDS)}) or settings, got {spec!r}")
        out[str(name)] = build_settings(ColumnSettings, dict(spec), key).check(key)
    return out


def check_vector_source(kind: str, fmt: str, where: str) -> None:
    """Refuse a ``vector`` feature from a text format (a list of floats needs a Parquet list or array column)."""
    if kind == "vector" and fmt in ("csv", "tsv"):
        raise DataError(f"{where}.kind: vector features come from a Parquet list or array column, not {fmt}")
