"""Test-only helpers: a fake Bot API server and skills the end-to-end tests load."""
