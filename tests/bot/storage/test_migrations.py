"""Alembic migrations: the first revision builds exactly the models' schema, on both backends."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from bot.storage import Store
from bot.storage.migrations import (
    HEAD_REVISION,
    SCRIPT_LOCATION,
    alembic_config,
    schema_differences,
    upgrade,
)
from bot.storage.models import Base
from bot.storage.store import create_all, make_engine


def _revisions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT version_num FROM alembic_version"))
                        .scalars())
    finally:
        engine.dispose()


def test_head_revision_constant_matches_the_scripts() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [HEAD_REVISION]
    assert Path(scripts.dir) == SCRIPT_LOCATION
    assert (SCRIPT_LOCATION / "script.py.mako").is_file()


def test_upgrade_builds_exactly_the_models_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert upgrade(engine) == HEAD_REVISION
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        assert schema_differences(engine) == []
        # Up to date: a second upgrade changes nothing.
        assert upgrade(engine) == HEAD_REVISION
    finally:
        engine.dispose()
    assert _revisions(db_url) == [HEAD_REVISION]


def test_downgrade_to_base_and_back(db_url: str) -> None:
    from alembic import command

    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert not set(Base.metadata.tables) & set(inspect(engine).get_table_names())
        assert upgrade(engine) == HEAD_REVISION
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_a_pre_migration_database_is_stamped_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.sqlite3'}"
    engine = make_engine(url)
    create_all(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO chats (id, channel, first_seen, last_seen) "
                                "VALUES ('c1', 'console', '2025-01-01', '2025-01-01')"))
    assert upgrade(engine) == HEAD_REVISION
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM chats")).scalar() == 1
    engine.dispose()
    assert _revisions(url) == [HEAD_REVISION]


def test_starting_on_an_up_to_date_database_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    Store(url).dispose()
    probe = textwrap.dedent(f"""
        import sys
        from bot.storage import Store
        Store({url!r}).dispose()
        print("alembic" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.timeout(120)
def test_processes_starting_at_once_on_a_fresh_database_all_succeed(db_url: str) -> None:
    """The first-run race: several processes migrate the same empty database concurrently."""
    processes = 4
    # Each child waits for a go file, so that they all hit the empty database together.
    go = Path.cwd() / "go"
    probe = textwrap.dedent(f"""
        import time, pathlib
        from bot.storage import Store
        from bot.storage.models import Event
        go = pathlib.Path({str(go)!r})
        while not go.exists():
            time.sleep(0.005)
        store = Store({db_url!r})
        store.append_events([Event(chat_id="race", user_id="u", channel="test",
                                   type="message", text="hi")])
        store.dispose()
    """)
    children = [subprocess.Popen([sys.executable, "-c", probe], stderr=subprocess.PIPE,
                                 text=True) for _ in range(processes)]
    go.touch()
    errors = [child.communicate(timeout=100)[1] for child in children]
    assert [child.returncode for child in children] == [0] * processes, errors
    assert _revisions(db_url) == [HEAD_REVISION]
    store = Store(db_url)
    try:
        assert store.count_events("race") == processes
        assert schema_differences(store.engine) == []
    finally:
        store.dispose()


@contextmanager
def _held_for_a_while(path: Path, begin: str) -> Iterator[Engine]:
    """An engine on ``path`` with a 0.2 s busy timeout, while another connection holds the
    file's lock (``begin``: the statement that takes it) for 1.5 s."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute(begin)
    release = threading.Timer(1.5, holder.execute, args=("COMMIT",))
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.2})
    release.start()
    try:
        yield engine
    finally:
        release.join()
        holder.close()
        engine.dispose()


def test_a_migration_waits_past_the_busy_timeout_for_another_process_holding_the_lock(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """On a busy machine one process's first migration outlasts the busy timeout of the next
    process to start; that one waits for the lock and finds the schema built, instead of
    failing with 'database is locked'."""
    with _held_for_a_while(tmp_path / "shared.sqlite3", "BEGIN IMMEDIATE") as engine:
        with caplog.at_level("INFO", logger="bot.storage.migrations"):
            assert upgrade(engine) == HEAD_REVISION
        assert "holds the database's write lock" in caplog.text
        assert schema_differences(engine) == []
        with engine.connect() as connection:  # the connection's own busy timeout is back
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200


def test_start_up_waits_out_a_lock_held_past_the_busy_timeout(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before its migration, a starting process reads the schema version; a lock held longer
    than the busy timeout (another process creating, checkpointing or recovering the file) is
    waited out and tried again, not reported as 'database is locked'."""
    path = tmp_path / "shared.sqlite3"
    with _held_for_a_while(path, "BEGIN EXCLUSIVE") as engine:  # no one reads until it ends
        with caplog.at_level("INFO", logger="bot.storage.migrations"):
            assert upgrade(engine) == HEAD_REVISION
        assert "the database is locked" in caplog.text
        assert _revisions(f"sqlite:///{path}") == [HEAD_REVISION]


@pytest.mark.timeout(180)
def test_processes_creating_one_sqlite_file_at_once_never_see_it_locked(tmp_path: Path) -> None:
    """Two processes that open a file that does not exist yet race to switch it to WAL; the
    loser's ``PRAGMA journal_mode=WAL`` fails at once, without the busy timeout. Start-up tries
    again instead of dying: in 60 rounds of 4 processes, 12 died before it did."""
    processes, rounds = 4, 20
    probe = textwrap.dedent(f"""
        import pathlib, sys, time
        from bot.storage import Store
        root = pathlib.Path({str(tmp_path)!r})
        for n in range({rounds}):
            while not (root / f"go{{n}}").exists():
                time.sleep(0.0005)
            Store(f"sqlite:///{{root}}/round{{n}}.sqlite3").dispose()
            (root / f"done{{n}}-{{sys.argv[1]}}").touch()
    """)
    children = [subprocess.Popen([sys.executable, "-c", probe, str(k)], stderr=subprocess.PIPE,
                                 text=True) for k in range(processes)]
    try:
        for n in range(rounds):
            (tmp_path / f"go{n}").touch()
            deadline = time.monotonic() + 60
            while (len(list(tmp_path.glob(f"done{n}-*"))) < processes
                   and all(child.poll() is None for child in children)
                   and time.monotonic() < deadline):
                time.sleep(0.01)
    finally:
        errors = [child.communicate(timeout=60)[1] for child in children]
    assert [child.returncode for child in children] == [0] * processes, errors
    assert all(_revisions(f"sqlite:///{tmp_path}/round{n}.sqlite3") == [HEAD_REVISION]
               for n in range(rounds))
