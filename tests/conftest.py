"""Shared pytest fixtures."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.samples import SampleSpec
from recsys_attn.run.noise import silence_third_party_noise

REPO_ROOT = Path(__file__).resolve().parents[1]
silence_third_party_noise()  # what the entry points drop (Lightning's litlogger tip, ...) stays out of test output


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real data sets (``$RECSYS_ATTN_DATA_DIR``, CI: ../shared/data); skip when absent."""
    value = os.environ.get("RECSYS_ATTN_DATA_DIR")
    path = Path(value) if value else REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set RECSYS_ATTN_DATA_DIR)")
    os.environ["RECSYS_ATTN_DATA_DIR"] = str(path.resolve())  # the CLI runs of the tests read it too
    return path


CONF_DIR = REPO_ROOT / "conf"


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a loaded 2-core machine, tiny models run far faster without contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def seeded_draws(request: pytest.FixtureRequest) -> None:
    """Each test draws the same numbers on every machine and run: torch, numpy and ``random`` seeded by its id.

    A tolerance still comes from the dtype and the operation count (tests/tolerances.py), never from these draws;
    the seed only makes a failure on another CPU reproducible here, with the same inputs.
    """
    import random
    import zlib

    import numpy as np
    import torch

    seed = zlib.crc32(request.node.nodeid.encode())
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared-data cache for the whole session (ml-1m is prepared once)."""
    return tmp_path_factory.mktemp("cache")


def run_cli(
    module: str, *overrides: str, cwd: Path, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> <overrides>`` the way a user does, capturing its output.

    ``env`` replaces the environment (default: this one, with W&B offline).
    """
    if env is None:
        env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    env = dict(env, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Small real-data runs through the CLI: SASRec on ml-1m, short sequences, a few steps, 300 eval users.
TINY_RUN = (
    "trainer.accelerator=cpu",
    "model.max_len=10",
    "model.hidden_size=16",
    "data.batch_size=64",
    "trainer.limit_train_batches=4",
    "data.max_eval_users=300",
)


def train_cli(
    tmp: Path, cache: Path, name: str, *overrides: str, base: tuple[str, ...] = TINY_RUN, timeout: int = 600
) -> dict[str, float]:
    """Train through ``python -m recsys_attn.train`` (``base`` settings, then ``overrides``) into ``tmp/name``;
    its metrics."""
    import json

    run_dir = tmp / name
    proc = run_cli(
        "recsys_attn.train",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={cache}",
        *base,
        *overrides,
        cwd=tmp,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path, shared_cache: Path) -> Path:
    """``last.ckpt`` of a one-epoch ``TINY_RUN`` SASRec on ml-1m, trained once per session."""
    tmp = tmp_path_factory.mktemp("tiny_ckpt")
    train_cli(tmp, shared_cache, "src", "trainer.max_epochs=1")
    return tmp / "src" / "checkpoints" / "last.ckpt"


def toy_datamodule(
    tmp_path: Path, lines: list[str], samples: SampleSpec | None = None, setup: bool = True, **settings: Any
) -> SeqDataModule:
    """A datamodule over a small ``user item`` log written into ``tmp_path``.

    Unless ``setup=False`` it is set up and connected to ``samples`` (default: next-item, max_len 200).
    """
    from recsys_attn.data.preprocess import Preparation
    from recsys_attn.data.sources import Source
    from recsys_attn.data.split import SplitConfig

    (tmp_path / "toy").mkdir(parents=True, exist_ok=True)
    (tmp_path / "toy" / "log.txt").write_text("\n".join(lines) + "\n")
    dm = SeqDataModule(
        Source(name="toy", format="user_item", path="toy/log.txt"),
        Preparation(),
        SplitConfig(),
        data_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        **settings,
    )
    if setup:
        dm.setup("fit")
        dm.connect(samples or SampleSpec("next", 200))
    return dm


def benchmark_module(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` imported as a module (the scripts import each other by name)."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def timed_datamodule(tmp_path: Path, rows: list[str], samples: SampleSpec) -> SeqDataModule:
    """A datamodule over a small ``user,item,timestamp`` CSV log (seconds), set up and connected to ``samples``."""
    from recsys_attn.data.preprocess import Preparation
    from recsys_attn.data.sources import Source
    from recsys_attn.data.split import SplitConfig

    (tmp_path / "timed").mkdir(parents=True, exist_ok=True)
    (tmp_path / "timed" / "log.csv").write_text("user,item,timestamp\n" + "\n".join(rows) + "\n")
    columns = {"user": "user", "item": "item", "timestamp": "timestamp"}
    source = Source(name="timed", format="csv", path="timed/log.csv", columns=columns)
    dm = SeqDataModule(source, Preparation(), SplitConfig(), data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
    dm.setup("fit")
    dm.connect(samples)
    return dm


def quiet_trainer(tmp_path: Path, **kwargs: Any) -> Any:
    """A one-CPU Lightning ``Trainer`` without logger, checkpoints, progress bar or summary."""
    import lightning as L

    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def read_only_folder(path: Path) -> Path:
    """``path`` made a folder this process cannot write in; skip where chmod does not stop it (root)."""
    path.mkdir()
    path.chmod(0o555)
    try:
        (path / "probe").touch()
    except PermissionError:
        return path
    (path / "probe").unlink()
    path.chmod(0o755)
    pytest.skip("chmod does not stop this process writing (root with CAP_DAC_OVERRIDE); simulated refusals cover it")


# A tiny real run on ml-100k through the CLI, as a user starts it (Python's own warning filters, no -W).
ML100K_TINY = (
    "data=ml-100k",
    "trainer.accelerator=cpu",
    "model.max_len=10",
    "model.hidden_size=16",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "data.max_eval_users=100",
)


@pytest.fixture(scope="session")
def ml100k_run(
    tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path, shared_cache: Path
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The run directory and console output of an ``ML100K_TINY`` training, run once per session."""
    tmp = tmp_path_factory.mktemp("ml100k")
    run_dir = tmp / "run"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    command = [sys.executable, "-m", "recsys_attn.train", f"hydra.run.dir={run_dir}", f"paths.cache_dir={shared_cache}"]
    proc = subprocess.run(
        [*command, *ML100K_TINY],
        cwd=tmp,
        env=dict(env, WANDB_MODE="offline", WANDB_SILENT="true"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc
