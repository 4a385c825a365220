"""locate(): local files, downloads from a local HTTP server, zip members, checksums, atomicity."""

from __future__ import annotations

import hashlib
import http.server
import logging
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from recsys_attn.data import download
from recsys_attn.data.download import locate
from recsys_attn.data.errors import DataError
from recsys_attn.data.sources import Source

CONTENT = b"1 1\n1 2\n2 1\n"
SHA = hashlib.sha256(CONTENT).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reach the local server directly even where an HTTP proxy is configured."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    """Base URL of an HTTP server on localhost serving ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "log.txt").write_bytes(CONTENT)
    with zipfile.ZipFile(root / "data.zip", "w") as zf:
        zf.writestr("pack/README", "hello")
        zf.writestr("pack/log.txt", CONTENT)
    handler = partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_local_file_is_returned_without_download(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "log.txt").write_bytes(CONTENT)
    source = Source(name="t", format="user_item", path="d/log.txt", url="http://0.0.0.0:9/x")
    assert locate(source, tmp_path) == tmp_path / "d" / "log.txt"


def test_absolute_path_ignores_data_dir(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_bytes(CONTENT)
    source = Source(name="t", format="user_item", path=str(path))
    assert locate(source, tmp_path / "elsewhere") == path


def test_local_file_with_other_checksum_is_used_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "log.txt").write_bytes(b"1 5\n")
    source = Source(name="t", format="user_item", path="log.txt", sha256=SHA)
    with caplog.at_level(logging.WARNING):
        assert locate(source, tmp_path) == tmp_path / "log.txt"
    assert "used as given" in caplog.text
    assert SHA in caplog.text


def test_download_plain_file(tmp_path: Path, server: str) -> None:
    data_dir = tmp_path / "data"
    source = Source(name="t", format="user_item", path="set/log.txt", url=f"{server}/log.txt", sha256=SHA)
    path = locate(source, data_dir)
    assert path == data_dir / "set" / "log.txt"
    assert path.read_bytes() == CONTENT
    assert listing(data_dir / "set") == ["log.txt"]  # no temporary files left


def test_download_without_checksum_logs_the_sum(tmp_path: Path, server: str, caplog: pytest.LogCaptureFixture) -> None:
    source = Source(name="t", format="user_item", path="log.txt", url=f"{server}/log.txt")
    with caplog.at_level(logging.INFO):
        locate(source, tmp_path / "data")
    assert f"sha256 {SHA}" in caplog.text


def test_download_extracts_zip_member(tmp_path: Path, server: str) -> None:
    data_dir = tmp_path / "data"
    source = Source(
        name="t",
        format="user_item",
        path="set/log.txt",
        url=f"{server}/data.zip",
        archive_member="pack/log.txt",
        sha256=SHA,
    )
    path = locate(source, data_dir)
    assert path.read_bytes() == CONTENT
    assert listing(data_dir / "set") == ["log.txt"]  # the archive itself is not kept


def test_missing_zip_member_lists_members(tmp_path: Path, server: str) -> None:
    source = Source(
        name="t",
        format="user_item",
        path="log.txt",
        url=f"{server}/data.zip",
        archive_member="pack/nope.txt",
    )
    with pytest.raises(DataError, match=r"no member 'pack/nope.txt' .* members: pack/README"):
        locate(source, tmp_path / "data")
    assert listing(tmp_path / "data") == []


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, server: str) -> None:
    data_dir = tmp_path / "data"
    source = Source(name="t", format="user_item", path="log.txt", url=f"{server}/log.txt", sha256="0" * 64)
    data_dir.mkdir()
    with pytest.raises(DataError) as err:
        locate(source, data_dir)
    message = str(err.value)
    assert "checksum mismatch for the download from" in message
    assert f"sha256 {SHA}, expected data.source.sha256={'0' * 64}" in message
    assert listing(data_dir) == []  # no temporary file left; the existing folder stays


def test_offline_error_says_where_to_put_the_file(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/log.txt"  # discard port: connection refused
    source = Source(name="t", format="user_item", path="set/log.txt", url=url)
    with pytest.raises(DataError) as err:
        locate(source, tmp_path / "data")
    message = str(err.value)
    target = (tmp_path / "data" / "set" / "log.txt").absolute()
    assert message.startswith(f"data set 't': file not found at {target}, and the download ")
    assert f"from {url} failed (" in message
    assert "paths.data_dir" in message
    assert "RECSYS_ATTN_DATA_DIR" in message
    assert not (tmp_path / "data").exists()  # no empty folders left behind


def test_http_error_is_reported(tmp_path: Path, server: str) -> None:
    source = Source(name="t", format="user_item", path="log.txt", url=f"{server}/missing.txt")
    with pytest.raises(DataError, match=r"failed \(HTTP 404 "):
        locate(source, tmp_path / "data")


def test_no_url_is_reported(tmp_path: Path) -> None:
    source = Source(name="t", format="user_item", path="log.txt")
    with pytest.raises(DataError, match=r"no file at .*log.txt, and no data.source.url to download it from. Put"):
        locate(source, tmp_path)
    absolute = Source(name="t", format="user_item", path=str(tmp_path / "log.txt"))
    with pytest.raises(DataError, match=r"to download it from.$"):  # no data directory to point at
        locate(absolute, tmp_path)


def test_interrupted_download_leaves_nothing(tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fetch(url: str, dest: Path) -> None:
        dest.write_bytes(CONTENT[:5])
        raise ConnectionResetError("connection reset")

    monkeypatch.setattr(download, "_fetch", broken_fetch)
    data_dir = tmp_path / "data"
    source = Source(name="t", format="user_item", path="log.txt", url=f"{server}/log.txt")
    with pytest.raises(DataError, match=r"failed \(ConnectionResetError: connection reset\)"):
        locate(source, data_dir)
    assert listing(data_dir) == []
    monkeypatch.undo()
    assert locate(source, data_dir).read_bytes() == CONTENT  # a later run starts clean
