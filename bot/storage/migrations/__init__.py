"""Schema migrations with Alembic. Revisions live in ``versions/``; :func:`upgrade` applies them.

The Alembic environment (``env.py``) and template (``script.py.mako``) ship inside this package,
so migrating needs no ``alembic.ini``: the :class:`alembic.config.Config` is built in code.
To add a revision after changing ``bot/storage/models.py``: ``upgrade`` a scratch database, run
``alembic.command.revision(alembic_config(url), autogenerate=True, message="...")``, review the
new file in ``versions/`` and bump :data:`HEAD_REVISION`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

#: The newest revision in ``versions/``. Checked against Alembic's own view in the tests, and
#: compared with the database's ``alembic_version`` so an up-to-date start never imports Alembic.
HEAD_REVISION = "0004"
SCRIPT_LOCATION = Path(__file__).resolve().parent
VERSION_TABLE = "alembic_version"
#: Tables of the first revision; a database holding all of them but no version table was made
#: by ``Base.metadata.create_all`` before migrations existed, and is stamped at ``0001``.
_INITIAL_TABLES = ("users", "chats", "events", "jobs", "artifacts")
# pg_advisory_xact_lock key: the bytes of "amlbot" as an integer.
_PG_LOCK_KEY = int.from_bytes(b"amlbot", "big")
#: Seconds a process waits on SQLite for another process's migration to finish.
MIGRATION_LOCK_WAIT = 300


def alembic_config(url: str | None = None) -> Config:
    """An Alembic :class:`Config` pointing at this package (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url is not None:
        # ConfigParser interpolation would choke on '%' in URL-encoded passwords.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in the database, or None when it was never migrated."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def is_up_to_date(engine: Engine) -> bool:
    """Whether the database is at :data:`HEAD_REVISION` (one cheap query, no Alembic)."""
    with engine.connect() as connection:
        return current_revision(connection) == HEAD_REVISION


def upgrade(engine: Engine) -> str:
    """Bring the database at ``engine`` to the newest revision and return it.

    Several processes may call this at once on a fresh database: PostgreSQL serialises them
    with an advisory lock, SQLite with ``BEGIN IMMEDIATE`` (the others wait on the busy
    timeout), and whoever comes second finds the schema up to date. On both backends the whole
    upgrade is one transaction, so a failed migration leaves nothing half-done. On SQLite, a
    lock held past the busy timeout before that (a process creating the file, checkpointing or
    recovering it) is waited out too, for up to :data:`MIGRATION_LOCK_WAIT`.
    """
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + MIGRATION_LOCK_WAIT
    pause = 0.05
    while True:
        try:
            return _upgrade(engine)
        except OperationalError as error:
            if (engine.dialect.name != "sqlite" or "locked" not in str(error.orig)
                    or time.monotonic() + pause > deadline):
                raise
            if pause == 0.05:
                log.info("the database is locked (another process starting?); trying again "
                         "for up to %d s", MIGRATION_LOCK_WAIT)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _upgrade(engine: Engine) -> str:
    if is_up_to_date(engine):
        return HEAD_REVISION
    # Alembic announces each of its plugins at INFO on import; only the migrations matter.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic import command

    with _locked_transaction(engine) as connection:
        revision = current_revision(connection)
        if revision != HEAD_REVISION:
            config = alembic_config()
            config.attributes["connection"] = connection
            if revision is None and _has_initial_tables(connection):
                log.info("stamping a pre-migration database at revision 0001")
                command.stamp(config, "0001")
            log.info("migrating the database from %s to %s", revision or "empty", HEAD_REVISION)
            command.upgrade(config, "head")
            revision = current_revision(connection)
    return revision or HEAD_REVISION


@contextmanager
def _locked_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that no other migrating process can enter at once."""
    with engine.connect() as connection:
        backend = connection.dialect.name
        if backend == "sqlite":
            # pysqlite would only BEGIN before DML; take the write lock up front instead, so
            # the DDL is transactional and a second process waits instead of racing.
            _begin_immediate(connection)
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
            return
        with connection.begin():
            if backend == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _PG_LOCK_KEY})
            yield connection


def _begin_immediate(connection: Connection) -> None:
    """``BEGIN IMMEDIATE``, waiting up to :data:`MIGRATION_LOCK_WAIT` for a process that holds
    the write lock: on a busy machine another process's first migration outlasts the engine's
    usual busy timeout, and the process that came second must wait for it, not fail."""
    from sqlalchemy.exc import OperationalError

    usual = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    connection.exec_driver_sql("PRAGMA busy_timeout=0")
    try:
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as error:
            if "locked" not in str(error.orig):
                raise
        log.info("another process holds the database's write lock (migrating?); waiting up to"
                 " %d s", MIGRATION_LOCK_WAIT)
        connection.exec_driver_sql(f"PRAGMA busy_timeout={MIGRATION_LOCK_WAIT * 1000}")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={int(usual or 0)}")


def _has_initial_tables(connection: Connection) -> bool:
    existing = set(inspect(connection).get_table_names())
    return all(name in existing for name in _INITIAL_TABLES)


def schema_differences(engine: Engine) -> list[object]:
    """What Alembic's autogenerate would change to make the database match the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.storage.schema import metadata

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata()))
