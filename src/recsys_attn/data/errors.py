"""The one exception type raised for problems with user data or data configuration."""


class DataError(ValueError):
    """A data file or data setting is unusable; the message names the file, line or key at fault."""
