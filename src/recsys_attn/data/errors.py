"""The data error (a user-facing ``RecsysError``) and how input is quoted in error messages."""

from recsys_attn.errors import RecsysError

MAX_QUOTED = 100
"""Characters of input (a line, a value, a library's message) quoted in an error at most."""


class DataError(RecsysError):
    """A data file or data setting is unusable; the message names the file, line or key at fault."""


def shorten(text: object, limit: int = MAX_QUOTED) -> str:
    """``text`` made fit to quote in a one-line error: line ends escaped, cut to ``limit`` characters.

    An exception stands for the first line of its message (libraries append multi-line hints).
    """
    s = str(text).strip().split("\n", 1)[0] if isinstance(text, BaseException) else str(text)
    s = s.replace("\r", "\\r").replace("\n", "\\n")
    return s if len(s) <= limit else s[:limit] + "..."
