"""Files and folders written whole or not at all: built under a temporary name beside the target, synced, renamed.

Every file the package writes (downloads, the prepared-data cache, checkpoints, metrics, exports) goes
through ``write_atomic``, so a crash, a kill or a full disk never leaves a partial file under a final name.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from recsys_attn.errors import WriteError

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
"""Marks a temporary: ``.<name>.tmp-<random>`` beside the ``<name>`` it becomes."""

STALE_TEMP_S = 24 * 3600.0
"""Temporaries older than this are left-overs of killed runs; the next write beside them removes them."""

_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust libraries (polars) report an OS error


def write_atomic(path: str | Path, write: Callable[[Path], object], folder: bool = False) -> Path:
    """Call ``write(temp)`` for a new temporary file (or, with ``folder``, folder) beside ``path``, then rename it.

    The temporary is synced to disk before the rename, so ``path`` never names a partial file, even after a
    crash. A failed write leaves nothing behind: no temporary, and no folder it created for ``path``. A file
    replaces an existing ``path``; a folder never replaces a non-empty one (the rename fails: first writer wins).

    Raises:
        WriteError: The file system refused the write (read-only, no permission, disk full), naming ``path``.
    """
    path = Path(path)
    created = list(itertools.takewhile(lambda p: not p.exists(), path.parents))  # deepest first
    tmp = path.with_name(f".{path.name}{TMP_MARK}{secrets.token_hex(4)}")
    made = done = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path.parent)
        if folder:
            tmp.mkdir()
        else:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the mode open() gives
        made = True
        write(tmp)
        for part in [*sorted(tmp.rglob("*")), tmp] if folder else [tmp]:
            _sync(part)
        os.replace(tmp, path)
        done = True
    except Exception as exc:
        reason = _refusal(exc)
        if reason is None:
            raise
        raise WriteError(f"{path}: cannot write ({reason})") from exc
    finally:
        if made and not done:
            _remove(tmp)
        for parent in created if not done else []:
            with contextlib.suppress(OSError):
                parent.rmdir()
    with contextlib.suppress(OSError):  # the rename made durable; some file systems cannot sync a folder
        _sync(path.parent)
    return path


def _refusal(exc: BaseException) -> str | None:
    """Why the file system refused a write, or None when ``exc`` is not such a refusal (it is raised as it is)."""
    if isinstance(exc, WriteError):
        return None
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    found = _OS_ERROR.search(str(exc))
    return os.strerror(int(found.group(1))) if found else None


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_stale(folder: Path) -> None:
    """Remove temporaries of killed runs (older than ``STALE_TEMP_S``) from ``folder``."""
    now = time.time()
    for path in folder.glob(f"*{TMP_MARK}*"):
        with contextlib.suppress(OSError):
            if now - path.lstat().st_mtime > STALE_TEMP_S:
                _remove(path)
                log.info("removed the stale temporary %s", path)
