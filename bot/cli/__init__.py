"""The ``amlbot`` command line: one module per command group."""
