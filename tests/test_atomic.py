"""write_atomic: whole files or nothing, and a refused write (read-only, no permission, disk full) in one line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import polars as pl
import pytest

from recsys_attn.atomic import TMP_MARK, write_atomic
from recsys_attn.errors import RecsysError, WriteError
from tests.conftest import read_only_folder


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def disk_full(tmp: Path) -> None:
    """A write that stops half way: the disk filled up."""
    tmp.write_bytes(b"half a fi")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_file_is_written_whole_with_the_mode_open_gives(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "metrics.json"
    assert write_atomic(path, lambda tmp: tmp.write_text("{}\n")) == path
    assert path.read_text() == "{}\n"
    assert listing(path.parent) == ["metrics.json"]  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_a_full_disk_leaves_no_partial_file_and_says_which(tmp_path: Path) -> None:
    path = tmp_path / "new" / "epoch_000.ckpt"
    with pytest.raises(WriteError) as err:
        write_atomic(path, disk_full)
    assert str(err.value) == f"{path}: cannot write (No space left on device)"
    assert isinstance(err.value, OSError) and isinstance(err.value, RecsysError)
    assert listing(tmp_path) == []  # no file, no temporary, and not the folder it made


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"epoch 3")
    with pytest.raises(WriteError):
        write_atomic(path, disk_full)
    assert path.read_bytes() == b"epoch 3"
    assert listing(tmp_path) == ["last.ckpt"]


def test_a_rust_library_reporting_the_os_error_in_its_message_is_a_write_error(tmp_path: Path) -> None:
    def polars_full(tmp: Path) -> None:  # what pl.DataFrame.write_parquet raises on a full disk
        raise pl.exceptions.ComputeError("parquet: underlying IO error: No space left on device (os error 28)")

    with pytest.raises(WriteError, match=r"cannot write \(No space left on device\)$"):
        write_atomic(tmp_path / "x.parquet", polars_full)
    assert listing(tmp_path) == []


def test_other_errors_pass_through_and_leave_nothing(tmp_path: Path) -> None:
    def bug(tmp: Path) -> None:
        tmp.write_text("partial")
        raise KeyError("a bug, not the disk")

    with pytest.raises(KeyError):
        write_atomic(tmp_path / "x.json", bug)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_refused_temporary_names_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    real_open = os.open

    def refuse(path: str | Path, *args: object, **kwargs: object) -> int:
        if TMP_MARK in str(path):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse)
    target = tmp_path / "recs.csv"
    with pytest.raises(WriteError) as err:
        write_atomic(target, lambda tmp: tmp.write_text("x"))
    assert str(err.value) == f"{target}: cannot write ({os.strerror(code)})"


def test_a_read_only_folder_is_one_line(tmp_path: Path) -> None:
    folder = read_only_folder(tmp_path / "ro")
    try:
        with pytest.raises(WriteError) as err:
            write_atomic(folder / "metrics.json", lambda tmp: tmp.write_text("{}"))
    finally:
        folder.chmod(0o755)
    assert str(err.value) == f"{folder / 'metrics.json'}: cannot write (Permission denied)"


def test_a_folder_never_replaces_a_complete_one(tmp_path: Path) -> None:
    def build(tmp: Path) -> None:
        (tmp / "meta.json").write_text("second")

    first = write_atomic(tmp_path / "set", build, folder=True)
    (first / "meta.json").write_text("first")
    with pytest.raises(OSError):
        write_atomic(first, build, folder=True)
    assert (first / "meta.json").read_text() == "first"
    assert listing(tmp_path) == ["set"]
