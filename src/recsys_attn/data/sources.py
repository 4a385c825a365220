"""Where a data set comes from: the frozen ``Source`` Hydra builds from ``conf/data/*.yaml``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recsys_attn.data.errors import DataError

COLUMN_KEYS: tuple[str, ...] = ("user", "item", "timestamp", "rating")
"""Keys of ``Source.columns``: the standard fields a tabular log can map its columns to."""

TABULAR_FORMATS: frozenset[str] = frozenset({"csv", "tsv", "parquet"})
"""Formats whose columns are named by ``Source.columns``."""

DEFAULT_COLUMNS: dict[str, str | None] = {"user": "user", "item": "item", "timestamp": None, "rating": None}
"""Column names assumed for a tabular format when ``columns`` leaves a key out."""

ID_TYPES: tuple[str, ...] = ("auto", "int", "str")
"""Values of ``Source.id_type``."""

FORMATS: tuple[str, ...] = (
    "user_item",
    "movielens_100k",
    "movielens_dat",
    "movielens_csv",
    "csv",
    "tsv",
    "parquet",
    "sequences",
)
"""Values of ``Source.format``; ``formats.READERS`` has a reader for each (checked when it is imported)."""

TEXT_ID_FORMATS: frozenset[str] = TABULAR_FORMATS | {"sequences"}
"""Formats whose ids may be text; the others' are integers by definition."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Source:
    """A raw interaction log: its cache name, file format, location and checksum.

    Attributes:
        name: Cache key, e.g. ``"ml-1m"`` (letters, digits, ``.``, ``_``, ``-``).
        format: How the file is laid out, one of ``FORMATS`` (each read by ``formats.READERS``).
        path: File path, relative to the data directory (or absolute).
        url: Public home of the file; a ``.zip`` URL means ``archive_member`` is extracted from it.
        sha256: Expected sha256 of the (extracted) file, or None to skip the check.
        archive_member: Path of the file inside the zip archive at ``url``.
        columns: For csv/tsv/parquet: ``user``, ``item``, ``timestamp``, ``rating`` mapped to
            column names of the file (``timestamp`` and ``rating`` may be None: not present).
            Missing ``user``/``item`` keys default to columns named so. Other formats ignore it.
        user_id_map: Optional ``file_id original_id`` per line file (relative to the data directory):
            the log's user ids are replaced by the original ones (e.g. ML-1M's SASRec numbering back
            to MovieLens ids), so exports and tables show them.
        item_id_map: The same for item ids.
        encoding: Text encoding of the file (any ASCII-compatible Python codec: ``utf-8``,
            ``latin-1``, ``cp1252``...); decoded strictly, a byte that is not valid is an error.
        id_type: ``auto``: ids are integers when every id of a column is one, else text (with a
            warning when only a few are not); ``int``: a non-integer id is an error; ``str``: ids
            are text (csv/tsv/parquet/sequences only).
    """

    name: str
    format: str
    path: str
    url: str | None = None
    sha256: str | None = None
    archive_member: str | None = None
    columns: dict[str, str | None] | None = None
    user_id_map: str | None = None
    item_id_map: str | None = None
    encoding: str = "utf-8"
    id_type: str = "auto"

    def __post_init__(self) -> None:
        """Validate the fields and normalise ``columns`` to a plain dict."""
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise DataError(
                f"data.source.name={self.name!r}: use letters, digits, '.', '_' or '-' (it names the cache folder)"
            )
        if self.format not in FORMATS:
            raise DataError(
                f"data.source.format={self.format!r} is unknown; known formats: {', '.join(sorted(FORMATS))}"
            )
        if not self.path:
            raise DataError(f"data.source.path is empty for source {self.name!r}")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            raise DataError(
                f"data.source.sha256={self.sha256!r} for source {self.name!r} is not a 64-digit hex sha256 sum"
            )
        if self.url is not None and self.url.lower().endswith(".zip") and not self.archive_member:
            raise DataError(
                f"data.source.url={self.url!r} is a zip archive: set data.source.archive_member to the file to extract"
            )
        try:  # '\n' and the separators must be the bytes the readers split on
            ascii_compatible = "\n\r\t ,:".encode(self.encoding) == b"\n\r\t ,:"
        except (LookupError, TypeError, UnicodeError):
            ascii_compatible = False
        if not ascii_compatible:
            raise DataError(
                f"data.source.encoding={self.encoding!r} is not a known ASCII-compatible encoding "
                "(e.g. utf-8, latin-1, cp1252)"
            )
        if self.id_type not in ID_TYPES or (self.id_type == "str" and self.format not in TEXT_ID_FORMATS):
            raise DataError(
                f"data.source.id_type={self.id_type!r} must be one of {', '.join(ID_TYPES)} "
                f"('str' only for formats {', '.join(sorted(TEXT_ID_FORMATS))})"
            )
        object.__setattr__(self, "columns", _normalise_columns(self.columns, self.format))

    @property
    def config_key(self) -> str:
        """Where a log's settings are, for messages."""
        return "data.source"

    @property
    def what(self) -> str:
        """The log in words, for messages."""
        return f"data set {self.name!r}"

    @property
    def column_map(self) -> dict[str, str | None]:
        """``columns`` with the defaults filled in (``user``/``item`` named as such)."""
        return {**DEFAULT_COLUMNS, **(self.columns or {})}


def _normalise_columns(columns: Any, fmt: str) -> dict[str, str | None] | None:
    """Check the ``columns`` mapping (any Mapping, e.g. a DictConfig) and copy it to a dict."""
    if columns is None:
        return None
    if not isinstance(columns, Mapping):
        raise DataError(
            f"data.source.columns must be a mapping of {', '.join(COLUMN_KEYS)} to column names, "
            f"got {type(columns).__name__}"
        )
    out: dict[str, str | None] = {}
    for key, value in columns.items():
        if key not in COLUMN_KEYS:
            raise DataError(f"data.source.columns.{key} is not a known key; known keys: {', '.join(COLUMN_KEYS)}")
        if value is not None and not isinstance(value, str):
            raise DataError(f"data.source.columns.{key}={value!r} must be a column name (string) or null")
        out[str(key)] = value
    if fmt in TABULAR_FORMATS:
        for key in ("user", "item"):
            if key in out and out[key] is None:
                raise DataError(f"data.source.columns.{key} is null, but format {fmt!r} needs a {key} column")
    return out
