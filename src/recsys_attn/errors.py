"""User-facing errors: entry points print them as one line (``error: ...``) instead of a traceback."""


class RecsysError(ValueError):
    """Something the user can fix; the message names the file, line or key at fault."""


class ConfigError(RecsysError):
    """A configuration value or key is wrong; the message names the key."""


class TrainingError(RecsysError):
    """Training or a checkpoint went wrong in a way the settings explain (e.g. a diverged model)."""


class WriteError(RecsysError, OSError):
    """A file or folder could not be written (read-only, no permission, disk full); the message names it.

    Also an ``OSError``, so code that handles a failed write as one (``except OSError``) still does.
    """


class RunStopped(RecsysError):
    """A run stopped from outside (SIGTERM, Ctrl-C) before it finished; the message says how to resume.

    Attributes:
        exit_code: the status the command exits with: 128 + the signal's number, as a shell reports a
            process killed by it (143 for SIGTERM, 130 for Ctrl-C), so a scheduler or ``&&`` sees a failure.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
