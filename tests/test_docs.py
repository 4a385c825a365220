"""The documents a user reads point only inside the repository, and the Makefile has the targets they name."""

from __future__ import annotations

import re
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


FIGURE = re.compile(
    r"(?<![\w.@/=+-])(\d+m\d+s|\d+(?:\.\d+)?\s?(?:ms|minutes?|min|hours?|s|x|%|GiB|MiB)\b|\d+\.\d+|\d{1,3}(?:,\d{3})+)(?![\w.])"
)
"""A measured figure as the README writes one: ``0.1098``, ``1m56s``, ``6 min``, ``1.7x``, ``2.05 GiB``, ``6,040``."""


UNIT = re.compile(r"\s?(ms|minutes?|min|hours?|s|x|%|GiB|MiB)$")
"""The unit of a figure: a table in benchmarks/ may give a decimal number in a column named by its unit (a whole
number without its unit, ``6`` of ``6 min``, would be found anywhere, so it must be recorded with its unit)."""


def readme_figures(text: str) -> list[tuple[int, str]]:
    """``(line, figure)`` of every figure in ``text`` outside code (fenced blocks and inline code: settings)."""
    found = []
    in_fence = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        prose = re.sub(r"`[^`]*`", "``", line)
        found += [(n, m.group(1)) for m in FIGURE.finditer(prose)]
    return found


def test_every_readme_figure_comes_from_a_record_in_benchmarks() -> None:
    """A figure quoted in the README appears, written the same way, in benchmarks/ (RESULTS.md, REPRODUCE.md, csv)."""
    records = "\n".join(
        p.read_text(encoding="utf-8")
        for p in sorted((REPO_ROOT / "benchmarks").rglob("*"))
        if p.suffix in (".md", ".csv")
    )
    unrecorded = [
        f"README.md:{n}: {fig}"
        for n, fig in readme_figures((REPO_ROOT / "README.md").read_text())
        if fig not in records and not ("." in fig and UNIT.sub("", fig) in records)
    ]
    assert not unrecorded, "figures without a record in benchmarks/: " + "; ".join(unrecorded)


def test_the_figure_check_sees_figures_and_skips_code() -> None:
    text = (
        "took 1m56s and 0.103 (0.097–0.109), 2.05 GiB, 1.7x, 913 tests in 6 min, 6,040 users, 25 minutes\n"
        "`k=0.5` and\n```\n9.99\n```\n"
    )
    assert [f for _, f in readme_figures(text)] == [
        "1m56s",
        "0.103",
        "0.097",
        "0.109",
        "2.05 GiB",
        "1.7x",
        "6 min",
        "6,040",
        "25 minutes",
    ]
