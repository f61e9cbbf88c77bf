"""Alembic revisions of amlbot's schema, one module per revision (oldest: ``0001_initial``)."""
