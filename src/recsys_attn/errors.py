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
