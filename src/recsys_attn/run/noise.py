"""Third-party console messages that tell a user of the entry points nothing, each silenced by its exact text.

Everything else Lightning, torch and Hydra say still shows; only these lines go.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

LIGHTNING_TIP = "💡 Tip:"
"""Lightning 2.6 advertises its cloud logger (litlogger) on every ``Trainer`` start."""

RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)
"""Where Lightning's ``rank_zero_info`` messages are logged from (the last of these modules imported wins)."""

PYTREE_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
"""torch 2.13 deprecates ``LeafSpec``, which Lightning 2.6's own ``_pytree`` still builds: not ours to fix."""

EPOCH_SYNC_ADVICE = r"It is recommended to use `self\.log\('(val|test|segments)/"
"""Lightning's advice to ``sync_dist=True`` each epoch-level value of a DDP run: our evaluation values are
computed from every device's users already (the same on each), and averaging them again would not be exact."""

ONNX_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"
TORCHVISION_SKIP = "torchvision is not installed"
"""The ONNX exporter warns four times per export that it skips torchvision's operators, which we never use."""

ONNX_PASS_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx._internal.exporter")
"""The ONNX exporter's graph passes log each step at INFO (~75 lines an export: "Removed 98 unused nodes",
"Replaced initializer 'val_109' ..."): only their warnings and errors are kept."""

LOGGING_INTERVAL = r"The number of training batches \(\d+\) is smaller than the logging interval"
"""Lightning's warning when an epoch is shorter than ``log_every_n_steps``: it says the epoch will have no
logs, but ours are complete (``train/loss_epoch`` every epoch; ``train/loss_step`` every ``log_every_n_steps``
steps counted across epochs)."""


class _DropPrefix(logging.Filter):
    """Drop records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def silence_third_party_noise() -> None:
    """Drop Lightning's litlogger tip, its logging-interval warning and DDP ``sync_dist`` advice on our evaluation
    values, the ONNX exporter's torchvision note and its passes' INFO lines, torch's ``LeafSpec`` warning.

    Idempotent: one filter per logger however often it is called. A level set on an ONNX logger before is kept.
    """
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefix) for f in logger.filters):
            logger.addFilter(_DropPrefix(LIGHTNING_TIP))
    onnx_registry = logging.getLogger(ONNX_REGISTRY_LOGGER)
    if not any(isinstance(f, _DropPrefix) for f in onnx_registry.filters):
        onnx_registry.addFilter(_DropPrefix(TORCHVISION_SKIP))
    for name in ONNX_PASS_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=PYTREE_DEPRECATION, category=FutureWarning)
    warnings.filterwarnings("ignore", message=EPOCH_SYNC_ADVICE)
    warnings.filterwarnings("ignore", message=LOGGING_INTERVAL)


HYDRA_JOB_ERROR = "Error executing job with overrides: "
"""Hydra writes this line to stderr before re-raising a job's exception; a single run's own one-line error
(``error: ...``) says all of it, so the line only doubles the report (a sweep keeps it: it names the job)."""


class _DropHydraJobError:
    """A stand-in for ``sys.stderr`` that passes every write through except Hydra's job-error line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if text.startswith(HYDRA_JOB_ERROR):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...: the real stream's
        return getattr(self._stream, name)


@contextlib.contextmanager
def without_hydra_job_error(argv: Sequence[str]) -> Iterator[None]:
    """Around a single run's ``@hydra.main`` call, drop Hydra's job-error line from stderr (not in a sweep)."""
    if any(arg in ("-m", "--multirun") for arg in argv) or isinstance(sys.stderr, _DropHydraJobError):
        yield
        return
    real = sys.stderr
    sys.stderr = _DropHydraJobError(real)
    try:
        yield
    finally:
        sys.stderr = real
