"""Every setting is checked once where it becomes typed, and a wrong one fails with one line naming its key."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from recsys_attn.data.settings import DataSettings
from recsys_attn.errors import ConfigError
from recsys_attn.models.settings import (
    ClozeSettings,
    EvalSettings,
    GRUSettings,
    SequentialSettings,
    TransformerSettings,
)
from recsys_attn.run.entry import run_entry_point
from recsys_attn.run.runner import CKPT_EXAMPLE, read_checkpoint, start_run
from recsys_attn.settings import check_type, check_types
from tests.conftest import run_cli

SETTINGS = [
    (EvalSettings, "model"),
    (SequentialSettings, "model"),
    (TransformerSettings, "model"),
    (ClozeSettings, "model"),
    (GRUSettings, "model"),
    (DataSettings, "data"),
]


def fails(message: str) -> Any:
    """``pytest.raises`` for a ConfigError whose whole message is ``message``."""
    return pytest.raises(ConfigError, match=f"^{re.escape(message)}$")


# --- the generic type check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (int, "abc", "an integer"),
        (int, 16.5, "an integer"),
        (int, True, "an integer"),  # bool is not an int
        (float, "abc", "a finite number"),
        (float, False, "a finite number"),
        (float, float("nan"), "a finite number"),
        (float, float("inf"), "a finite number"),
        (bool, 1, "true or false"),
        (bool, "yes", "true or false"),
        (str, 3, "a string"),
        (list[int], [1, "a"], "a list of integers"),
        (list[int], [1, True], "a list of integers"),
        (list[int], "1,5", "a list of integers"),
        (list[float], [0.9, None], "a list of finite numbers"),
        (int | None, "abc", "null or an integer"),
        (str | None, 1, "null or a string"),
    ],
)
def test_check_type_rejects_values_of_another_type(annotation: Any, value: Any, expected: str) -> None:
    with fails(f"k: expected {expected} (got {value!r})"):
        check_type("k", value, annotation)


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (int, -3),
        (float, 1),  # a YAML `1` is a fine float
        (float, 0.5),
        (bool, False),
        (str, ""),
        (list[int], []),
        (list[int], OmegaConf.create([1, 5])),  # lists straight from a DictConfig
        (list[float], (0.9, 1)),
        (int | None, None),
        (int | None, 3),
    ],
)
def test_check_type_accepts_values_of_the_type(annotation: Any, value: Any) -> None:
    check_type("k", value, annotation)


@pytest.mark.parametrize(("cls", "group"), SETTINGS)
def test_every_field_of_every_settings_class_is_type_checked(cls: type, group: str) -> None:
    """A field whose annotation the checker does not know fails here, not silently unchecked."""
    defaults = cls()
    check_types(defaults, group)
    for f in fields(cls):
        wrong = [] if f.type in ("str", "str | None") else "x"  # a value of another type for every field
        with pytest.raises(ConfigError, match=rf"^{group}\.{f.name}: expected "):
            cls(**{f.name: wrong})


# --- values: direct construction ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "key", "value", "message"),
    [
        (TransformerSettings, "num_blocks", -1, "model.num_blocks: must be >= 1 (got -1)"),
        (TransformerSettings, "num_blocks", 0, "model.num_blocks: must be >= 1 (got 0)"),
        (TransformerSettings, "hidden_size", "abc", "model.hidden_size: expected an integer (got 'abc')"),
        (TransformerSettings, "hidden_size", 16.5, "model.hidden_size: expected an integer (got 16.5)"),
        (TransformerSettings, "hidden_size", True, "model.hidden_size: expected an integer (got True)"),
        (TransformerSettings, "hidden_size", 0, "model.hidden_size: must be >= 1 (got 0)"),
        (TransformerSettings, "num_heads", 3, "model.num_heads: must be >= 1 and divide model.hidden_size=64 (got 3)"),
        (TransformerSettings, "num_heads", 0, "model.num_heads: must be >= 1 and divide model.hidden_size=64 (got 0)"),
        (TransformerSettings, "dropout", 1.0, "model.dropout: must be in [0, 1) (got 1.0)"),
        (TransformerSettings, "ff_mult", 0, "model.ff_mult: must be >= 1 (got 0)"),
        (TransformerSettings, "lr", "abc", "model.lr: expected a finite number (got 'abc')"),
        (TransformerSettings, "lr", -1, "model.lr: must be > 0 (got -1)"),
        (TransformerSettings, "lr", 0.0, "model.lr: must be > 0 (got 0.0)"),
        (TransformerSettings, "weight_decay", -0.1, "model.weight_decay: must be >= 0 (got -0.1)"),
        (
            TransformerSettings,
            "betas",
            [0.9],
            "model.betas: expected two numbers in [0, 1), e.g. [0.9, 0.98] (got [0.9])",
        ),
        (
            TransformerSettings,
            "betas",
            [0.9, 1.0],
            "model.betas: expected two numbers in [0, 1), e.g. [0.9, 0.98] (got [0.9, 1.0])",
        ),
        (TransformerSettings, "betas", 0.9, "model.betas: expected a list of finite numbers (got 0.9)"),
        (TransformerSettings, "warmup_steps", -1, "model.warmup_steps: must be >= 0 (got -1)"),
        (TransformerSettings, "gbce_t", 1.5, "model.gbce_t: must be in [0, 1] (got 1.5)"),
        (TransformerSettings, "norm_first", 1, "model.norm_first: expected true or false (got 1)"),
        (
            TransformerSettings,
            "positions",
            "from_left",
            "model.positions: expected one of from_end, from_start, rotary (got 'from_left')",
        ),
        (
            ClozeSettings,
            "block_layout",
            "pre_norm",
            "model.block_layout: expected one of standard, sasrec_reference, bert_reference, ligr, hstu "
            "(got 'pre_norm')",
        ),
        (
            TransformerSettings,
            "loss",
            "hinge",
            "model.loss: expected one of bce, bpr, ce, gbce, mixed_softmax, sampled_softmax (got 'hinge')",
        ),
        (EvalSettings, "eval_ks", [0], "model.eval_ks: expected a non-empty list of integers >= 1 (got [0])"),
        (EvalSettings, "eval_ks", [], "model.eval_ks: expected a non-empty list of integers >= 1 (got [])"),
        (EvalSettings, "eval_ks", [1, "a"], "model.eval_ks: expected a list of integers (got [1, 'a'])"),
        (EvalSettings, "sampled_negatives", 0, "model.sampled_negatives: must be >= 1 (got 0)"),
        (EvalSettings, "max_len", 1, "model.max_len: must be >= 2 (got 1)"),
        (EvalSettings, "filter_seen", "no", "model.filter_seen: expected true or false (got 'no')"),
        (ClozeSettings, "mask_prob", 0.0, "model.mask_prob: must be in (0, 1] (got 0.0)"),
        (GRUSettings, "num_layers", 0, "model.num_layers: must be >= 1 (got 0)"),
        (GRUSettings, "dropout", 1.0, "model.dropout: must be in [0, 1) (got 1.0)"),
        (DataSettings, "max_eval_users", -1, "data.max_eval_users: expected null (all) or >= 1 (got -1)"),
        (DataSettings, "max_train_users", -1, "data.max_train_users: expected null (all) or >= 1 (got -1)"),
        (DataSettings, "max_eval_users", 0, "data.max_eval_users: expected null (all) or >= 1 (got 0)"),
        (DataSettings, "batch_size", "abc", "data.batch_size: expected an integer (got 'abc')"),
        (DataSettings, "batch_size", 0, "data.batch_size: must be >= 1 (got 0)"),
        (DataSettings, "eval_batch_size", -1, "data.eval_batch_size: must be >= 1 (got -1)"),
        (DataSettings, "window_stride", 0, "data.window_stride: expected null or >= 1 (got 0)"),
        (DataSettings, "num_workers", -1, "data.num_workers: must be >= 0 (got -1)"),
        (DataSettings, "seed", -1, "data.seed: must be in [0, 4294967295] (got -1)"),
        (DataSettings, "loader", "gpu", "data.loader: expected one of device, dataloader (got 'gpu')"),
        (DataSettings, "pin_memory", "yes", "data.pin_memory: expected true or false (got 'yes')"),
    ],
)
def test_a_wrong_setting_fails_naming_its_key_and_value(cls: type, key: str, value: Any, message: str) -> None:
    with fails(message):
        cls(**{key: value})


def test_the_reference_block_layout_needs_pre_norm() -> None:
    with fails(
        "model.block_layout: sasrec_reference is a pre-norm layout; it needs model.norm_first=true "
        "(got 'sasrec_reference')"
    ):
        TransformerSettings(block_layout="sasrec_reference", norm_first=False)
    TransformerSettings(block_layout="sasrec_reference", positions="from_start")  # with norm_first=true: fine


def test_the_bert_reference_block_layout_needs_post_norm() -> None:
    with fails(
        "model.block_layout: bert_reference is a post-norm layout; it needs model.norm_first=false "
        "(got 'bert_reference')"
    ):
        TransformerSettings(block_layout="bert_reference", norm_first=True)
    ClozeSettings(block_layout="bert_reference", norm_first=False)  # post-norm: fine


@pytest.mark.parametrize(
    ("loss", "negatives"),
    [("gbce", 0), ("sampled_softmax", -1), ("ce", 0)],
)
def test_negative_counts_below_one_fail_for_every_loss(loss: str, negatives: int) -> None:
    with fails(f"model.num_negatives: must be >= 1 (got {negatives})"):
        TransformerSettings(loss=loss, num_negatives=negatives)


def test_edge_values_that_are_fine_pass() -> None:
    s = TransformerSettings(lr=1, dropout=0, gbce_t=0, betas=[0, 0.999], warmup_steps=0, eval_ks=[1], num_negatives=1)
    assert s.lr == 1 and s.betas == [0, 0.999]
    d = DataSettings(max_eval_users=1, max_train_users=1, num_workers=0, seed=2**32 - 1, window_stride=None)
    assert d.max_eval_users == 1
    assert ClozeSettings(mask_prob=1.0).mask_prob == 1.0


# --- top-level keys: start_run, before anything runs ----------------------------------------------


def run_cfg(**values: Any) -> Any:
    return OmegaConf.create({"seed": 0, **values})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"seed": "abc"}, "seed: expected an integer (got 'abc')"),
        ({"seed": True}, "seed: expected an integer (got True)"),
        ({"seed": -1}, "seed: must be >= 0 (got -1)"),
        ({"seed": 2**32}, "seed: must be in [0, 4294967295] (got 4294967296)"),
        ({"trainer": {"max_epochs": "abc"}}, "trainer.max_epochs: expected null or an integer (got 'abc')"),
        ({"trainer": {"max_epochs": -2}}, "trainer.max_epochs: must be >= -1 (got -2)"),
        ({"ckpt_path": "???"}, f"ckpt_path: required, e.g. {CKPT_EXAMPLE}"),
        ({"ckpt_path": 3}, "ckpt_path: expected a string (got 3)"),
        ({"ckpt_path": ""}, "ckpt_path: expected a checkpoint file or null (got '')"),
    ],
)
def test_start_run_rejects_wrong_top_level_settings(values: dict[str, Any], message: str) -> None:
    with fails(message):
        start_run(run_cfg(**values))


@pytest.mark.parametrize("value", [None, ""])
def test_a_required_checkpoint_must_be_given(value: str | None) -> None:
    with fails(f"ckpt_path: required, e.g. {CKPT_EXAMPLE}"):
        start_run(run_cfg(ckpt_path=value), ckpt_required=True)


def test_start_run_accepts_no_limit_and_no_checkpoint() -> None:
    start_run(run_cfg(trainer={"max_epochs": -1}, ckpt_path=None))
    start_run(run_cfg(trainer={"max_epochs": None}))


@pytest.mark.parametrize("value", ["hpc", "s3://bucket/run/last.ckpt"])  # last: tests/test_checkpoints.py
def test_resuming_leaves_lightnings_keywords_and_urls_to_lightning(value: str) -> None:
    start_run(run_cfg(ckpt_path=value))
    with pytest.raises(ConfigError, match=r"^ckpt_path: no checkpoint at"):  # evaluate and predict read files
        start_run(run_cfg(ckpt_path=value), ckpt_required=True)


def test_checkpoint_paths_that_are_not_checkpoints_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ckpt"
    with fails(f"ckpt_path: no checkpoint at {missing.resolve()} (got '{missing}')"):
        start_run(run_cfg(ckpt_path=str(missing)))
    with fails(f"ckpt_path: expected a checkpoint file, not a directory (got '{tmp_path}')"):
        start_run(run_cfg(ckpt_path=str(tmp_path)))
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ConfigError, match=rf"^ckpt_path: cannot read {re.escape(str(text))} as a checkpoint"):
        start_run(run_cfg(ckpt_path=str(text)))
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ConfigError, match="without 'state_dict', not a Lightning checkpoint"):
        read_checkpoint(plain)
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, good)
    assert torch.equal(read_checkpoint(good)["state_dict"]["w"], torch.ones(2))
    start_run(run_cfg(ckpt_path=str(good)), ckpt_required=True)


# --- through the real CLI: exit 1, the last line names the key -----------------------------------


@pytest.mark.parametrize(
    ("module", "overrides", "message"),
    [
        ("recsys_attn.train", ["model.hidden_size=abc"], "error: model.hidden_size: expected an integer (got 'abc')"),
        ("recsys_attn.train", ["data.eval_batch_size=-1"], "error: data.eval_batch_size: must be >= 1 (got -1)"),
        ("recsys_attn.evaluate", [], f"error: ckpt_path: required, e.g. {CKPT_EXAMPLE}"),
        (
            "recsys_attn.evaluate",
            ["splits=[tset]"],
            "error: splits: expected a non-empty list of val, test (got ['tset'])",
        ),
        ("recsys_attn.predict", ["k=abc"], "error: k: expected an integer (got 'abc')"),
    ],
)
def test_cli_fails_with_one_line_naming_the_key(
    module: str, overrides: list[str], message: str, tmp_path: Path
) -> None:
    proc = run_cli(module, *overrides, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_train_ckpt_path_to_a_directory_fails_before_any_data_work(tmp_path: Path) -> None:
    proc = run_cli("recsys_attn.train", f"ckpt_path={tmp_path}", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    expected = f"error: ckpt_path: expected a checkpoint file, not a directory (got '{tmp_path}')"
    assert proc.stderr.strip().splitlines()[-1] == expected
    assert "data ml-1m:" not in proc.stdout + proc.stderr  # nothing was prepared or loaded


def test_entry_points_print_the_settings_error_behind_hydras_wrapper() -> None:
    import hydra

    def main() -> None:
        hydra.utils.instantiate({"_target_": "recsys_attn.data.settings.DataSettings", "batch_size": 0})

    with pytest.raises(SystemExit) as exc:
        run_entry_point(main)
    assert exc.value.code == "error: data.batch_size: must be >= 1 (got 0)"  # not "Error in call to target ..."


def test_entry_points_name_a_required_value_left_unset() -> None:
    def main() -> None:
        OmegaConf.create({"data": {"source": {"path": "???"}}}).data.source.path  # noqa: B018

    with pytest.raises(SystemExit) as exc:
        run_entry_point(main)
    assert exc.value.code == "error: data.source.path: required; set it on the command line (data.source.path=...)"


def exit_message(main: Callable[[], object]) -> object:
    with pytest.raises(SystemExit) as exc:
        run_entry_point(main)
    return exc.value.code


def raise_(exc: BaseException) -> Callable[[], None]:
    def main() -> None:
        raise exc

    return main


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_a_file_system_that_refuses_a_write_is_one_line_naming_the_path(code: int) -> None:
    refused = OSError(code, os.strerror(code), "/logs/train/runs/x")  # e.g. Hydra making the run directory
    assert exit_message(raise_(refused)) == f"error: /logs/train/runs/x: {os.strerror(code)}"
    wrapped = ValueError("Unable to configure handler 'file'")  # logging's wrapper of the same failure
    wrapped.__cause__ = refused
    assert exit_message(raise_(wrapped)) == f"error: /logs/train/runs/x: {os.strerror(code)}"


def test_a_full_disk_that_names_no_file_names_the_run_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra.core.hydra_config import HydraConfig

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write() that failed: no file name
    assert exit_message(raise_(full)) == "error: No space left on device"
    monkeypatch.setattr(HydraConfig.instance(), "cfg", OmegaConf.create({"hydra": {"runtime": {"output_dir": "/r"}}}))
    assert exit_message(raise_(full)) == "error: /r: No space left on device"


def test_other_os_errors_keep_their_traceback() -> None:
    with pytest.raises(ConnectionResetError):  # not a file-system refusal: a bug or the network, shown in full
        run_entry_point(raise_(ConnectionResetError(errno.ECONNRESET, "reset")))
