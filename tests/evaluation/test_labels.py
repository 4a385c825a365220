"""Compared runs are named by what differs between them, read from fake run folders' ``.hydra`` files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys_attn.errors import ConfigError
from recsys_attn.evaluation.labels import run_labels

MODELS = {
    "sasrec": {"_target_": "recsys_attn.models.sasrec.SASRec", "hidden_size": 64, "lr": 0.001},
    "bert4rec": {"_target_": "recsys_attn.models.bert4rec.BERT4Rec", "hidden_size": 64, "lr": 0.001},
    "popularity": {"_target_": "recsys_attn.models.popularity.Popularity", "max_len": 200},
}


def fake_run(
    path: Path,
    overrides: list[str],
    model: str = "sasrec",
    experiment: str | None = None,
    hydra_file: bool = True,
    **settings: Any,
) -> Path:
    """A run folder as ``python -m recsys_attn.train <overrides>`` leaves it: the composed config (``model``'s
    settings, ``settings`` on top), the overrides and, with ``hydra_file``, the groups chosen."""
    hydra = path / ".hydra"
    hydra.mkdir(parents=True)
    model_cfg = {
        **MODELS[model],
        **{k.removeprefix("model."): v for k, v in settings.items() if k.startswith("model.")},
    }
    config = {"seed": 42, "model": model_cfg, "paths": {"output_dir": str(path)}}
    config.update({k: v for k, v in settings.items() if not k.startswith("model.")})
    (hydra / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if hydra_file:
        choices = {"experiment": experiment, "model": model, "data": "ml-1m", "hydra/launcher": "basic"}
        (hydra / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    return path


def test_runs_of_two_models_are_named_by_their_model(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "2026-12-03_19-21-34_531185", ["model=sasrec", f"paths.cache_dir={tmp_path}/a"])
    b = fake_run(tmp_path / "2026-12-03_19-25-02_004211", ["model=bert4rec"], model="bert4rec")
    assert run_labels([a, b]) == ["sasrec", "bert4rec"]


def test_a_sweep_over_one_setting_is_named_by_its_values(tmp_path: Path) -> None:
    jobs = [
        fake_run(
            tmp_path / "sweep" / str(i),
            ["trainer.accelerator=cpu", f"model.hidden_size={h}"],
            **{"model.hidden_size": h},
        )
        for i, h in enumerate((64, 128))
    ]
    assert run_labels(jobs) == ["model.hidden_size=64", "model.hidden_size=128"]


def test_a_default_value_counts_against_an_overridden_one(tmp_path: Path) -> None:
    plain = fake_run(tmp_path / "plain", [])  # hidden_size 64 by default
    wide = fake_run(tmp_path / "wide", ["model.hidden_size=128", "seed=42"], **{"model.hidden_size": 128})
    assert run_labels([plain, wide]) == ["model.hidden_size=64", "model.hidden_size=128"]  # seed: the same 42


def test_model_settings_count_only_between_runs_of_the_same_model(tmp_path: Path) -> None:
    runs = [
        fake_run(tmp_path / "s64", ["model.lr=0.001"]),
        fake_run(tmp_path / "s128", ["model.hidden_size=128"], **{"model.hidden_size": 128}),
        fake_run(tmp_path / "b", ["model=bert4rec", "model.lr=0.003"], model="bert4rec", **{"model.lr": 0.003}),
        fake_run(tmp_path / "pop", ["model=popularity", "seed=7"], model="popularity", seed=7),
    ]
    assert run_labels(runs) == [
        "sasrec model.hidden_size=64 seed=42",
        "sasrec model.hidden_size=128 seed=42",
        "bert4rec seed=42",  # its lr differs from sasrec's, but so does the model
        "popularity seed=7",
    ]


def test_experiments_are_named_by_the_experiment(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", ["experiment=sasrec_ml-1m"], experiment="sasrec_ml-1m")
    b = fake_run(tmp_path / "b", ["experiment=bert4rec_ml-1m"], model="bert4rec", experiment="bert4rec_ml-1m")
    c = fake_run(tmp_path / "c", ["experiment=sasrec_ml-1m", "trainer.max_epochs=5"], experiment="sasrec_ml-1m")
    assert run_labels([a, b]) == ["sasrec_ml-1m", "bert4rec_ml-1m"]
    assert run_labels([a, c]) == ["a", "trainer.max_epochs=5"]  # a has no max_epochs in its config: no value


def test_runs_saved_without_hydra_yaml_take_the_model_from_its_class(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", ["seed=0"], hydra_file=False, seed=0)
    b = fake_run(tmp_path / "b", ["seed=0"], model="popularity", hydra_file=False, seed=0)
    assert run_labels([a, b]) == ["sasrec", "popularity"]


def test_equal_settings_fall_back_to_directory_names_and_stay_unique(tmp_path: Path) -> None:
    same = [fake_run(tmp_path / f"sweep{s}" / "0", [f"paths.cache_dir=/c{s}", f"hydra.run.dir=/r{s}"]) for s in "ab"]
    assert run_labels(same) == ["sweepa/0", "sweepb/0"]  # nothing differs but where they ran
    bare = [tmp_path / "x", tmp_path / "y"]
    for path in bare:
        path.mkdir()
    assert run_labels(bare) == ["x", "y"]  # no .hydra at all
    twins = [fake_run(tmp_path / "t1", []), fake_run(tmp_path / "t2", []), fake_run(tmp_path / "t3", [], "bert4rec")]
    assert run_labels(twins) == ["sasrec (t1)", "sasrec (t2)", "bert4rec"]


def test_a_damaged_overrides_file_is_named(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", [])
    (run / ".hydra" / "overrides.yaml").write_text("model: sasrec\n")
    with pytest.raises(ConfigError, match=r"overrides\.yaml: expected a list of overrides"):
        run_labels([run])
