"""write_atomic and write_together: whole files (and sets of files) or nothing, and a refused write in one line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import polars as pl
import pytest

from recsys_attn.atomic import TMP_MARK, write_atomic, write_together
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


# --- write_together: the files of one output set appear together or not at all ---------------------------


def old_pair(folder: Path) -> tuple[Path, Path]:
    """A complete earlier set: a model and the sidecar that describes it."""
    folder.mkdir(exist_ok=True)
    model, sidecar = folder / "scorer.onnx", folder / "scorer.json"
    model.write_bytes(b"old model")
    sidecar.write_text("old sidecar")
    return model, sidecar


def test_a_set_replaces_the_old_one_whole(tmp_path: Path) -> None:
    model, sidecar = old_pair(tmp_path)
    with write_together(model, sidecar) as staged:
        staged.write(model, lambda tmp: tmp.write_bytes(b"new model"))
        staged.write(sidecar, lambda tmp: tmp.write_text(f"describes {staged.temp(model).read_bytes().decode()}"))
    assert (model.read_bytes(), sidecar.read_text()) == (b"new model", "describes new model")
    assert listing(tmp_path) == ["scorer.json", "scorer.onnx"]  # no temporary, no backup left
    umask = os.umask(0)
    os.umask(umask)
    assert model.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_full_disk_on_the_second_file_keeps_the_old_set_and_names_the_file(tmp_path: Path) -> None:
    model, sidecar = old_pair(tmp_path)
    with pytest.raises(WriteError) as err, write_together(model, sidecar) as staged:
        staged.write(model, lambda tmp: tmp.write_bytes(b"new model"))
        staged.write(sidecar, disk_full)
    assert str(err.value) == f"{sidecar}: cannot write (No space left on device)"
    assert (model.read_bytes(), sidecar.read_text()) == (b"old model", "old sidecar")
    assert listing(tmp_path) == ["scorer.json", "scorer.onnx"]


def test_a_full_disk_on_a_first_write_leaves_no_file_and_no_folder(tmp_path: Path) -> None:
    model, sidecar = tmp_path / "new" / "scorer.onnx", tmp_path / "new" / "scorer.json"
    with pytest.raises(WriteError), write_together(model, sidecar) as staged:
        staged.write(model, lambda tmp: tmp.write_bytes(b"new model"))
        staged.write(sidecar, disk_full)
    assert listing(tmp_path) == []


def test_a_refusal_outside_staged_write_names_the_set(tmp_path: Path) -> None:
    model, sidecar = tmp_path / "scorer.onnx", tmp_path / "scorer.json"
    with pytest.raises(WriteError) as err, write_together(model, sidecar) as staged:
        staged.write(model, lambda tmp: tmp.write_bytes(b"new model"))
        disk_full(staged.temp(sidecar))
    assert str(err.value) == f"{model} (with scorer.json): cannot write (No space left on device)"
    assert listing(tmp_path) == []


def test_other_errors_in_the_block_pass_through_and_change_nothing(tmp_path: Path) -> None:
    model, sidecar = old_pair(tmp_path)
    with pytest.raises(KeyError), write_together(model, sidecar) as staged:
        staged.write(model, lambda tmp: tmp.write_bytes(b"new model"))
        raise KeyError("a bug, not the disk")
    assert (model.read_bytes(), sidecar.read_text()) == (b"old model", "old sidecar")
    assert listing(tmp_path) == ["scorer.json", "scorer.onnx"]


def test_a_member_left_unwritten_is_a_bug_and_changes_nothing(tmp_path: Path) -> None:
    model, sidecar = old_pair(tmp_path)
    with pytest.raises(ValueError, match=r"scorer\.json was not written"), write_together(model, sidecar) as staged:
        staged.write(model, lambda tmp: tmp.write_bytes(b"new model"))
    assert (model.read_bytes(), sidecar.read_text()) == (b"old model", "old sidecar")
    assert listing(tmp_path) == ["scorer.json", "scorer.onnx"]


def failing_second_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.replace`` refuses the second rename onto a final name (the first goes through)."""
    real_replace = os.replace
    renames: list[str] = []

    def replace(src: str | Path, dst: str | Path) -> None:
        if TMP_MARK in Path(src).name and TMP_MARK not in Path(dst).name:
            renames.append(str(dst))
            if len(renames) == 2:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_rename_failing_half_way_puts_the_old_set_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, sidecar = old_pair(tmp_path)
    failing_second_rename(monkeypatch)
    with pytest.raises(WriteError, match=r"cannot write \(Input/output error\)$"), write_together(model, sidecar) as s:
        s.write(model, lambda tmp: tmp.write_bytes(b"new model"))
        s.write(sidecar, lambda tmp: tmp.write_text("new sidecar"))
    assert (model.read_bytes(), sidecar.read_text()) == (b"old model", "old sidecar")
    assert listing(tmp_path) == ["scorer.json", "scorer.onnx"]


def test_without_hard_links_a_failed_rename_leaves_no_set_rather_than_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, sidecar = old_pair(tmp_path)
    failing_second_rename(monkeypatch)

    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(WriteError), write_together(model, sidecar) as staged:
        staged.write(model, lambda tmp: tmp.write_bytes(b"new model"))
        staged.write(sidecar, lambda tmp: tmp.write_text("new sidecar"))
    assert listing(tmp_path) == []


def test_a_stale_member_of_the_old_set_goes_with_it_and_stays_on_failure(tmp_path: Path) -> None:
    model, sidecar = old_pair(tmp_path)
    new_model = tmp_path / "scorer.pt2"
    with pytest.raises(WriteError), write_together(new_model, sidecar, stale=[model]) as staged:
        staged.write(new_model, lambda tmp: tmp.write_bytes(b"new model"))
        staged.write(sidecar, disk_full)
    assert listing(tmp_path) == ["scorer.json", "scorer.onnx"]
    with write_together(new_model, sidecar, stale=[model, tmp_path / "absent.png"]) as staged:
        staged.write(new_model, lambda tmp: tmp.write_bytes(b"new model"))
        staged.write(sidecar, lambda tmp: tmp.write_text("new sidecar"))
    assert listing(tmp_path) == ["scorer.json", "scorer.pt2"]
