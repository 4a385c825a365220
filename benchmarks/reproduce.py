"""Reproduce a published figure: train an experiment preset to convergence, resumably, and record it.

    make reproduce PRESET=sasrec_ml-1m ARGS='trainer=gpu'
    make reproduce PRESET=sasrec_ml-1m SEED=1                                     # another seed, its own run
    python benchmarks/reproduce.py sasrec_ml-1m seed=1 trainer=gpu                # the same, by hand
    python benchmarks/reproduce.py sasrec_ml-1m trainer=gpu --results-dir /tmp/r  # tables elsewhere

Trains ``experiment=<preset>`` (plus any Hydra overrides) through ``python -m recsys_attn.train`` in one fixed
run directory per preset, settings and seed: ``<paths.log_dir>/reproduce/<run name>/seed<n>/``, where the run
name is the preset followed by the overrides that change what is trained (``run_name``; ``--run-dir`` to choose
another). Overrides that only say where, how or how long it runs (``trainer=gpu``, ``trainer.max_time``,
``trainer.max_epochs``, loggers, paths) are left out of the name, so a run started on one machine may be carried
on with another's settings. Training
goes on until the preset's early stopping on val/ndcg@10 stops it or max_epochs is reached. The best checkpoint
is then tested (``metrics.json``) and one row goes to benchmarks/REPRODUCE.md and benchmarks/reproduce.csv, with
its ``seed`` and its ``overrides`` (every override but the seed). What ``compare`` needs of the run (``metrics.json``,
``per_user.parquet``, ``.hydra/``) is kept in benchmarks/runs/<run name>/seed<n>/, so paired tests over recorded rows
outlive the run directory:
``python -m recsys_attn.compare runs=[benchmarks/runs/<a>/seed42,benchmarks/runs/<b>/seed42]`` compares two rows.

Started again, the same command carries on where the run stopped:
- ``<run dir>/checkpoints/last.ckpt`` exists: it resumes from it (``ckpt_path=``), after a killed job, a
  Ctrl-C, a ``trainer.max_time`` stop, or a first run with a smaller ``trainer.max_epochs``; a killed job
  carries on from its last finished epoch, with the same final metrics as an uninterrupted run. Lightning
  counts ``trainer.max_time`` over the whole run (its timer is saved in the checkpoint): raise it to continue.
  It checks the time after every step, so that stop may cut its last epoch short.
- the run has finished (``metrics.json`` newer than ``last.ckpt``, and early stopping stopped it or it reached
  max_epochs): nothing is trained; the row is recorded again. Delete the run directory to start over.
  (Stopped early but cut off before its test: the best checkpoint is tested, without training.)
- there is no ``last.ckpt``: it starts from scratch.

Wall time is summed over every invocation of the run, in ``<run dir>/reproduce_state.json``: a completed
invocation counts its ``time/fit_s``; one that was killed or failed counts until its last ``last.ckpt`` (the
work after it is redone by the next invocation). s/epoch is that wall time (training and validation) over
the epochs trained.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_train import machine, with_rows
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from recsys_attn.atomic import write_atomic
from recsys_attn.evaluation.outputs import METRICS_FILE, PER_USER_FILE, slim_per_user
from recsys_attn.evaluation.runs import CONFIG_FILE, HYDRA_FILE, OVERRIDES_FILE, read_settings
from recsys_attn.run.entry import CONF_DIR, one_line
from recsys_attn.run.runner import write_json_atomic
from recsys_attn.tracking.progress import format_duration

log = logging.getLogger("reproduce")

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent
MARKDOWN = "REPRODUCE.md"
CSV = "reproduce.csv"
LEDGER = "reproduce_state.json"
ARCHIVE = "runs"
REQUIRED_FILES = (METRICS_FILE, PER_USER_FILE, CONFIG_FILE)
ROW_FILE = "row.json"
ARCHIVED_FILES = (*REQUIRED_FILES, OVERRIDES_FILE, HYDRA_FILE)
"""What ``compare`` reads of a run: kept under ``<results dir>/runs/<run name>/seed<n>/`` beside its row, so a paired
test over recorded rows works after the run directory (checkpoints, logs) is gone; its per-user rows with their ranks
only (``outputs.slim_per_user``: ``compare`` derives the metrics, half the room). One copy per settings and seed:
the latest row's (its ``row.json`` says which); an earlier row of the same settings and seed keeps only its line."""

_PAPER = "Klenitskiy & Vasilev, RecSys 2023"
OTHER_PROTOCOL = "another protocol"
"""The words a PUBLISHED source uses for a figure measured under another protocol or preparation (context only)."""
PUBLISHED: dict[str, tuple[float, str]] = {
    "sasrec_ml-1m": (0.1821, f"{_PAPER}: SASRec, cross-entropy"),
    "sasrec_ml-1m_bce": (0.1341, f"{_PAPER}: SASRec, BCE + 1 negative"),
    "bert4rec_ml-1m": (0.1537, f"{_PAPER}: BERT4Rec"),
    "sasrec_beauty": (0.0327, f"{_PAPER}: SASRec, cross-entropy"),
    "esasrec_beauty-s3rec": (0.0523, "Tikhonovich et al., RecSys 2025 (eSASRec benchmark): eSASRec"),
    "sasrec_beauty-s3rec": (0.0531, "Tikhonovich et al., RecSys 2025 (eSASRec benchmark): SASRec, sampled softmax"),
    "hstu_ml-1m": (0.1720, f"Zhai et al., ICML 2024: HSTU on their ML-1M preparation ({OTHER_PROTOCOL}: context)"),
    "sasrec_ml-1m_lrurec": (0.1902, "Yue et al., WSDM 2024 (LRURec), Table 3: SASRec on this file"),
    "hstu_ml-1m_large": (0.1893, f"Zhai et al., ICML 2024: HSTU-large on their ML-1M preparation ({OTHER_PROTOCOL})"),
}
"""Published test/ndcg@10 of each preset, with its source."""

COLUMNS = (
    "preset",
    "seed",
    "overrides",
    "commit",
    "machine",
    "date",
    "epochs",
    "converged",
    "wall_s",
    "s_per_epoch",
    "val_ndcg@10",
    "test_ndcg@10",
    "test_hr@10",
    "published_ndcg@10",
    "source",
    "test_ndcg@10_lo",
    "test_ndcg@10_hi",
)
"""reproduce.csv's columns; the interval came last (rows recorded before it have none)."""
TITLE = (
    "# Reproductions of published results\n\n"
    "One row per `make reproduce PRESET=<experiment> [SEED=n] [ARGS='<overrides>']` (`benchmarks/reproduce.py`): the\n"
    "preset trained to convergence (early stopping on val/ndcg@10), resumed across interruptions, its best checkpoint\n"
    "tested under docs/PROTOCOL.md. Wall time is summed over every invocation of the run; s/epoch counts training\n"
    "and validation. Published: test ndcg@10 under the same protocol, from the source the row names (Klenitskiy &\n"
    'Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?", RecSys 2023, unless it says\n'
    "otherwise); difference is test minus published. The same rows are in `reproduce.csv`, with each row's seed,\n"
    "overrides and test ndcg@10 interval (README's tables: `make results-table`). A row's overrides are relative to\n"
    "its preset as it is today: when a preset changes, the older rows are re-based "
    "(`sasrec_ml-1m`, 2026-12-06, below).\n"
)
SECTION = "## Runs (`reproduce.py`)"
HEADER = (
    f"\n{SECTION}\n\n"
    "| preset | seed | commit | machine | date | epochs | converged | wall time | s/epoch | val ndcg@10 "
    "| test ndcg@10 | test hr@10 | published ndcg@10 | source | difference |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)
PLACE_ONLY = (
    "trainer=",
    "trainer.accelerator=",
    "trainer.devices=",
    "trainer.num_nodes=",
    "trainer.strategy=",
    "trainer.max_time=",
    "trainer.max_epochs=",
    "trainer.enable_progress_bar=",
    "logger=",
    "logger.",
    "paths.",
    "data.num_workers=",
    "data.root=",
)
"""Overrides that say where, how or how long a run goes, not what it trains: left out of its run name (a run
started with a small ``trainer.max_epochs`` or a time limit is carried on with a larger one)."""


def without_seed(overrides: list[str]) -> list[str]:
    """``overrides`` less the seed's (the row and the run directory hold the seed apart)."""
    return [o for o in overrides if not o.lstrip("+").startswith("seed=")]


def run_name(preset: str, overrides: list[str]) -> str:
    """The directory name of ``preset`` trained with ``overrides`` (seed excluded), one per set of settings.

    ``sasrec_ml-1m``, ``sasrec_ml-1m+features=ml-1m``; the overrides are sorted (their order changes nothing);
    a name that would be long or hold a path separator ends in a digest of the overrides instead.
    """
    what = sorted(o for o in overrides if not o.startswith(PLACE_ONLY))
    if not what:
        return preset
    readable = f"{preset}+{'+'.join(what)}"
    if len(readable) <= 80 and "/" not in readable and " " not in readable:
        return readable
    return f"{preset}+{hashlib.sha1(chr(0).join(what).encode()).hexdigest()[:10]}"


@dataclasses.dataclass
class Invocation:
    """One start of ``reproduce.py`` that trained (or tried to)."""

    started: float
    """``time.time()`` when training was launched."""
    commit: str
    machine: str
    overrides: list[str]
    status: str = "running"
    """running, completed, or stopped (killed, interrupted or failed before writing metrics.json)."""
    fit_s: float = 0.0


def load_ledger(run_dir: Path) -> list[Invocation]:
    path = run_dir / LEDGER
    if not path.is_file():
        return []
    return [Invocation(**entry) for entry in json.loads(path.read_text())["invocations"]]


def save_ledger(run_dir: Path, ledger: list[Invocation]) -> None:
    write_json_atomic(run_dir / LEDGER, {"invocations": [dataclasses.asdict(i) for i in ledger]})


def settle(ledger: list[Invocation], run_dir: Path) -> None:
    """Close invocations still marked running: completed when a later metrics.json exists, else stopped.

    A stopped invocation counts the seconds from its start to its last ``last.ckpt`` (0 when it wrote none).
    """
    metrics, last = run_dir / "metrics.json", run_dir / "checkpoints" / "last.ckpt"
    for inv in ledger:
        if inv.status != "running":
            continue
        if metrics.is_file() and metrics.stat().st_mtime >= inv.started:
            inv.status, inv.fit_s = "completed", float(json.loads(metrics.read_text())["time/fit_s"])
        else:
            saved = last.stat().st_mtime if last.is_file() else inv.started
            inv.status, inv.fit_s = "stopped", max(saved - inv.started, 0.0)


def compose_preset(preset: str, overrides: list[str]) -> Any:
    """The composed ``train`` config of ``experiment=<preset>`` and ``overrides`` (a typo fails here)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[f"experiment={preset}", *overrides])


TRAINED = ("model", "data", "features", "seed")
"""The config sections that say what a run trains (a change of trainer, callbacks or paths may carry a run on)."""


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` of a plain container (lists are values)."""
    if isinstance(node, dict):
        return {k: v for key, child in node.items() for k, v in _leaves(child, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def settings_changed(saved: DictConfig, now: DictConfig) -> list[str]:
    """``key: old -> new`` for each setting of ``TRAINED`` that a run's saved config and today's composition both
    have and that differs (interpolations compared as written): a preset or a default changed since the run began.

    Keys only one side has (a setting added or removed since) are not compared.
    """

    def flat(cfg: DictConfig) -> dict[str, Any]:
        whole = OmegaConf.to_container(cfg, resolve=False)  # interpolations as written, not resolved
        assert isinstance(whole, dict)
        return _leaves({k: whole.get(k) for k in TRAINED})

    old, new = flat(saved), flat(now)
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]


@dataclasses.dataclass(frozen=True)
class LastCheckpoint:
    """What reproduce.py reads from ``last.ckpt``."""

    epochs: int
    """Epochs completed when it was written."""
    stopped_early: bool
    """EarlyStopping had stopped the run (its state in the checkpoint)."""


def read_last(path: Path) -> LastCheckpoint | None:
    """``path`` read as a Lightning checkpoint; None when there is no such file."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise SystemExit(f"error: {path}: not a readable checkpoint ({exc}); delete it to start the run over") from exc
    stopped = any(
        key.split("{")[0].endswith("EarlyStopping") and int(value.get("stopped_epoch", 0)) > 0  # or a subclass
        for key, value in state.get("callbacks", {}).items()
    )
    return LastCheckpoint(int(state["epoch"]) + 1, stopped)


def convergence(stopped_early: bool, epochs: int, max_epochs: float) -> str:
    """``yes`` (early stopping), ``no (max_epochs)`` or ``no (interrupted)`` (a time limit, ...)."""
    if stopped_early:
        return "yes"
    return "no (max_epochs)" if epochs >= max_epochs else "no (interrupted)"


def git_commit() -> str:
    """The short commit of the repository, ``-dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def hydra_quoted(value: str) -> str:
    """``value`` as a quoted Hydra override value (a run name holds ``=``; a path may hold spaces)."""
    return "'" + value.replace("'", "\\'") + "'"


def run_train(preset: str, overrides: list[str], run_dir: Path, resume: Path | None) -> int:
    """``python -m recsys_attn.train experiment=<preset>`` into ``run_dir``; its exit status."""
    cmd = [
        sys.executable,
        "-m",
        "recsys_attn.train",
        f"experiment={preset}",
        f"hydra.run.dir={hydra_quoted(str(run_dir))}",
        "trainer.enable_progress_bar=false",  # the per-epoch progress line is logged instead
        *([f"ckpt_path={hydra_quoted(str(resume))}"] if resume else []),
        *overrides,
    ]
    log.info("running %s", " ".join(cmd[1:]))
    with subprocess.Popen(cmd) as proc:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the child got the same SIGINT and shuts down by itself
            return proc.wait()


def _distinct(values: list[str]) -> str:
    return " + ".join(dict.fromkeys(values))


def make_row(
    preset: str, seed: int, overrides: list[str], metrics: dict[str, float], ledger: list[Invocation], converged: str
) -> dict[str, str]:
    """The reproduce.csv row (``COLUMNS``) of a finished run; ``overrides`` without the seed."""
    epochs = int(metrics["train/epochs"])
    wall_s = sum(inv.fit_s for inv in ledger)
    published, source = PUBLISHED.get(preset, (math.nan, ""))
    return {
        "preset": preset,
        "seed": str(seed),
        "overrides": " ".join(overrides),
        "commit": _distinct([inv.commit for inv in ledger]),
        "machine": _distinct([inv.machine for inv in ledger]),
        "date": dt.date.today().isoformat(),
        "epochs": str(epochs),
        "converged": converged,
        "wall_s": f"{wall_s:.1f}",
        "s_per_epoch": f"{wall_s / epochs:.2f}" if epochs else "",
        "val_ndcg@10": f"{metrics.get('val/ndcg@10', math.nan):.4f}",
        "test_ndcg@10": f"{metrics.get('test/ndcg@10', math.nan):.4f}",
        "test_hr@10": f"{metrics.get('test/hr@10', math.nan):.4f}",
        "published_ndcg@10": "" if math.isnan(published) else f"{published:.4f}",
        "source": source,
        "test_ndcg@10_lo": f"{metrics.get('test/ndcg@10_lo', math.nan):.4f}",
        "test_ndcg@10_hi": f"{metrics.get('test/ndcg@10_hi', math.nan):.4f}",
    }


def markdown_row(row: dict[str, str]) -> str:
    """One REPRODUCE.md row; the overrides, if any, are shown with the preset."""
    preset = f"`{row['preset']}`" + (f" `{row['overrides']}`" if row["overrides"] else "")
    difference = ""
    if row["published_ndcg@10"]:
        test, published = float(row["test_ndcg@10"]), float(row["published_ndcg@10"])
        difference = f"{test - published:+.4f} ({100 * (test / published - 1):+.1f}%)"
    wall = format_duration(float(row["wall_s"]))
    middle = [row[c] for c in ("seed", "commit", "machine", "date", "epochs", "converged")]
    rest = [row[c] for c in COLUMNS[COLUMNS.index("s_per_epoch") : COLUMNS.index("source") + 1]]
    return "| " + " | ".join([preset, *middle, wall, *rest, difference]) + " |\n"


def rewrite_locked(path: Path, edit: Callable[[str], str]) -> None:
    """Replace the text of ``path`` by ``edit(text)`` under an exclusive lock (concurrent runs lose no rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        text = fh.read()
        fh.seek(0)
        fh.truncate()
        fh.write(edit(text))


def record(row: dict[str, str], results_dir: Path) -> None:
    """Add ``row`` to ``results_dir``/REPRODUCE.md and ``results_dir``/reproduce.csv (created when missing)."""
    line = markdown_row(row)
    rewrite_locked(results_dir / MARKDOWN, lambda text: with_rows(text or TITLE, line, SECTION, HEADER))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writerow(row)
    rewrite_locked(results_dir / CSV, lambda text: (text or ",".join(COLUMNS) + "\n") + out.getvalue())


def archive(run_dir: Path, dest: Path, row: dict[str, str]) -> Path:
    """Copy the run's ``ARCHIVED_FILES`` and its ``row`` (``row.json``: which row, commit and machine they back) to
    ``dest``, replacing an older copy of the same settings and seed only once the new one is complete.

    Raises:
        SystemExit: The run lacks a file ``compare`` needs (``REQUIRED_FILES``): nothing is kept or recorded.
    """
    missing = [name for name in REQUIRED_FILES if not (run_dir / name).is_file()]
    if missing:
        raise SystemExit(f"error: {run_dir} has no {', '.join(missing)}: compare could not read its copy")

    def copy(tmp: Path) -> None:
        for name in ARCHIVED_FILES:
            if (run_dir / name).is_file():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                if name == PER_USER_FILE:  # ranks only (compare derives the metrics): half the room in the repo
                    slim_per_user(run_dir / name, tmp / name)
                else:
                    shutil.copy2(run_dir / name, tmp / name)
        (tmp / ROW_FILE).write_text(json.dumps(row, indent=1) + "\n")

    new, old = dest.with_name(dest.name + ".new"), dest.with_name(dest.name + ".old")
    for leftover in (new, old):  # of a copy killed half-way: never a kept copy
        if leftover.exists():
            shutil.rmtree(leftover)
    write_atomic(new, copy, folder=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(new, dest)
    if old.exists():
        shutil.rmtree(old)
    return dest


def reproduce(preset: str, overrides: list[str], run_dir: Path | None, results_dir: Path) -> dict[str, str] | None:
    """Train (or resume) ``preset`` in its run directory, then record its row; None when training stopped."""
    for option in overrides:
        if option.startswith(("hydra.run.dir=", "ckpt_path=")):
            key = option.split("=")[0]
            raise SystemExit(f"error: {key} is set by reproduce.py: it resumes from --run-dir's own last.ckpt")
    cfg = compose_preset(preset, overrides)
    settings = without_seed(overrides)
    run_dir = (
        run_dir or Path(cfg.paths.log_dir) / "reproduce" / run_name(preset, settings) / f"seed{cfg.seed}"
    ).resolve()
    max_epochs = cfg.trainer.max_epochs if cfg.trainer.max_epochs not in (None, -1) else math.inf
    metrics_path, last_path = run_dir / METRICS_FILE, run_dir / "checkpoints" / "last.ckpt"
    last = read_last(last_path)
    saved = read_settings(run_dir).config if last is not None or metrics_path.is_file() else None
    changed = settings_changed(saved, cfg) if saved is not None else []
    if changed:
        raise SystemExit(
            f"error: {run_dir} was trained with other settings than experiment={preset} "
            f"{' '.join(overrides)} gives now ({'; '.join(changed)}): carrying it on or recording it again would "
            "label its row with today's settings. Move it aside (or pass --run-dir) to train these settings, "
            "or give the old values as overrides to carry it on."
        )
    ledger = load_ledger(run_dir) if last else []  # no checkpoint: the run starts over
    settle(ledger, run_dir)

    tested = last is not None and metrics_path.is_file() and metrics_path.stat().st_mtime >= last_path.stat().st_mtime
    epochs = int(json.loads(metrics_path.read_text())["train/epochs"]) if tested else 0
    if last is not None and tested and (last.stopped_early or epochs >= max_epochs):
        log.info("%s has finished (%d epochs): recording it again without training", run_dir, epochs)
    else:
        if ledger and ledger[-1].overrides != overrides:
            log.info("overrides changed since the last invocation: %s -> %s", ledger[-1].overrides, overrides)
        # stopped early but cut off before its test: resume without training, to test the best checkpoint
        stop = [f"trainer.max_epochs={last.epochs}"] if last and last.stopped_early else []
        log.info("%s %s", "resuming from" if last else "starting", last_path if last else run_dir)
        ledger.append(Invocation(time.time(), git_commit(), machine(), list(overrides)))
        save_ledger(run_dir, ledger)
        status = run_train(preset, [*overrides, *stop], run_dir, last_path if last else None)
        settle(ledger, run_dir)
        save_ledger(run_dir, ledger)
        if status != 0 or ledger[-1].status != "completed":
            log.error("training stopped (exit status %d); run the same command again to resume", status)
            return None
        last = read_last(last_path)
    metrics = json.loads(metrics_path.read_text())
    stopped_early = last is not None and last.stopped_early
    converged = convergence(stopped_early, int(metrics["train/epochs"]), max_epochs)
    row = make_row(preset, int(cfg.seed), settings, metrics, ledger, converged)
    kept = archive(run_dir, results_dir / ARCHIVE / run_name(preset, settings) / f"seed{cfg.seed}", row)
    record(row, results_dir)  # after its evidence is kept: a failed copy leaves no row without it
    log.info("metrics, per-user rows and settings kept in %s (compare runs=[...] reads them)", kept)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", help="an experiment file of conf/experiment/, e.g. sasrec_ml-1m")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for recsys_attn.train, e.g. trainer=gpu")
    parser.add_argument(
        "--run-dir", type=Path, help="run directory (default <paths.log_dir>/reproduce/<run name>/seed<n>)"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help=f"where {MARKDOWN} and {CSV} are (default benchmarks/)"
    )
    args = parser.parse_intermixed_args(argv)  # overrides may come after the options too
    logging.basicConfig(level=logging.INFO, format="[reproduce] %(message)s")
    try:
        row = reproduce(args.preset, args.overrides, args.run_dir, args.results_dir)
    except HydraException as exc:
        sys.exit(f"error: {one_line(exc)}")
    if row is None:
        return 1
    print(markdown_row(row), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
