"""pyproject.toml declares its license as setuptools now wants it, so ``pip install -e .`` builds without warnings."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO_ROOT

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML")


def test_the_license_is_an_spdx_expression_and_the_build_has_a_setuptools_that_reads_it() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"  # a TOML table here is deprecated (one warning per build step)
    (setuptools,) = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    found = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert found and int(found.group(1)) >= 77, setuptools  # the first setuptools that reads an SPDX expression
    assert not [c for c in pyproject["project"].get("classifiers", []) if c.startswith("License ::")]
