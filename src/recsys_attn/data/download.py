"""Find a source's raw file in the data directory, downloading it from its public home if absent."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Protocol

from recsys_attn.atomic import TMP_MARK, write_atomic
from recsys_attn.data.errors import DataError
from recsys_attn.errors import WriteError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "RECSYS_ATTN_DATA_DIR"
"""Environment variable read by ``conf/paths/default.yaml`` for ``paths.data_dir``."""

TIMEOUT_S = 60.0
"""Socket timeout of a download, in seconds."""

_CHUNK = 1 << 20


def data_path(path: str | Path, data_dir: str | Path) -> Path:
    """Absolute form of a data file setting: ``path`` under ``data_dir`` unless absolute."""
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = Path(data_dir).expanduser() / resolved
    return resolved.absolute()


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class RemoteFile(Protocol):
    """A file with a public home: a log's ``Source`` or a features file."""

    @property
    def path(self) -> str: ...
    @property
    def url(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def archive_member(self) -> str | None: ...
    @property
    def config_key(self) -> str:
        """Where its settings are (``data.source``), for messages."""
        ...

    @property
    def what(self) -> str:
        """The file in words (``data set 'ml-1m'``), for messages."""
        ...


def locate(source: RemoteFile, data_dir: str | Path) -> Path:
    """Return the local file of ``source``, downloading it first when it is absent.

    A present file is used even when its sha256 differs from ``source.sha256`` (with a warning).
    A download is checked before it takes its name (``write_atomic``): no half-written or unchecked
    file, nor an empty folder, is ever left behind.

    Raises:
        DataError: The file is absent and could not be downloaded, or the download's checksum
            does not match ``source.sha256``.
    """
    path = data_path(source.path, data_dir)
    if path.is_file():
        if source.sha256 is not None and (actual := sha256_of(path)) != source.sha256.lower():
            log.warning(
                "%s: sha256 %s differs from %s.sha256=%s of %s; used as given",
                path,
                actual,
                source.config_key,
                source.sha256,
                source.what,
            )
        return path
    if path.exists():
        raise DataError(f"{path} exists but is not a file ({source.what})")
    hint = f"point paths.data_dir (or env {DATA_DIR_ENV}) at the folder that holds '{source.path}'"
    where = "" if Path(source.path).is_absolute() else f" Put the file there, or {hint}."
    if source.url is None:
        raise DataError(f"{source.what}: no file at {path}, and no {source.config_key}.url to download it from.{where}")
    try:
        write_atomic(path, lambda tmp: _download(source, path, tmp))
    except (_DownloadFailed, WriteError) as exc:
        raise DataError(
            f"{source.what}: file not found at {path}, and the download from "
            f"{source.url} failed ({exc}). Put the file there, or point paths.data_dir "
            f"(or env {DATA_DIR_ENV}) at the folder that holds '{source.path}'."
        ) from exc
    log.info("saved %s", path)
    return path


class _DownloadFailed(Exception):
    """A download could not complete (network, archive or file-system error)."""


def _fetch(url: str, dest: Path) -> None:
    """Stream ``url`` into the file ``dest``."""
    log.info("downloading %s", url)
    request = urllib.request.Request(url, headers={"User-Agent": "recsys_attn"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, dest.open("wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)


def _download(source: RemoteFile, path: Path, dest: Path) -> None:
    """Download the source's file for ``path`` (extracted from its zip archive) into ``dest``; check its sha256."""
    url = str(source.url)
    try:
        if source.archive_member is None:  # Source makes a .zip url name its member
            _fetch(url, dest)
        else:
            with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{path.name}{TMP_MARK}zip-") as folder:
                archive = Path(folder) / "archive.zip"
                _fetch(url, archive)
                _extract(archive, source.archive_member, dest, source.config_key)
    except (OSError, urllib.error.URLError, ValueError, zipfile.BadZipFile) as exc:
        raise _DownloadFailed(_reason(exc)) from exc
    actual = sha256_of(dest)
    if source.sha256 is None:
        log.info("%s: sha256 %s (set %s.sha256 to check future downloads)", path, actual, source.config_key)
    elif actual != source.sha256.lower():
        raise DataError(
            f"{source.what}: checksum mismatch for the download from {url}: "
            f"sha256 {actual}, expected {source.config_key}.sha256={source.sha256}; "
            f"nothing was written to {path}"
        )


def _extract(archive: Path, member: str, dest: Path, config_key: str) -> None:
    """Copy ``member`` of the zip ``archive`` into ``dest``."""
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            names = zf.namelist()
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise _DownloadFailed(
                f"the archive has no member {member!r} ({config_key}.archive_member); members: {shown}"
            ) from None
        with zf.open(info) as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"
