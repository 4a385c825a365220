"""Readers on hostile input: encodings, mixed or huge ids, unreadable files, huge lines, CR line ends.

Every failure is one short ``DataError`` line naming the file (and line); ids never merge silently.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import polars as pl
import pytest

from recsys_attn.data.errors import MAX_QUOTED, DataError, shorten
from recsys_attn.data.formats import read_interactions
from recsys_attn.data.sources import Source

BIG = "x" * 2_000_000  # a 2 MB field
TEXT_FORMATS = ["user_item", "movielens_100k", "movielens_dat", "movielens_csv", "csv", "tsv", "sequences"]


def read(path: Path, fmt: str, **kw: object) -> pl.DataFrame:
    return read_interactions(path, Source(name="t", format=fmt, path=str(path), **kw))  # type: ignore[arg-type]


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def error(path: Path, fmt: str, **kw: object) -> str:
    """The message of the ``DataError`` that reading ``path`` raises: one line, short."""
    with pytest.raises(DataError) as err:
        read(path, fmt, **kw)
    message = str(err.value)
    assert "\n" not in message and len(message) < 300 + len(str(path)), message[:500]
    return message


# ----------------------------------------------------------------------------------- encodings

# One file per format whose line 2 holds the latin-1 byte 0xe9 ('é') as its 4th byte.
LATIN1_LINE_2 = {
    "user_item": b"1 2\n12\xe9 3\n",
    "movielens_100k": b"1\t2\t3\t4\n12\t\xe9\t3\t4\n",
    "movielens_dat": b"1::2::3::4\n1::\xe92::3::4\n",
    "movielens_csv": b"userId,movieId,rating,timestamp\nJo\xe9,2,3,4\n",
    "csv": b"user,item\nJos\xe9,1\n",
    "tsv": b"user\titem\nJos\xe9\t1\n",
    "sequences": b"u1 1 2\nJos\xe9 3\n",
}


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_undecodable_byte_names_file_and_line(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path, "log.txt", LATIN1_LINE_2[fmt])
    col = LATIN1_LINE_2[fmt].split(b"\n")[1].index(b"\xe9") + 1
    hint = "set data.source.encoding to the file's encoding (e.g. latin-1)"
    expected = f"{path}:2: byte {col} (0xe9) is not valid utf-8; {hint}"
    assert error(path, fmt) == expected


@pytest.mark.parametrize("fmt", ["csv", "sequences"])
def test_encoding_setting_keeps_distinct_ids(tmp_path: Path, fmt: str) -> None:
    names = ["José", "Josè", "Josë"]
    text = "".join(f"{n},1\n" if fmt == "csv" else f"{n} 1\n" for n in names)
    path = write(tmp_path, "log.txt", (("user,item\n" if fmt == "csv" else "") + text).encode("latin-1"))
    assert read(path, fmt, encoding="latin-1")["user"].to_list() == names


def test_bytes_a_codepage_leaves_undefined_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", b"user,item\na,1\nb\x81,2\n")  # 0x81: undefined in cp1252
    assert error(path, "csv", encoding="cp1252").startswith(f"{path}:3: byte 2 (0x81) is not valid cp1252; ")


@pytest.mark.parametrize("encoding", ["klingon", "utf-16"])
def test_unknown_or_ascii_incompatible_encoding_is_rejected(encoding: str) -> None:
    with pytest.raises(DataError, match=rf"^data\.source\.encoding='{encoding}' is not a known ASCII-compatible"):
        Source(name="t", format="csv", path="x", encoding=encoding)


# ----------------------------------------------------------------------------------------- ids


def test_a_few_text_ids_among_integers_warn_once_with_count_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "log.csv", "user,item\n1,10\n2,abc\n3,12\n4,x\n5,14\n")
    with caplog.at_level(logging.WARNING, logger="recsys_attn.data.tabular"):
        got = read(path, "csv")
    assert got["item"].to_list() == ["10", "abc", "12", "x", "14"]
    assert got["user"].dtype == pl.Int64
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{path}:3: column 'item' (item): id 'abc' is not a 64-bit integer (2 of 5 ids are not)")


def test_sequences_warning_names_the_file_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "seq.txt", "1 5 6\n\n2 7\nu1 8 9\n4 5\n")
    with caplog.at_level(logging.WARNING, logger="recsys_attn.data.tabular"):
        assert read(path, "sequences")["user"].to_list() == ["1", "1", "2", "u1", "u1", "4"]
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{path}:4: user: id 'u1' is not a 64-bit integer (2 of 6 ids are not)")


def test_mostly_text_ids_do_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "log.csv", "user,item\nann,1\nbob,2\n42,3\n")
    with caplog.at_level(logging.WARNING):
        assert read(path, "csv")["user"].to_list() == ["ann", "bob", "42"]
    assert caplog.records == []


def test_id_type_int_makes_a_text_id_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user,item\n1,10\n2,abc\n")
    expected = f"{path}:3: column 'item' (item): id 'abc' is not a 64-bit integer (data.source.id_type=int)"
    assert error(path, "csv", id_type="int") == expected


def test_id_type_str_keeps_integer_looking_ids_as_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "log.csv", "user,item\n1,10\n2,x\n")
    with caplog.at_level(logging.WARNING):
        got = read(path, "csv", id_type="str")
    assert (got["user"].to_list(), got["item"].to_list()) == (["1", "2"], ["10", "x"])
    assert caplog.records == []


@pytest.mark.parametrize(("fmt", "id_type"), [("user_item", "str"), ("csv", "float")])
def test_id_type_is_checked(fmt: str, id_type: str) -> None:
    with pytest.raises(DataError, match=rf"^data\.source\.id_type='{id_type}' must be one of auto, int, str"):
        Source(name="t", format=fmt, path="x", id_type=id_type)


def test_parquet_uint64_ids_beyond_int64_stay_exact_as_text(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    huge = [2**64 - 1, 2**63, 5]
    pl.DataFrame({"user": pl.Series(huge, dtype=pl.UInt64), "item": [1, 2, 3]}).write_parquet(path)
    assert read(path, "parquet")["user"].to_list() == [str(i) for i in huge]
    expected = (
        f"{path}: row 1: column 'user' (user): id '{2**64 - 1}' is not a 64-bit integer (data.source.id_type=int)"
    )
    assert error(path, "parquet", id_type="int") == expected


@pytest.mark.parametrize("big", [str(2**63), "-" + str(2**63 + 1), "9" * 5000])
def test_user_item_id_beyond_64_bits_names_its_line(tmp_path: Path, big: str) -> None:
    path = write(tmp_path, "log.txt", f"1 2\n3 {big}\n")
    expected = (
        f"{path}:2: '{shorten(big)}' does not fit in 64 bits; expected 2 space-separated integer fields 'user item'"
    )
    assert error(path, "user_item") == expected
    assert read(write(tmp_path, "ok.txt", f"1 {2**63 - 1}\n{-(2**63)} 2\n"), "user_item").height == 2


# ------------------------------------------------------------------------------ unreadable files


def deny(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Make ``path`` unreadable: chmod, or (as root, whom chmod does not stop) a failing open."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    real_open = Path.open

    def open_(self: Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", open_)


@pytest.mark.parametrize("fmt", [*TEXT_FORMATS, "parquet"])
def test_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    path = write(tmp_path, "log.txt", LATIN1_LINE_2.get(fmt, b"x"))
    deny(monkeypatch, path)
    assert error(path, fmt) == f"{path}: cannot be read (Permission denied)"


@pytest.mark.parametrize("fmt", [*TEXT_FORMATS, "parquet"])
def test_a_folder_in_place_of_the_file_is_one_line(tmp_path: Path, fmt: str) -> None:
    # root reads any file; a folder fails to open for everyone, as an unreadable file does
    path = tmp_path / "log.txt"
    path.mkdir()
    assert error(path, fmt) == f"{path}: cannot be read (Is a directory)"


# ------------------------------------------------------------------------------ huge lines


def test_a_2mb_field_does_not_stop_finding_a_ragged_line(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", f"user,item,note\n1,2,{BIG}\n3,4,x\n5\n")
    expected = f"{path}:4: expected 3 comma-separated fields as in the header 'user,item,note', got '5'"
    assert error(path, "csv") == expected


T, R = {"timestamp": "t"}, {"rating": "r"}


@pytest.mark.parametrize(
    ("fmt", "text", "columns", "start"),
    [
        ("csv", f"user,item,t\n1,2,5\n1,3,{BIG}\n", T, ":3: column 't': 'xxxxxxxx"),
        ("csv", f"user,item,r\n1,2,{BIG}\n", R, ":2: expected a number in rating column 'r'"),
        ("csv", f"user,item,note\n,2,{BIG}\n", None, ":2: missing value in column 'user' (user)"),
        ("csv", f"user,item\n1,2\n3,4,{BIG}\n", None, ":3: expected 2 comma-separated fields"),
        (
            "csv",
            f"id,{BIG}\n1,2\n",
            None,
            ": column 'user' (data.source.columns.user) not found; columns found: ['id', 'xx",
        ),
        ("user_item", f"1 2\n3 {BIG}\n", None, ":2: expected 2 space-separated integer fields"),
        ("movielens_csv", f"{BIG}\n1,2,3,4\n", None, ":1: expected the header 'userId,movieId,rating,timestamp'"),
    ],
)
def test_errors_quoting_a_huge_line_stay_short(
    tmp_path: Path, fmt: str, text: str, columns: dict[str, str] | None, start: str
) -> None:
    path = write(tmp_path, "log.txt", text)
    message = error(path, fmt, columns=columns)
    assert message.startswith(f"{path}{start}")
    assert len(message) < 300


# --------------------------------------------------------------------------------- line ends


@pytest.mark.parametrize(("fmt", "text"), [("csv", "user,item\r1,2\r3,4\r"), ("user_item", "1 2\r3 4\r")])
def test_cr_only_line_ends_are_named(tmp_path: Path, fmt: str, text: str) -> None:
    path = write(tmp_path, "log.txt", text.encode())
    expected = f"{path}: lines end in a bare CR (old Mac style); convert the line ends to LF, e.g. tr '\\r' '\\n'"
    assert error(path, fmt) == expected


@pytest.mark.parametrize(
    ("fmt", "text", "expect"),
    [
        ("csv", "user,item\n1,2\r3,4\n", "2 comma-separated fields as in the header 'user,item'"),
        ("user_item", "1 2\n3 4\r5 6\n", "2 space-separated integer fields 'user item'"),
    ],
)
def test_a_stray_cr_inside_a_line_is_named(tmp_path: Path, fmt: str, text: str, expect: str) -> None:
    path = write(tmp_path, "log.txt", text.encode())
    shown = text.split("\n")[1].replace("\r", "\\r")
    assert error(path, fmt) == f"{path}:2: expected {expect}, got '{shown}'"


def test_shorten_makes_quoted_input_one_short_line() -> None:
    assert shorten("a,b\r\nc") == "a,b\\r\\nc"
    assert shorten("x" * 500) == "x" * MAX_QUOTED + "..."
    assert shorten(ValueError("could not parse\n\nYou might want to try: ...")) == "could not parse"
