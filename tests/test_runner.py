"""Pieces the entry points share."""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from recsys_attn.atomic import write_atomic
from recsys_attn.errors import ConfigError
from recsys_attn.run.runner import start_run, write_json_atomic


def test_start_run_seeds_and_sets_the_matmul_precision() -> None:
    try:
        start_run(OmegaConf.create({"seed": 3, "float32_matmul_precision": "high"}))
        assert torch.get_float32_matmul_precision() == "high"
        first = torch.rand(3)
        start_run(OmegaConf.create({"seed": 3}))  # missing key: exact fp32
        assert torch.get_float32_matmul_precision() == "highest"
        assert torch.equal(torch.rand(3), first)
    finally:
        torch.set_float32_matmul_precision("highest")


def test_start_run_rejects_an_unknown_matmul_precision_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"float32_matmul_precision: 'fast' is not one of highest, high, medium"):
        start_run(OmegaConf.create({"seed": 0, "float32_matmul_precision": "fast"}))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_files_get_the_mode_of_any_new_file(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "metrics.json", {"val/ndcg@10": 0.1})
        write_atomic(tmp_path / "recs.csv", lambda tmp: tmp.write_text("user_id\n1\n"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "recs.csv").stat().st_mode) == mode
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"val/ndcg@10": 0.1}


def test_a_training_run_writes_metrics_json_like_any_new_file(
    ml100k_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run_dir, _ = ml100k_run
    umask = os.umask(0)
    os.umask(umask)  # the run inherited this process's umask
    assert stat.S_IMODE((run_dir / "metrics.json").stat().st_mode) == 0o666 & ~umask
