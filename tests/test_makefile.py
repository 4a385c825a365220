"""The Makefile's install switch (TORCH) and first run (EXPERIMENT), as `make -n` would run them."""

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.test_configs import compose_train

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def dry_run(*args: str) -> list[str]:
    """The commands ``make -n <args>`` would run."""
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def torch_install(*args: str) -> str:
    (line,) = [line for line in dry_run("install", *args) if "pip install torch" in line]
    return line


def test_install_takes_torch_from_the_default_index_unless_told_cpu() -> None:
    default = torch_install()
    assert "torch==2.13.0" in default and "--index-url" not in default  # GPU machines: PyPI's build
    assert torch_install("TORCH=cpu").split("torch==2.13.0", 1)[1].split() == ["--index-url", CPU_INDEX]


def test_install_takes_the_serve_extra_with_onnx() -> None:
    (line,) = [line for line in dry_run("install") if "pip install -e" in line]
    assert "serve" in line.split("[", 1)[1].split("]", 1)[0].split(",")
    serve = (REPO_ROOT / "pyproject.toml").read_text().split("\nserve = [", 1)[1].split("]", 1)[0]  # tomllib: 3.11+
    assert set(re.findall(r'"([a-z]+)>=', serve)) == {"onnx", "onnxscript", "onnxruntime"}  # export format=onnx


def test_ci_installs_with_the_default_index() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make install\n" in ci and "TORCH=" not in ci


def test_train_runs_the_quick_preset_and_the_paper_scale_one_is_one_word_away() -> None:
    (quick,) = [line for line in dry_run("train") if "recsys_attn.train" in line]
    assert quick.split("recsys_attn.train", 1)[1].split() == ["experiment=sasrec_ml-1m_quick"]
    (paper,) = [line for line in dry_run("train", "EXPERIMENT=sasrec_ml-1m", "ARGS=trainer=gpu") if "train" in line]
    assert paper.split("recsys_attn.train", 1)[1].split() == ["experiment=sasrec_ml-1m", "trainer=gpu"]
    (plain,) = [line for line in dry_run("train", "EXPERIMENT=") if "recsys_attn.train" in line]
    assert plain.split("recsys_attn.train", 1)[1].split() == []


def test_the_quick_preset_is_the_paper_recipe_cut_short() -> None:
    quick, paper = compose_train("experiment=sasrec_ml-1m_quick"), compose_train("experiment=sasrec_ml-1m")
    assert (quick.trainer.max_epochs, quick.model.max_len) == (5, 50)  # the model hands max_len to the data
    assert quick.data.source == paper.data.source and quick.data.max_eval_users is None  # all of ML-1M
    for key in ("hidden_size", "num_blocks", "num_heads", "dropout", "loss", "lr", "betas"):
        assert quick.model[key] == paper.model[key], key
