"""Every notebook runs top to bottom on real data, and is stored with its outputs stripped."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
@pytest.mark.slow
def test_notebook_executes(path: Path, real_data_dir: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ["RECSYS_ATTN_DATA_DIR"] = str(real_data_dir.resolve())  # the kernel inherits it
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_the_docs_say_which_make_target_runs_the_notebooks() -> None:
    slow = any(mark.name == "slow" for mark in getattr(test_notebook_executes, "pytestmark", []))
    readme = (REPO_ROOT / "notebooks" / "README.md").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    (test_help,) = [line for line in makefile.splitlines() if line.startswith("test:")]
    (full_help,) = [line for line in makefile.splitlines() if line.startswith("test-full:")]
    (marker,) = [line for line in (REPO_ROOT / "pyproject.toml").read_text().splitlines() if '"slow:' in line]
    if slow:  # only make test-full runs them
        assert "`make test-full`" in readme and "run in `make test`" not in readme
        assert "notebooks" in full_help and "notebooks" in marker and "notebooks" not in test_help
    else:  # make test runs them (and so does make test-full)
        assert "they run in `make test`" in readme
        assert "notebooks" in test_help and "notebooks" not in full_help and "notebooks" not in marker
