"""Each model's documented example (the command at the top of conf/model/<model>.yaml) beats popularity.

The command is read from the file a user reads, so the test runs what the documentation says, as written
(plus where its outputs go); popularity is trained on the same data. Minutes each on a CPU: ``slow``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, train_cli

EXAMPLE = re.compile(r"^#\s+python -m recsys_attn\.train ([^|]+)")
MODELS = ("sasrec", "bert4rec", "gru4rec")


def documented_example(model: str) -> list[str]:
    """The overrides of the first example command in ``conf/model/<model>.yaml``."""
    for line in (REPO_ROOT / "conf" / "model" / f"{model}.yaml").read_text().splitlines():
        if match := EXAMPLE.match(line):
            return match.group(1).split()
    raise AssertionError(f"conf/model/{model}.yaml documents no example command")


def test_every_model_documents_an_example_on_data_a_cpu_trains_in_minutes() -> None:
    for model in MODELS:
        overrides = documented_example(model)
        assert f"model={model}" in overrides, (model, overrides)
        assert "data=ml-100k" in overrides, (model, overrides)  # what the slow test below can afford


@pytest.fixture(scope="module")
def popularity(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path, shared_cache: Path) -> float:
    tmp = tmp_path_factory.mktemp("popularity")
    return train_cli(tmp, shared_cache, "pop", "data=ml-100k", "model=popularity", "logger=none", base=())[
        "test/ndcg@10"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_the_documented_example_beats_popularity(
    model: str, popularity: float, tmp_path: Path, real_data_dir: Path, shared_cache: Path
) -> None:
    metrics = train_cli(tmp_path, shared_cache, model, *documented_example(model), base=(), timeout=1500)
    got, low = metrics["test/ndcg@10"], metrics["test/ndcg@10_lo"]
    assert metrics["test/users"] == 943.0
    # clearly: the lower end of its 95% interval over users lies above popularity's value
    assert low > popularity, f"{model}: test ndcg@10 {got:.4f} ({low:.4f}-) against popularity's {popularity:.4f}"
