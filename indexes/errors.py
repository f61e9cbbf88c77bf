"""The errors of the index layer: bad input to, or a broken state of, an index; and the
case of it, a saved index whose files are damaged."""


class ThreadIndexError(ValueError):
    """Bad input to, or a broken state of, a thread index (the message says which)."""


class DamagedIndexError(ThreadIndexError):
    """A saved index's files are not what was written (missing, truncated or corrupt)."""
