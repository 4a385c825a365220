"""``--help`` of every entry point: a short header (what it does, three examples, where outputs go)."""

import re
from itertools import takewhile
from pathlib import Path

import pytest

from tests.conftest import CONF_DIR, run_cli

ENTRY_POINTS = ["train", "evaluate", "predict", "prepare", "export", "ope"]
TRAIN_GROUPS = ["model", "data", "features", "trainer", "experiment", "logger", "callbacks", "debug", "hparams_search"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def help_text(entry_point: str, tmp_path: Path) -> str:
    proc = run_cli(f"recsys_attn.{entry_point}", "--help", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.slow
def test_help_is_a_short_header_with_three_examples(entry_point: str, tmp_path: Path) -> None:
    text = help_text(entry_point, tmp_path)
    lines = text.strip().splitlines()
    assert len(lines) <= 25, text  # not Hydra's 150 lines of config
    assert lines[0].startswith(f"python -m recsys_attn.{entry_point} ")  # the usage
    examples = [line for line in lines if line.startswith(f"  python -m recsys_attn.{entry_point} ")]
    assert len(examples) == 3, text
    assert any(line.startswith("Outputs:") for line in lines), text
    assert "_datamodule" not in text and "Powered by Hydra" not in text
    assert not list(tmp_path.iterdir())  # --help runs nothing and writes nothing


def test_train_help_lists_every_option_of_its_groups(tmp_path: Path) -> None:
    """One subprocess (~2 s), so in `make test`: a preset or option missing from --help fails CI."""
    lines = help_text("train", tmp_path).splitlines()
    for group in TRAIN_GROUPS:
        (start,) = [i for i, line in enumerate(lines) if line.split()[:1] == [group]]
        column = len(lines[start]) - len(lines[start].split(maxsplit=1)[1])  # where the options begin
        listed = [lines[start][column:]]  # the group's line and the lines it wraps onto, indented to its options
        wrapped = takewhile(lambda x, c=column: x[:c].isspace() and bool(x[c:]), lines[start + 1 :])
        listed += [x[column:] for x in wrapped]
        for option in options(group):
            assert re.search(rf"(^|[\s,:]){re.escape(option)}($|[\s,;(])", " ".join(listed)), (group, option)


def test_prepare_help_lists_every_data_set(tmp_path: Path) -> None:
    (line,) = [line for line in help_text("prepare", tmp_path).splitlines() if line.startswith("Data sets:")]
    assert all(option in line for option in options("data"))
