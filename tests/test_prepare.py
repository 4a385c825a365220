"""The prepare entry point: configs compose and instantiate; the CLI prepares and summarises."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from recsys_attn.data.preprocess import Preparation
from recsys_attn.data.sources import Source
from recsys_attn.jobs.prepare import prepare, summary
from tests import conftest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
DATA_CONFIGS = sorted(p.stem for p in (CONF / "data").glob("*.yaml") if not p.stem.startswith("_"))


def compose_prepare(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="prepare", overrides=overrides)


@pytest.mark.parametrize("data", DATA_CONFIGS)
def test_every_data_config_builds_source_and_preparation(data: str, tmp_path: Path) -> None:
    import hydra

    overrides = [f"data={data}"]
    if data == "interactions":
        overrides.append(f"data.source.path={tmp_path / 'log.csv'}")
    cfg = compose_prepare(overrides)
    source = hydra.utils.instantiate(cfg.data.source)
    prep = hydra.utils.instantiate(cfg.data.preparation)
    assert isinstance(source, Source)
    assert isinstance(prep, Preparation)
    assert source.name == data


def test_prepare_own_csv_through_the_config(tmp_path: Path) -> None:
    log = tmp_path / "data" / "log.csv"
    log.parent.mkdir()
    # 5-core (interactions.yaml): user 'z' (1 row) goes, then item 'i5' (4 rows left) goes
    rows = [f"u{u},i{i},{u * 10 + i}" for u in range(5) for i in range(6)] + ["z,i5,0"]
    rows = [r for r in rows if r != "u0,i5,5"]
    log.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    cfg = compose_prepare(
        [
            "data=interactions",
            "data.source.path=log.csv",
            f"paths.data_dir={log.parent}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ]
    )
    p = prepare(cfg)
    assert (p.n_users, p.n_items, p.n_interactions) == (5, 5, 25)
    assert p.users["user_id"].to_list() == ["u0", "u1", "u2", "u3", "u4"]
    assert p.items["item_id"].to_list() == ["i0", "i1", "i2", "i3", "i4"]
    lines = summary(p).splitlines()
    assert lines[:4] == [
        "data set      interactions",
        "users         5",
        "items         5",
        "interactions  25",
    ]
    assert lines[4] == f"cache         {p.meta['cache_path']}"
    assert Path(p.meta["cache_path"]).parent == tmp_path / "cache" / "prepared"


def run_cli(args: list[str], cwd: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECSYS_ATTN_DATA_DIR": str(data_dir)}
    return conftest.run_cli("recsys_attn.prepare", *args, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize(
    ("data", "counts"),
    [
        ("ml-1m", ("6,040", "3,416", "999,611")),
        ("beauty", ("40,226", "54,542", "353,962")),
        ("ml-100k", ("943", "1,682", "100,000")),
    ],
)
@pytest.mark.slow
def test_cli_prepares_real_data(real_data_dir: Path, tmp_path: Path, data: str, counts: tuple[str, str, str]) -> None:
    cache_dir = tmp_path / "cache"
    result = run_cli([f"data={data}", f"paths.cache_dir={cache_dir}"], tmp_path, real_data_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[-5:]
    (folder,) = (cache_dir / "prepared").iterdir()
    assert lines == [
        f"data set      {data}",
        f"users         {counts[0]}",
        f"items         {counts[1]}",
        f"interactions  {counts[2]}",
        f"cache         {folder}",
    ]
    assert (tmp_path / "logs" / "prepare" / "runs").is_dir()  # Hydra's run dir under the cwd


def test_cli_missing_file_error(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/ml-1m.txt"  # refused: no network needed for this test
    args = ["data=ml-1m", f"data.source.url={url}", f"paths.cache_dir={tmp_path / 'c'}"]
    result = run_cli(args, tmp_path, tmp_path / "nodata")
    assert result.returncode != 0
    target = tmp_path / "nodata" / "ml-1m" / "ml-1m.txt"
    assert f"file not found at {target}, and the download from {url} failed" in result.stderr
    assert not (tmp_path / "c").exists()
    assert not (tmp_path / "nodata").exists()  # a failed download leaves no folders
