"""The run directory Hydra makes for each job: the config saved there, and what a failed run leaves in it.

``train`` writes ``<run>/checkpoints/*.ckpt`` and Hydra saves the run's config in ``<run>/.hydra/config.yaml``,
so evaluate and predict read the data a checkpoint was trained on from there and need no ``data=``.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from recsys_attn.errors import RunStopped

log = logging.getLogger(__name__)

DATA_IDENTITY = ("source", "preparation", "split")
"""What makes a checkpoint's data: the file, its preparation and the held-out items. Loader settings (batch
sizes, ``max_eval_users``, ...) belong to the command that evaluates, not to the run that trained."""


def run_config_of(ckpt_path: str | Path) -> tuple[Path, DictConfig] | None:
    """The run directory and saved config of the run that wrote ``ckpt_path``, or None when there is none."""
    for folder in list(Path(ckpt_path).resolve().parents)[:2]:  # <run>/checkpoints/x.ckpt, or <run>/x.ckpt
        saved = folder / ".hydra" / "config.yaml"
        if saved.is_file():
            loaded = OmegaConf.load(saved)
            if isinstance(loaded, DictConfig) and isinstance(loaded.get("data"), DictConfig):
                return folder, loaded
    return None


def use_trained_data(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Give ``cfg.data`` the source, preparation and split of the run that trained ``cfg.ckpt_path``.

    Nothing changes when ``data=<name>`` is among the command-line ``overrides`` (the user chose), or when the
    checkpoint has no run config beside it. ``data.source.*`` (and ``preparation``/``split``) overrides on the
    command line still apply on top of the run's values.
    """
    ckpt_path = None if OmegaConf.is_missing(cfg, "ckpt_path") else cfg.get("ckpt_path")
    if not isinstance(ckpt_path, str) or not ckpt_path:
        return  # start_run reports a missing checkpoint
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    if any(o.key_or_group == "data" for o in parsed):
        return
    found = run_config_of(ckpt_path)
    if found is None:
        log.info("no .hydra/config.yaml beside %s: data=%s (pass data=... to choose)", ckpt_path, cfg.data.source.name)
        return
    run_dir, trained = found
    with open_dict(cfg):
        for key in DATA_IDENTITY:
            if key in trained.data:
                cfg.data[key] = trained.data[key]
    for o in parsed:  # the command line's own data.source.* etc. win over the run's
        parts = o.key_or_group.split(".")
        if len(parts) > 1 and parts[0] == "data" and parts[1] in DATA_IDENTITY and not o.is_delete():
            OmegaConf.update(cfg, o.key_or_group, o.value(), force_add=True)
    log.info("data: %s, as trained in %s (pass data=... to choose another)", cfg.data.source.name, run_dir)


def hydra_files_only(run_dir: Path, log_name: str) -> bool:
    """Whether ``run_dir`` holds nothing but what Hydra writes at the start of a job (``.hydra/``, the log)."""
    for path in run_dir.rglob("*"):
        inner = path.relative_to(run_dir)
        if not path.is_dir() and inner.parts[0] != ".hydra" and str(inner) != log_name:
            return False
    return True


@contextlib.contextmanager
def failed_run_cleanup() -> Iterator[None]:
    """Around an entry point's work under Hydra: a failed run leaves no empty run directory behind.

    When the work raises, a run directory holding only Hydra's own files (the run failed before writing
    anything) is removed; one with outputs is kept, and a line says the run failed and where they are.
    """
    try:
        yield
    except BaseException as exc:
        if HydraConfig.initialized():
            hydra_cfg = HydraConfig.get()
            run_dir = Path(hydra_cfg.runtime.output_dir)
            here = Path.cwd().resolve()
            if not run_dir.is_dir() or run_dir.resolve() in (here, *here.parents):
                raise  # never remove the directory the command runs in
            if hydra_files_only(run_dir, f"{hydra_cfg.job.name}.log"):
                shutil.rmtree(run_dir, ignore_errors=True)
            elif not isinstance(exc, RunStopped):  # a stop says itself where to resume
                log.error("the run failed; what it wrote before failing stays in %s", run_dir)
        raise


def resume_command(saved: Path) -> str:
    """The command that continues this training run from ``saved``, in its own run directory, as a shell line.

    The command line's overrides are kept (but ``ckpt_path`` and ``hydra.run.dir``, which it sets); outside
    Hydra (a run from Python) it names the checkpoint instead.
    """
    if not HydraConfig.initialized():
        return f"train(cfg) with ckpt_path={shlex.quote(str(saved))}"
    hydra_cfg = HydraConfig.get()
    kept = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") not in RESUME_SET]
    run_dir = Path(hydra_cfg.runtime.output_dir)
    words = ["python", "-m", "recsys_attn.train", *kept, f"hydra.run.dir={run_dir}", "ckpt_path=last"]
    return " ".join(shlex.quote(w) for w in words)


RESUME_SET = ("ckpt_path", "hydra.run.dir")
"""What ``resume_command`` sets itself."""
