"""Storage fixtures: one fresh database per test, on SQLite and (when configured) PostgreSQL.

The PostgreSQL cases need ``AMLBOT_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts a server and
prints one). Each test gets its own database on that server, dropped afterwards, so reruns and
parallel runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ENV = "AMLBOT_TEST_POSTGRES_URL"


def postgres_admin_url() -> str | None:
    """The server URL the PostgreSQL cases run against, or None to skip them."""
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A URL of a new, empty PostgreSQL database (dropped after the test)."""
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip(f"{POSTGRES_ENV} is not set (run .ci/postgres.sh)")
    name = f"amlbot_t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a new, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))
