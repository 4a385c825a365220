"""`make test-cpu-kinds` reruns the numerical tests as other kinds of CPU round, and CI names its CPU."""

import re
import shutil
import subprocess

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
    slow_only = {"tests/test_experiments.py", "tests/test_predict.py", "tests/serving/test_ope.py"}  # CLI runs
    for found in set(proc.stdout.split()) - slow_only - {"tests/test_cpu_kinds.py", "tests/tolerances.py"}:
        assert any(found == p or found.startswith(p.rstrip("/") + "/") for p in paths), found


def test_ci_prints_the_cpu_before_anything_and_reruns_the_numerical_tests_after_make_test() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert ci.index('echo "cpu: ') < ci.index("make install\n")
    assert "nproc" in ci and "MemTotal" in ci and "avx512" in ci and "amx" in ci and "bf16" in ci
    assert ci.index("make test\n") < ci.index("make test-cpu-kinds\n")
