"""`make test-cpu-kinds` reruns the numerical tests as other kinds of CPU round, and CI names its CPU."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.test_makefile import dry_run

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def pytest_runs() -> list[str]:
    return [line for line in dry_run("test-cpu-kinds") if "-m pytest" in line]


def test_each_cpu_kind_caps_aten_mkl_and_onednn_and_has_its_own_compile_cache() -> None:
    default, avx2 = pytest_runs()
    assert re.match(r"ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41 ", default)
    assert re.match(r"ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ", avx2)
    caches = [re.search(r"TORCHINDUCTOR_CACHE_DIR=(\S+)", line) for line in (default, avx2)]
    assert all(caches) and len({c.group(1) for c in caches if c}) == 2  # a kernel cached for one fails the other


def test_every_file_with_tolerances_is_one_of_the_numerical_tests() -> None:
    (line, _) = pytest_runs()
    paths = line.split("-m pytest -q ", 1)[1].split()
    assert all((REPO_ROOT / p).exists() for p in paths), paths
    proc = subprocess.run(
        ["grep", "-rlE", r"tests\.tolerances import|torch\.testing\.assert_close|allclose", "tests"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    cli_runs = {
        "tests/test_experiments.py",
        "tests/test_predict.py",
        "tests/serving/test_ope.py",
        "tests/test_features_run.py",
    }
    for found in set(proc.stdout.split()) - {"tests/test_cpu_kinds.py", "tests/tolerances.py"}:
        # a helper module (not test_*.py) holds tolerances for the test files that import it: those are the ones run
        users = [found] if Path(found).name.startswith("test_") else importers(found)
        for user in set(users) - cli_runs:
            assert any(user == p or user.startswith(p.rstrip("/") + "/") for p in paths), (found, user)


def importers(module_file: str) -> list[str]:
    """The test files that import ``module_file`` (a path under tests/) by its dotted name."""
    dotted = module_file.removesuffix(".py").replace("/", ".")
    proc = subprocess.run(
        ["grep", "-rlF", f"from {dotted} import", "tests"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    users = proc.stdout.split()
    assert users, f"{module_file} holds tolerances but no test imports it"
    return users


def test_ci_prints_the_cpu_before_anything_and_reruns_the_numerical_tests_after_make_test() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert ci.index('echo "cpu: ') < ci.index("make install\n")
    assert "nproc" in ci and "MemTotal" in ci and "avx512" in ci and "amx" in ci and "bf16" in ci
    assert ci.index("make test\n") < ci.index("make test-cpu-kinds\n")
