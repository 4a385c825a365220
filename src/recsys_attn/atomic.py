"""Files and folders written whole or not at all: built under a temporary name beside the target, synced, renamed.

Every file the package writes (downloads, the prepared-data cache, checkpoints, metrics, exports) goes
through ``write_atomic``, so a crash, a kill or a full disk never leaves a partial file under a final name.
The files one command writes as a set (a scorer and its sidecar, ``metrics.json`` and ``per_user.parquet``)
go through ``write_together``, so a failure never leaves one of them without the others.
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
from collections.abc import Callable, Iterator, Sequence
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
    tmp = _temp_name(path)
    made = done = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path.parent)
        if folder:
            tmp.mkdir()
        else:
            _create_file(tmp)
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


class Staged:
    """The temporaries of a ``write_together`` block, one per target: ``write`` fills one, ``temp`` names it."""

    def __init__(self, temps: dict[Path, Path]) -> None:
        self._temps = temps
        self.written: set[Path] = set()

    def temp(self, path: str | Path) -> Path:
        """The temporary that becomes ``path`` (to read back what was written into it)."""
        return self._temps[Path(path)]

    def write(self, path: str | Path, write: Callable[[Path], object]) -> Path:
        """Call ``write(temp)`` for the temporary of ``path``; returns the temporary.

        Raises:
            WriteError: The file system refused the write (disk full, ...), naming ``path``.
        """
        target = Path(path)
        tmp = self._temps[target]
        try:
            write(tmp)
        except Exception as exc:
            reason = _refusal(exc)
            if reason is None:
                raise
            raise WriteError(f"{target}: cannot write ({reason})") from exc
        self.written.add(target)
        return tmp


@contextlib.contextmanager
def write_together(*paths: str | Path, stale: Sequence[str | Path] = ()) -> Iterator[Staged]:
    """Write the files of one output set whole and together: a failure leaves the previous set as it was.

    The block fills a temporary beside each of ``paths`` (``staged.write(path, fn)``); when it ends without an
    error, every temporary is synced, the files of ``stale`` (members of an older set that this one does not
    have) are removed, and the temporaries are renamed onto ``paths`` in order. When the block fails (a full
    disk, a bug) every temporary is removed and no final name changes. A rename that fails half way puts the
    older files back (kept as hard links until the end; where the file system has none, the whole set is
    removed instead): a reader finds the old set, the new set or no set, never a mix. Only a crash during the
    renames themselves (microseconds) can leave a mix: put last the file that names the others (a sidecar
    holding its model's checksum), so a reader can tell::

        with write_together(model, sidecar) as staged:
            staged.write(model, save)
            staged.write(sidecar, lambda tmp: tmp.write_text(describe(staged.temp(model))))

    Raises:
        WriteError: The file system refused a write (read-only, no permission, disk full), naming the file.
        ValueError: A path is given twice, or the block left one of ``paths`` unwritten (a bug).
    """
    targets = [Path(p) for p in paths]
    if len(set(targets)) != len(targets):
        raise ValueError(f"write_together: a path is given twice in {[str(t) for t in targets]}")
    created = sorted(  # folders made for the targets, deepest first
        {parent for t in targets for parent in itertools.takewhile(lambda p: not p.exists(), t.parents)},
        key=lambda p: len(p.parts),
        reverse=True,
    )
    temps: dict[Path, Path] = {}
    done = False
    at = _named(targets)  # what a refusal names: the file at fault where known, else the set
    try:
        for target in targets:
            at = str(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale(target.parent)
            temps[target] = _temp_name(target)
            _create_file(temps[target])
        at = _named(targets)
        staged = Staged(temps)
        yield staged
        for target in targets:
            if target not in staged.written:
                raise ValueError(f"write_together: {target} was not written")
        for target, tmp in temps.items():
            at = str(target)
            _sync(tmp)
        at = _named(targets)
        _commit(list(temps.items()), [Path(p) for p in stale])
        done = True
    except Exception as exc:
        reason = _refusal(exc)
        if reason is None:
            raise
        raise WriteError(f"{at}: cannot write ({reason})") from exc
    finally:
        if not done:
            for tmp in temps.values():
                _remove(tmp)
            for parent in created:
                with contextlib.suppress(OSError):
                    parent.rmdir()
    for folder in {t.parent for t in targets}:
        with contextlib.suppress(OSError):  # the renames made durable; some file systems cannot sync a folder
            _sync(folder)


def _commit(pairs: list[tuple[Path, Path]], stale: list[Path]) -> None:
    """Remove ``stale``, rename each temporary onto its target in order; on a failure put the old files back."""
    backups: dict[Path, Path | None] = {}  # a file being replaced -> a hard link to it (None: none could be made)
    changed: list[Path] = []
    try:
        for target in [*stale, *(t for t, _ in pairs)]:
            if os.path.lexists(target):
                backup = _temp_name(target)
                try:
                    os.link(target, backup, follow_symlinks=False)
                    backups[target] = backup
                except OSError:
                    backups[target] = None
        for target in stale:
            if target in backups:
                target.unlink()
                changed.append(target)
        for target, tmp in pairs:
            os.replace(tmp, target)
            changed.append(target)
    except OSError:
        _roll_back(changed, backups, [*stale, *(t for t, _ in pairs)])
        raise
    finally:
        for kept in backups.values():
            if kept is not None:
                _remove(kept)


def _roll_back(changed: list[Path], backups: dict[Path, Path | None], members: list[Path]) -> None:
    """Undo the renames and removals of a failed commit; where an old file is lost, remove every member."""
    lost = False
    for target in reversed(changed):
        backup = backups.get(target, target)  # target: there was no old file
        with contextlib.suppress(OSError):
            if backup is None:
                lost = True
            elif backup != target:
                os.replace(backup, target)
                continue
            target.unlink(missing_ok=True)
    if lost:  # the old set is no longer whole: no set rather than half of one
        log.warning("could not restore %s after a failed write: removed the whole set", ", ".join(map(str, members)))
        for member in members:
            with contextlib.suppress(OSError):
                member.unlink(missing_ok=True)


def _named(targets: list[Path]) -> str:
    """The set of ``targets`` in a message: the first in full, the others by name."""
    if len(targets) < 2:
        return str(targets[0]) if targets else "nothing"
    return f"{targets[0]} (with {', '.join(t.name for t in targets[1:])})"


def _temp_name(path: Path) -> Path:
    """``.<name>.tmp-<random>`` beside ``path`` (``_remove_stale`` recognises it)."""
    return path.with_name(f".{path.name}{TMP_MARK}{secrets.token_hex(4)}")


def _create_file(path: Path) -> None:
    """A new empty file with the mode ``open()`` gives (0666 less the umask, not ``mkstemp``'s 0600)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


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
