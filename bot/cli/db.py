"""``amlbot db``: migrate and inspect the database (AMLBOT_DATABASE_URL, or SQLite)."""

from __future__ import annotations

import json
from typing import Any

import typer

app = typer.Typer(help="The database: apply migrations, show what it holds.",
                  no_args_is_help=True)

_TABLES = ("users", "chats", "events", "jobs", "artifacts")


@app.command("upgrade")
def upgrade() -> None:
    """Apply every pending migration (Alembic `upgrade head`)."""
    from sqlalchemy.engine import make_url

    from bot.settings import get_settings
    from bot.storage.migrations import upgrade as run_upgrade
    from bot.storage.store import make_engine

    url = get_settings().resolved_database_url
    engine = make_engine(url)
    try:
        revision = run_upgrade(engine)
    finally:
        engine.dispose()
    typer.echo(f"{make_url(url).render_as_string(hide_password=True)} is at revision {revision}")


@app.command("info")
def info(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Show the database URL (password hidden), its revision and the row count of each table."""
    from bot.settings import get_settings

    values = database_info(get_settings().resolved_database_url)
    if as_json:
        typer.echo(json.dumps(values, default=str))
        return
    width = max(len(k) for k in values)
    for key, value in values.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        typer.echo(f"{key.ljust(width)}  {value}")


def database_info(url: str) -> dict[str, Any]:
    """URL, backend, revisions, row counts and (SQLite) journal mode and size of a database."""
    from pathlib import Path

    from sqlalchemy import inspect, text
    from sqlalchemy.engine import make_url

    from bot.storage.migrations import HEAD_REVISION, current_revision
    from bot.storage.store import make_engine

    parsed = make_url(url)
    values: dict[str, Any] = {
        "url": parsed.render_as_string(hide_password=True),
        "backend": parsed.get_backend_name(),
        "head_revision": HEAD_REVISION,
    }
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            revision = current_revision(connection)
            values["revision"] = revision
            values["up_to_date"] = revision == HEAD_REVISION
            existing = set(inspect(connection).get_table_names())
            values["rows"] = {
                name: connection.execute(text(f"SELECT COUNT(*) FROM {name}")).scalar()
                for name in _TABLES if name in existing
            }
            if values["backend"] == "sqlite":
                values["journal_mode"] = connection.exec_driver_sql(
                    "PRAGMA journal_mode").scalar()
                if parsed.database and Path(parsed.database).is_file():
                    values["size_bytes"] = Path(parsed.database).stat().st_size
    finally:
        engine.dispose()
    return values
