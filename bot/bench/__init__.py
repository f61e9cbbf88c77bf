"""Benchmarks behind ``amlbot bench``: each module measures one thing and writes its doc page."""
