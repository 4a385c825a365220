"""Loading checkpoints: a bad file fails with a message naming ckpt_path, never a pickle traceback."""

from pathlib import Path

import pytest
import torch

from recsys_attn.errors import ConfigError
from recsys_attn.run.checkpoints import load_module


@pytest.mark.slow
def test_truncated_checkpoint_is_named(tmp_path: Path, tiny_checkpoint: Path) -> None:
    cut = tmp_path / "cut.ckpt"
    data = tiny_checkpoint.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=rf"ckpt_path: cannot read {cut} as a checkpoint"):
        load_module(cut)
    assert type(load_module(tiny_checkpoint)).__name__ == "SASRec"  # the whole file still loads


def test_other_files_are_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ConfigError, match="ckpt_path: cannot read"):
        load_module(text)
    listing = tmp_path / "list.ckpt"
    torch.save([1, 2], listing)
    with pytest.raises(ConfigError, match="holds a list, not a Lightning checkpoint"):
        load_module(listing)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ConfigError, match="was not written by recsys_attn"):
        load_module(foreign)
