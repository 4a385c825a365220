"""Fixtures of the data tests."""

from pathlib import Path

import pytest

# A toy ``user item`` log: user 1 -> items 1 2 3, user 2 -> 1 2, user 3 -> 1 3.
LOG = "1 1\n1 2\n1 3\n2 1\n2 2\n3 1\n3 3\n"


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    """A data directory holding the toy log as ``log.txt``."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "log.txt").write_text(LOG)
    return folder
