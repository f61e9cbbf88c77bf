"""The one error the index layer raises: bad input to, or a broken state of, an index."""


class ThreadIndexError(ValueError):
    """Bad input to, or a broken state of, a thread index (the message says which)."""
