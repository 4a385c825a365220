"""Every config file and group option composes, and builds its objects."""

import re
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, InstantiationException
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, open_dict

from recsys_attn.data.samples import SampleSpec
from recsys_attn.errors import ConfigError
from recsys_attn.run import entry as _entry  # noqa: F401  (registers resolvers)
from recsys_attn.run.runner import check_model_keys, instantiate_group
from tests.conftest import CONF_DIR, REPO_ROOT, run_cli

GROUPS = ["model", "data", "trainer", "logger", "callbacks", "experiment", "debug", "hparams_search"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def compose_train(*overrides: str, tmp: Path | None = None) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp or "/tmp/rsa-compose")
    return cfg


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
@pytest.mark.slow
def test_every_option_composes_and_instantiates(group: str, option: str, tmp_path: Path) -> None:
    extra = ["data.source.path=log.csv"] if (group, option) == ("data", "interactions") else []
    if not torch.cuda.is_available():
        extra.append("trainer.accelerator=cpu")  # trainer=gpu composes; building it needs a GPU
    cfg = compose_train(f"{group}={option}", *extra, tmp=tmp_path)
    check_model_keys(cfg.model)
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, n_items=20, _convert_="all")
    assert model.n_items == 20
    assert model.sample_spec.max_len == cfg.model.max_len  # what the datamodule will cut, from the model alone
    dm.connect(model.sample_spec)
    if group != "hparams_search":  # the sweeper builds trainers per trial
        trainer = hydra.utils.instantiate(cfg.trainer, callbacks=instantiate_group(cfg.callbacks), logger=False)
        assert trainer is not None
    for lg in cfg.logger or {}:  # Lightning's or our own (tracking/), each a Lightning logger
        assert isinstance(hydra.utils.instantiate(cfg.logger[lg]), Logger), lg


@pytest.mark.parametrize(
    ("model", "kind", "mask_prob"), [("sasrec", "next", 0.0), ("gru4rec", "next", 0.0), ("bert4rec", "cloze", 0.3)]
)
def test_the_model_says_which_samples_it_trains_on(model: str, kind: str, mask_prob: float) -> None:
    cfg = compose_train(f"model={model}", "model.max_len=50", *(["model.mask_prob=0.3"] if mask_prob else []))
    built = hydra.utils.instantiate(cfg.model, n_items=20, _convert_="all")
    assert built.sample_spec == SampleSpec(kind, 50, mask_prob)


@pytest.mark.parametrize("key", ["sample_kind", "max_len", "mask_prob"])
def test_the_old_data_keys_for_the_samples_fail_naming_the_key(key: str, tmp_path: Path) -> None:
    """``model=bert4rec data.sample_kind=next`` used to train BERT4Rec on next-item samples silently."""
    value = "next" if key == "sample_kind" else "3"
    with pytest.raises(ConfigCompositionException, match=rf"Could not override 'data\.{key}'"):
        compose_train("model=bert4rec", f"data.{key}={value}", tmp=tmp_path)
    cfg = compose_train("model=bert4rec", f"+data.{key}={value}", tmp=tmp_path)  # forced in: refused by the data
    with pytest.raises(InstantiationException) as caught:
        hydra.utils.instantiate(cfg.data, _convert_="all")
    assert isinstance(caught.value.__cause__, ConfigError)
    assert str(caught.value.__cause__).startswith(f"data.{key}: not a data setting any more; ")


def test_bert4rec_on_next_item_samples_cannot_train(tmp_path: Path) -> None:
    proc = run_cli("recsys_attn.train", "model=bert4rec", "data.sample_kind=next", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Could not override 'data.sample_kind'"), proc.stderr


def test_prepare_config_composes() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("prepare", overrides=["data=beauty"])
    assert cfg.data.source.name == "beauty"


def test_evaluate_config_composes_with_every_trainer() -> None:
    for option in options("trainer"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("evaluate", overrides=[f"trainer={option}", "ckpt_path=x.ckpt", "eval.filter_seen=false"])
        assert cfg.ckpt_path == "x.ckpt" and cfg.eval.filter_seen is False
        assert cfg.trainer._target_.endswith("Trainer")


def test_each_yaml_opens_with_its_command() -> None:
    for path in CONF_DIR.rglob("*.yaml"):
        if "local" in path.parts:
            continue
        head = path.read_text().splitlines()[:4]
        assert any("python -m recsys_attn" in line for line in head if line.startswith("#")), path


@pytest.mark.slow
def test_typo_fails_at_compose_time_naming_the_key(tmp_path: Path) -> None:
    proc = run_cli("recsys_attn.train", "model.hidden_sizee=3", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: Could not override 'model.hidden_sizee'")


@pytest.mark.parametrize("script", ["recsys-train", "recsys-evaluate", "recsys-prepare", "recsys-predict"])
@pytest.mark.slow
def test_console_scripts_find_the_configs_from_any_directory(script: str, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name(script)
    proc = subprocess.run(
        [str(exe), "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ml-1m" in proc.stdout


def test_unknown_key_in_a_config_file_fails_before_training() -> None:
    cfg = compose_train("+model.hiden_size=3")
    with pytest.raises(ValueError, match=r"model\.hiden_size: unknown key"):
        check_model_keys(cfg.model)


def test_repo_root_is_the_project() -> None:
    assert (REPO_ROOT / "pyproject.toml").is_file()


def test_model_files_override_trainer_and_callback_defaults(tmp_path: Path) -> None:
    cfg = compose_train("model=popularity", tmp=tmp_path)
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 1  # not the 200 epochs of trainer/
    assert compose_train("model=popularity", "trainer=cpu", tmp=tmp_path).trainer.max_epochs == 1
    assert compose_train("model=popularity", "trainer.max_epochs=3", tmp=tmp_path).trainer.max_epochs == 3
    assert compose_train("model=sasrec", tmp=tmp_path).trainer.max_epochs == 200


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_preset_cites_the_recipe_it_follows(experiment: str) -> None:
    head = (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text().split("defaults:")[0]
    assert "github.com/" in head and "Table" in head, experiment


def test_presets_match_the_reproduction_recipes(tmp_path: Path) -> None:
    bert = compose_train("experiment=bert4rec_ml-1m", tmp=tmp_path)
    assert (bert.model.norm_first, bert.model.weight_decay, bert.model.schedule, bert.model.warmup_steps) == (
        False,
        0.0,
        "constant",
        0,
    )
    assert bert.data.cloze_last_item_samples is False and bert.callbacks.early_stopping.smoothing == 0.8
    assert (bert.model.block_layout, bert.model.positions, bert.data.length_grouping) == (
        "bert_reference",
        "from_start",
        1,
    )
    bert_s3 = compose_train("experiment=bert4rec_beauty-s3rec", tmp=tmp_path)
    same = ("hidden_size", "num_blocks", "num_heads", "mask_prob", "block_layout", "positions", "lr", "dropout")
    assert {k: bert_s3.model[k] for k in same} == {k: bert.model[k] for k in same}
    assert (bert_s3.data.source.name, bert_s3.model.max_len, bert_s3.callbacks.early_stopping.patience) == (
        "beauty-s3rec",
        50,
        20,
    )
    hstu = compose_train("experiment=hstu_ml-1m", tmp=tmp_path)
    assert (hstu.data.source.name, hstu.model.time_buckets, hstu.model.similarity, hstu.model.temperature) == (
        "ml-1m-raw",
        128,
        "cosine",
        0.05,
    )
    assert (hstu.model.hidden_size, hstu.model.num_negatives, list(hstu.model.betas)) == (50, 128, [0.9, 0.98])
    large = compose_train("experiment=hstu_ml-1m_large", tmp=tmp_path)
    # HSTU-large: the same recipe with 8 blocks of 2 heads (25 dimensions each)
    assert (large.model.num_blocks, large.model.num_heads) == (8, 2)
    different = {k for k in hstu.model if hstu.model[k] != large.model[k]}
    assert different == {"num_blocks", "num_heads"} and large.data == hstu.data, different
    for name in ("sasrec_ml-1m", "sasrec_ml-1m_bce", "sasrec_beauty", "sasrec_beauty-s3rec"):
        m = compose_train(f"experiment={name}", tmp=tmp_path).model
        assert (m.hidden_size, m.dropout, list(m.betas), m.lr) == (64, 0.1, [0.9, 0.999], 1e-3), name
        cfg = compose_train(f"experiment={name}", tmp=tmp_path)
        # sasrec_ml-1m keeps only the reference's block: its batches and positions were isolated and did not cost;
        # sasrec_beauty-s3rec its block and positions: grouping was isolated there and did not cost either
        forms = {
            "sasrec_ml-1m": ("from_end", "sasrec_reference", 8),
            "sasrec_beauty-s3rec": ("from_start", "sasrec_reference", 8),
        }
        form = forms.get(name, ("from_start", "sasrec_reference", 1))
        assert (m.positions, m.block_layout, cfg.data.length_grouping) == form, name
    gru = compose_train("experiment=gru4rec_ml-1m", tmp=tmp_path)
    assert gru.model._target_.endswith("GRU4Rec") and gru.data.source.name == "ml-1m"
    m = gru.model
    assert (m.hidden_size, m.num_layers, m.dropout, m.max_len, m.loss) == (64, 1, 0.0, 200, "ce")
    assert (list(m.betas), m.lr, gru.data.batch_size, gru.callbacks.early_stopping.patience) == (
        [0.9, 0.999],
        1e-3,
        128,
        10,
    )


def hydra_dirs(entry: str) -> tuple[str, str]:
    """The run and sweep directories a run of ``entry`` would get if started now."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(entry, return_hydra_config=True)
    return str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)


@pytest.mark.parametrize("entry", ["train", "evaluate", "predict", "prepare"])
def test_two_runs_started_in_the_same_second_get_their_own_directories(entry: str) -> None:
    first, second = hydra_dirs(entry), hydra_dirs(entry)  # milliseconds apart
    for a, b in zip(first, second, strict=True):
        assert a != b and a < b  # distinct, and names sort in start order
        assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}", Path(a).name), a
    assert Path(first[0]).parent == Path.cwd() / "logs" / entry / "runs"


@pytest.mark.slow
def test_a_sweep_keeps_one_directory_for_all_its_jobs(tmp_path: Path, real_data_dir: Path) -> None:
    proc = run_cli(
        "recsys_attn.prepare", "-m", "data=ml-100k,ml-100k", f"paths.cache_dir={tmp_path / 'cache'}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sweep,) = (tmp_path / "logs" / "prepare" / "multiruns").iterdir()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert (sweep / "summary.csv").is_file()  # the end-of-sweep callback found the same directory


@pytest.mark.parametrize("name", options("model"))
def test_model_yaml_lists_every_setting_with_its_dataclass_default(name: str) -> None:
    """The settings dataclass is the one source of defaults; ``conf/model/<name>.yaml`` is its checked copy."""
    import dataclasses

    from omegaconf import OmegaConf

    node = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")["model"]
    settings_class = hydra.utils.get_class(node["_target_"]).settings_class
    defaults = {
        f.name: f.default_factory() if callable(f.default_factory) else f.default
        for f in dataclasses.fields(settings_class)
    }
    listed = {str(k): v for k, v in OmegaConf.to_container(node).items() if k != "_target_"}  # type: ignore[union-attr]
    assert sorted(listed) == sorted(defaults), f"conf/model/{name}.yaml must list every {settings_class.__name__} field"
    drift = {k: (listed[k], defaults[k]) for k in defaults if listed[k] != defaults[k]}
    assert not drift, f"conf/model/{name}.yaml differs from {settings_class.__name__}'s defaults (yaml, code): {drift}"


def test_the_lrurec_preset_is_sasrec_ml1m_with_the_overrides_its_rows_were_recorded_under(tmp_path: Path) -> None:
    """`sasrec_ml-1m_lrurec` composes exactly what `sasrec_ml-1m` plus LRURec's trainer as overrides trained, so the
    rows recorded under those overrides (reproduce.csv) are this preset's runs."""
    overrides = [
        "model.positions=rotary",
        "model.dropout=0.2",
        "model.weight_decay=0.01",
        "data.window_stride=200",
        "trainer.gradient_clip_val=5",
        "callbacks.early_stopping.patience=30",
    ]
    preset = compose_train("experiment=sasrec_ml-1m_lrurec", tmp=tmp_path)
    spelled = compose_train("experiment=sasrec_ml-1m", *overrides, tmp=tmp_path)
    base = compose_train("experiment=sasrec_ml-1m", tmp=tmp_path)
    for group in ("model", "data", "trainer", "callbacks", "features"):
        assert preset[group] == spelled[group], group
    assert (preset.model.positions, preset.data.window_stride, preset.trainer.gradient_clip_val) == ("rotary", 200, 5)
    assert preset.model != base.model and preset.data != base.data  # it is not the plain preset
