"""Alembic environment: runs the revisions on the connection ``upgrade`` hands over.

Called from :func:`bot.storage.migrations.upgrade` (which passes an open connection in
``config.attributes["connection"]``) or from the ``alembic`` command line with
``-x url=...`` / ``sqlalchemy.url`` for writing new revisions with ``--autogenerate``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from bot.storage.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata(),
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        from bot.settings import get_settings

        url = get_settings().resolved_database_url
    return url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        engine = create_engine(_url())
        try:
            with engine.begin() as connection:
                _run(connection)
        finally:
            engine.dispose()
