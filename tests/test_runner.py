"""Pieces the entry points share."""

import pytest
import torch
from omegaconf import OmegaConf

from recsys_attn.config import ConfigError
from recsys_attn.runner import start_run


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
