"""Checkpoints that know their data, and resumes that fail in one line (issue 23 §2).

Loading a checkpoint with data refuses data whose item ids mean other items; ``ckpt_path=last`` in a new run
directory and a resume with another architecture fail naming what to do, before anything is trained.
"""

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from recsys_attn.data.datamodule import SeqDataModule
from recsys_attn.data.errors import DataError
from recsys_attn.errors import ConfigError
from recsys_attn.models.base import RecModule
from recsys_attn.models.bert4rec import BERT4Rec
from recsys_attn.models.sasrec import SASRec
from recsys_attn.run.checkpoints import check_resume, check_same_data
from recsys_attn.run.runner import latest_run_like, resume_path, start_run
from tests.conftest import REPO_ROOT, run_cli, toy_datamodule

# -- the checks themselves, on toy data -----------------------------------------------------------

LINES = ["1 10", "1 11", "1 12", "2 11", "2 12", "2 13", "3 10", "3 13"]
PERMUTED = ["1 12", "1 13", "1 10", "2 13", "2 10", "2 11", "3 12", "3 11"]  # ids 10 11 12 13 -> 12 13 10 11


def saved_with(dm: SeqDataModule) -> dict[str, object]:
    return {RecModule.DATA_KEY: dm.data_identity.to_dict()}


def test_the_data_it_was_trained_on_passes_silently(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    trained = toy_datamodule(tmp_path / "a", LINES)
    with caplog.at_level(logging.WARNING):
        check_same_data(saved_with(trained), "m.ckpt", toy_datamodule(tmp_path / "b", LINES), "pass it")
    assert not caplog.records


def test_other_item_ids_are_refused_naming_both_maps(tmp_path: Path) -> None:
    trained = toy_datamodule(tmp_path / "a", LINES)
    other = toy_datamodule(tmp_path / "b", [line.replace(" 1", " 2") for line in LINES])  # ids 20..23
    assert other.n_items == trained.n_items
    now, saved = other.data_identity, trained.data_identity
    with pytest.raises(DataError) as info:
        check_same_data(saved_with(trained), "m.ckpt", other, "pass the data it was trained with")
    message = str(info.value)
    assert message.startswith(f"data: toy's item ids (map {now.item_map[:12]}) are not those the checkpoint m.ckpt")
    assert "(toy, toy/log.txt, rating_threshold=None dedup=True" in message
    assert f"map {saved.item_map[:12]}); pass the data it was trained with" in message
    assert "\n" not in message


def test_a_copy_with_permuted_ids_is_refused(tmp_path: Path) -> None:
    """The same file name and preparation with another log: the sorted map is the same, the items are not."""
    trained = toy_datamodule(tmp_path / "a", LINES)
    copy = toy_datamodule(tmp_path / "b", PERMUTED)
    with pytest.raises(DataError, match=r"^data: toy's log toy/log.txt \(log [0-9a-f]{12}\) is not the one .* m.ckpt"):
        check_same_data(saved_with(trained), "m.ckpt", copy, "pass it")


def test_another_file_with_the_same_item_ids_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A later log or another preparation over the same items is the user's choice: said, not refused."""
    trained = toy_datamodule(tmp_path / "a", LINES)
    saved = {RecModule.DATA_KEY: replace(trained.data_identity, file="toy/older.txt").to_dict()}
    with caplog.at_level(logging.WARNING):
        check_same_data(saved, "m.ckpt", toy_datamodule(tmp_path / "b", PERMUTED), "pass it")
    assert "m.ckpt was trained on other data (toy, toy/older.txt" in caplog.text


def test_a_checkpoint_from_before_identities_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        check_same_data({}, "old.ckpt", toy_datamodule(tmp_path, LINES), "pass it")
    assert "old.ckpt records no data identity" in caplog.text


def resumable(tmp_path: Path, model: RecModule, dm: SeqDataModule) -> Path:
    """A checkpoint file of ``model`` on ``dm`` with the entries ``check_resume`` reads, as training writes them."""
    path = tmp_path / "model.ckpt"
    entries = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), **saved_with(dm)}
    torch.save({**entries, RecModule.CLASS_KEY: f"{type(model).__module__}.{type(model).__qualname__}"}, path)
    return path


@pytest.mark.parametrize(
    ("now", "changed"),
    [
        ({"hidden_size": 32}, "model.hidden_size: 16 in the checkpoint, 32 now"),  # other shapes
        ({"num_heads": 2}, "model.num_heads: 1 in the checkpoint, 2 now"),  # the same shapes, other attention
        ({"norm_first": False}, "model.norm_first: True in the checkpoint, False now"),
    ],
)
def test_resuming_with_another_architecture_is_refused_naming_the_settings(
    tmp_path: Path, now: dict[str, object], changed: str
) -> None:
    dm = toy_datamodule(tmp_path, LINES)
    path = resumable(tmp_path, SASRec(n_items=4, hidden_size=16, max_len=10), dm)
    model = SASRec(n_items=4, max_len=10, **{"hidden_size": 16, **now})
    with pytest.raises(ConfigError) as info:
        check_resume(OmegaConf.create({"ckpt_path": str(path)}), model, dm)
    assert str(info.value) == (
        f"ckpt_path: {path} cannot be resumed by this model, whose architecture differs: {changed}; "
        "resume with the checkpoint's settings, or train anew without ckpt_path"
    )


def test_resuming_with_other_optimisation_settings_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = toy_datamodule(tmp_path, LINES)
    path = resumable(tmp_path, SASRec(n_items=4, hidden_size=16, max_len=10), dm)
    # lr given once and defaulted once: compared with the default filled in; dropout's default given explicitly.
    model = SASRec(n_items=4, hidden_size=16, max_len=10, lr=0.01, dropout=0.2)
    with caplog.at_level(logging.WARNING):
        check_resume(OmegaConf.create({"ckpt_path": str(path)}), model, dm)
    assert f"resuming {path} with changed settings: model.lr: 0.001 in the checkpoint, 0.01 now" in caplog.text
    assert "dropout" not in caplog.text


def test_resuming_another_model_or_other_data_is_refused(tmp_path: Path) -> None:
    dm = toy_datamodule(tmp_path / "a", LINES)
    path = resumable(tmp_path, SASRec(n_items=4, hidden_size=16, max_len=10), dm)
    cfg = OmegaConf.create({"ckpt_path": str(path)})
    with pytest.raises(ConfigError, match=r"holds a SASRec and this run builds a BERT4Rec; resume with the model"):
        check_resume(cfg, BERT4Rec(n_items=4, hidden_size=16, max_len=10), dm)
    with pytest.raises(DataError, match=r"is not the one the checkpoint .* resume on the data it was trained with"):
        check_resume(cfg, SASRec(n_items=4, hidden_size=16, max_len=10), toy_datamodule(tmp_path / "b", PERMUTED))


def test_a_new_run_resumes_nothing(tmp_path: Path) -> None:
    dm = toy_datamodule(tmp_path, LINES)
    check_resume(OmegaConf.create({"ckpt_path": None}), SASRec(n_items=4, hidden_size=16, max_len=10), dm)


def run_with_last(runs: Path, name: str, config: dict[str, object], age_s: int = 0) -> Path:
    """A run directory ``runs/name`` holding its saved ``config`` and a ``checkpoints/last.ckpt`` ``age_s`` old."""
    (runs / name / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), runs / name / ".hydra" / "config.yaml")
    last = runs / name / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    torch.save({"state_dict": {}}, last)
    stamp = last.stat().st_mtime - age_s
    os.utime(last, (stamp, stamp))
    return last


def test_last_resumes_the_run_directorys_last_checkpoint(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"seed": 0, "ckpt_path": "last", "paths": {"output_dir": str(tmp_path / "runs" / "now")}})
    with pytest.raises(ConfigError, match=r"^ckpt_path: 'last' resumes the last checkpoint of this run's directory"):
        start_run(cfg)
    assert resume_path(cfg) is None
    last = run_with_last(tmp_path / "runs", "now", {})
    start_run(cfg)  # resumable: Lightning resolves 'last' to this file, and so does resume_path
    assert resume_path(cfg) == last
    with pytest.raises(ConfigError, match=r"^ckpt_path: no checkpoint at"):  # evaluate and predict read files
        start_run(cfg, ckpt_required=True)


def test_the_latest_run_of_the_same_configuration_is_found(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    config = {"seed": 0, "model": {"hidden_size": 16, "lr": "${oc.env:NOPE,0.1}"}, "trainer": {"max_epochs": 2}}
    older = run_with_last(runs, "older", config, age_s=100)
    newer = run_with_last(runs, "newer", {**config, "trainer": {"max_epochs": 5}}, age_s=10)  # max_epochs may differ
    run_with_last(runs, "newest", {**config, "seed": 1})  # another configuration
    (runs / "broken" / ".hydra").mkdir(parents=True)
    (runs / "broken" / ".hydra" / "config.yaml").write_text("a: [\n")
    (runs / "broken" / "checkpoints").mkdir()
    torch.save({"state_dict": {}}, runs / "broken" / "checkpoints" / "last.ckpt")
    now = OmegaConf.create({**config, "ckpt_path": "last", "trainer": {"max_epochs": 9}})
    assert latest_run_like(now, runs) == newer
    assert latest_run_like(now, runs, exclude=runs / "newer") == older
    assert latest_run_like(OmegaConf.create({**config, "seed": 2}), runs) is None
    assert latest_run_like(now, tmp_path / "absent") is None


def test_every_command_loads_checkpoints_with_data_through_one_place() -> None:
    """evaluate, predict, export and ope all get their model and data from ``checkpoint_and_data`` (the checks)."""
    for command in ("evaluate", "predict", "export", "ope"):
        source = (REPO_ROOT / "src" / "recsys_attn" / "jobs" / f"{command}.py").read_text()
        assert "checkpoint_and_data(cfg)" in source, command
        assert "load_module" not in source and "load_from_checkpoint" not in source, command


# -- through the commands, as a user runs them --------------------------------------------------

TINY = (
    "data=interactions",
    "data.source.path=toy/log.csv",
    "trainer.accelerator=cpu",
    "model.max_len=10",
    "model.hidden_size=16",
    "data.batch_size=16",
    "model.bootstrap=0",
)


@dataclass(frozen=True)
class Trained:
    root: Path
    run: Path
    data: Path
    permuted: Path
    other_ids: Path

    @property
    def last(self) -> Path:
        return self.run / "checkpoints" / "last.ckpt"


def write_logs(root: Path) -> tuple[Path, Path, Path]:
    """``toy/log.csv`` under three data folders: a log, its copy with the ids permuted, its ids shifted by 1000."""
    rng = random.Random(0)
    rows = [(f"u{u}", 100 + (start + t) % 40, t) for u in range(80) for start in [rng.randrange(40)] for t in range(12)]
    ids = list(range(100, 140))
    perm = dict(zip(ids, rng.sample(ids, len(ids)), strict=True))
    folders = []
    for name, item in (("data", lambda i: i), ("permuted", perm.__getitem__), ("other_ids", lambda i: i + 1000)):
        (root / name / "toy").mkdir(parents=True)
        text = "".join(f"{u},{item(i)},{t}\n" for u, i, t in rows)
        (root / name / "toy" / "log.csv").write_text("user_id,item_id,timestamp\n" + text)
        folders.append(root / name)
    return folders[0], folders[1], folders[2]


def cli(module: str, trained: Trained, *overrides: str, data: Path | None = None):
    return run_cli(
        module,
        f"paths.cache_dir={trained.root / 'cache'}",
        f"paths.data_dir={data or trained.data}",
        *overrides,
        cwd=trained.root,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A SASRec trained 2 epochs on a synthetic 80-user log into ``runs/first``."""
    root = tmp_path_factory.mktemp("ckpt_data")
    data, permuted, other_ids = write_logs(root)
    result = Trained(root, root / "runs" / "first", data, permuted, other_ids)
    proc = cli("recsys_attn.train", result, f"hydra.run.dir={result.run}", *TINY, "trainer.max_epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return result


def last_line(proc) -> str:
    return proc.stderr.strip().splitlines()[-1]


def test_evaluate_refuses_data_whose_item_ids_mean_other_items(trained: Trained, tmp_path: Path) -> None:
    evaluate = ("recsys_attn.evaluate", trained, f"ckpt_path={trained.last}", "trainer.accelerator=cpu")
    ok = cli(*evaluate, f"hydra.run.dir={tmp_path / 'same'}")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert (tmp_path / "same" / "metrics.json").is_file()
    for data, start in (
        (trained.permuted, "error: data: interactions's log toy/log.csv (log "),
        (trained.other_ids, "error: data: interactions's item ids (map "),
    ):
        proc = cli(*evaluate, f"hydra.run.dir={tmp_path / data.name}", data=data)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert last_line(proc).startswith(start) and f"the checkpoint {trained.last} was trained on" in last_line(proc)
        assert not (tmp_path / data.name).exists()  # nothing written


@pytest.mark.slow
def test_predict_refuses_them_too(trained: Trained, tmp_path: Path) -> None:
    proc = cli(
        "recsys_attn.predict",
        trained,
        f"ckpt_path={trained.last}",
        f"hydra.run.dir={tmp_path / 'p'}",
        "device=cpu",
        data=trained.permuted,
    )
    assert proc.returncode == 1 and last_line(proc).startswith("error: data: interactions's log toy/log.csv")


@pytest.mark.slow
def test_evaluate_loads_a_checkpoint_from_before_identities(trained: Trained, tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(trained.run, run)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    del ckpt[RecModule.DATA_KEY]
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    proc = cli(
        "recsys_attn.evaluate",
        trained,
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={tmp_path / 'ev'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "records no data identity" in proc.stdout + proc.stderr


def test_last_in_a_new_run_directory_says_how_to_resume(trained: Trained) -> None:
    new = trained.root / "runs" / "new"
    proc = cli("recsys_attn.train", trained, f"hydra.run.dir={new}", *TINY, "trainer.max_epochs=3", "ckpt_path=last")
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = last_line(proc)
    assert line.startswith(f"error: ckpt_path: 'last' resumes the last checkpoint of this run's directory, and {new}")
    assert "resume a run with hydra.run.dir=<run> ckpt_path=last, or pass ckpt_path=<run>/checkpoints/last.ckpt" in line
    # max_epochs may grow on a resume: still the same configuration
    assert line.endswith(f"the latest run of this configuration is {trained.run}: ckpt_path={trained.last}")
    assert not new.exists()  # the failed run leaves no empty directory
    other = cli("recsys_attn.train", trained, f"hydra.run.dir={new}", *TINY, "seed=1", "ckpt_path=last")
    assert last_line(other).endswith(f"(no run of this configuration in {new.parent} has one)")


def test_last_in_its_run_directory_resumes(trained: Trained, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    overrides = (f"hydra.run.dir={run}", *TINY, "trainer.max_epochs=3", "ckpt_path=last", "model.lr=0.002")
    proc = cli("recsys_attn.train", trained, *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["train/epochs"] == 3.0  # 2 epochs + 1 resumed
    console = proc.stdout + proc.stderr
    assert f"ckpt_path=last: resuming from {run / 'checkpoints' / 'last.ckpt'}" in console
    assert "with changed settings: model.lr: 0.001 in the checkpoint, 0.002 now" in console


def test_resuming_a_wider_model_fails_in_one_line(trained: Trained, tmp_path: Path) -> None:
    proc = cli(
        "recsys_attn.train",
        trained,
        f"hydra.run.dir={tmp_path / 'wide'}",
        *TINY,
        "model.hidden_size=32",
        f"ckpt_path={trained.last}",
    )
    assert proc.returncode == 1 and "size mismatch" not in proc.stderr, proc.stderr[-3000:]
    assert last_line(proc) == (
        f"error: ckpt_path: {trained.last} cannot be resumed by this model, whose architecture differs: "
        "model.hidden_size: 16 in the checkpoint, 32 now; resume with the checkpoint's settings, or train anew "
        "without ckpt_path"
    )
