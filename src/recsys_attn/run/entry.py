"""The Hydra side of every command: the ``conf/`` directory, its resolvers, and one-line user errors.

``run_entry_point`` wraps a ``@hydra.main`` function so that an error a user can fix (a setting, a data file, a
file system that refuses a write) exits with one line naming the key or path, and a stopped run says how to resume.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from recsys_attn.errors import RecsysError, RunStopped
from recsys_attn.run.noise import silence_third_party_noise, without_hydra_job_error


def register_resolvers() -> None:
    """Register the custom resolvers used by ``conf/`` (idempotent)."""
    if not OmegaConf.has_resolver("rsa_cwd"):
        OmegaConf.register_new_resolver("rsa_cwd", os.getcwd)


register_resolvers()


CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")
"""The repository's ``conf/`` (an absolute path, so console scripts find it from any directory)."""


def one_line(exc: BaseException) -> str:
    """An error message on one line, without OmegaConf's ``full_key``/``object_type`` trailer."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(("full_key:", "object_type=")))


def run_entry_point(hydra_main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; errors a user can fix exit with one line naming the key or path.

    Hydra would print a multi-line report; with ``HYDRA_FULL_ERROR`` set it raises instead, so the
    errors a user can fix become one line here (configuration and data errors, and a file system that
    refuses a write: read-only, no permission, disk full), while bugs keep their full traceback.
    """
    silence_third_party_noise()
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        with without_hydra_job_error(sys.argv):
            hydra_main()
    except RunStopped as exc:  # not an error: stopped from outside, with the way to resume
        print(f"stopped: {one_line(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except MissingMandatoryValue as exc:  # a ``???`` left unset, e.g. data.source.path of data=interactions
        key = re.sub(r"^data\.features\.", "features.", exc.full_key or "")  # data.features is ${features}
        sys.exit(f"error: {key}: required; set it on the command line ({key}=...)")
    except Exception as exc:
        message = _user_error(exc)
        if message is None and not isinstance(exc, HydraException):
            raise
        sys.exit(f"error: {one_line(exc) if message is None else message}")


FILE_SYSTEM_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
"""What a user fixes in the file system, not in the code: permissions, a read-only mount, a full disk."""


def _user_error(exc: BaseException) -> str | None:
    """The one-line message of the user's error behind ``exc`` (and Hydra's wrappers), or None for a bug."""
    chain = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__
    for cause in chain:
        if isinstance(cause, RecsysError):
            return one_line(cause)
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno in FILE_SYSTEM_ERRNOS:
            where = cause.filename or _run_dir()
            return f"{where}: {cause.strerror}" if where else str(cause.strerror)
    return None


def _run_dir() -> str:
    """The run directory, where most files of a run are written (named when an OS error names no file)."""
    return str(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else ""
