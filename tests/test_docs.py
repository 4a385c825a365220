"""The documents a user reads point only inside the repository, and the Makefile has the targets they name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

USER_FACING = sorted(
    [
        REPO_ROOT / "README.md",
        *(REPO_ROOT / "docs").glob("*.md"),
        *(REPO_ROOT / "notebooks").glob("*"),
        *(REPO_ROOT / "benchmarks").glob("*.md"),
        *(REPO_ROOT / "conf").rglob("*.yaml"),
        *(REPO_ROOT / "src").rglob("*.py"),
    ]
)


@pytest.mark.parametrize("path", USER_FACING, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_user_facing_text_points_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    bad = [n for n, line in enumerate(text.splitlines(), 1) if "../shared" in line or "/work/" in line]
    assert not bad, f"{path.relative_to(REPO_ROOT)}: lines {bad} name a path outside the repository"


def test_the_protocol_is_part_of_the_project() -> None:
    protocol = REPO_ROOT / "docs" / "PROTOCOL.md"
    assert "## Split: leave-one-out" in protocol.read_text()
    assert "(docs/PROTOCOL.md)" in (REPO_ROOT / "README.md").read_text()


def test_make_notebooks_executes_them_and_the_notebooks_readme_says_so() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text().splitlines()
    (target,) = [i for i, line in enumerate(makefile) if line.startswith("notebooks:")]
    assert "tests/test_notebooks.py" in makefile[target + 1] and "-m ''" in makefile[target + 1]
    readme = (REPO_ROOT / "notebooks" / "README.md").read_text()
    assert "`make notebooks`" in readme and "`make strip-notebooks`" in readme and "nbconvert" not in readme
