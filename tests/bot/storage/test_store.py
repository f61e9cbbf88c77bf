"""The event store on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.storage import Event, Store


@pytest.fixture()
def store(db_url: str) -> Iterator[Store]:
    store = Store(db_url)
    yield store
    store.dispose()


def _event(chat: str = "c1", user: str = "u1", kind: str = "message", text: str = "hi",
           **fields: object) -> Event:
    return Event(chat_id=chat, user_id=user, channel="test", type=kind, text=text,
                 **fields)  # type: ignore[arg-type]


def test_append_events_returns_increasing_ids_and_stores_every_row(store: Store) -> None:
    ids = store.append_events([_event(text="question"), _event(kind="reply", text="answer",
                                                              latency_ms=12.5)])
    more = store.append_events([_event(text="again")])
    assert ids[0] < ids[1] < more[0]
    assert store.count_events() == 3
    assert store.count_events("c1") == 3
    assert store.count_events("other") == 0
    reply = store.history("c1")[1]
    assert (reply.type, reply.text, reply.latency_ms) == ("reply", "answer", 12.5)
    assert reply.timestamp is not None


def test_history_is_oldest_first_and_limited_to_the_newest(store: Store) -> None:
    for i in range(10):
        store.append_events([_event(text=f"m{i}"), _event(chat="c2", text=f"other {i}")])
    assert [e.text for e in store.history("c1", limit=3)] == ["m7", "m8", "m9"]
    assert [e.text for e in store.history("c1", limit=100)] == [f"m{i}" for i in range(10)]
    assert all(e.chat_id == "c2" for e in store.history("c2"))


def test_users_and_chats_are_created_then_touched(store: Store) -> None:
    store.append_events([_event(data={"username": "ada"})])
    user, chat = store.get_user("u1"), store.get_chat("c1")
    assert user is not None and chat is not None
    assert user.username == "ada" and chat.channel == "test"
    first_seen, last_seen = user.first_seen, user.last_seen
    time.sleep(0.01)
    # A later message without a username keeps the known one and moves last_seen on.
    store.append_events([_event(text="later"), _event(kind="reply", text="ok")])
    user, chat = store.get_user("u1"), store.get_chat("c1")
    assert user is not None and chat is not None
    assert user.username == "ada"
    assert user.first_seen == first_seen and user.last_seen > last_seen
    assert chat.last_seen > chat.first_seen
    # A reply alone (e.g. a job result) touches its chat but creates no user.
    store.append_events([_event(chat="c9", user="u9", kind="reply", text="done")])
    assert store.get_chat("c9") is not None and store.get_user("u9") is None


def test_json_data_round_trips(store: Store) -> None:
    data = {
        "nlu": {"intent": "programming", "confidence": 0.875,
                "entities": [{"text": "pandas", "label": "LIB", "start": 3, "end": 9}]},
        "tags": ["python", "c++", "ñandú", "日本語", "emoji 🤖"],
        "flags": {"truncated": True, "none": None, "zero": 0, "neg": -1.5e-9},
        "quotes": "'; DROP TABLE events; -- \"<script>\"",
    }
    store.append_events([_event(data=data)])
    (event,) = store.history("c1")
    assert event.data == data


def test_text_is_stored_without_nul_or_lone_surrogates(store: Store) -> None:
    store.append_events([_event(text="a\x00b\ud800c", error="bad\x00", data={"k\x00": "v\x00"})])
    (event,) = store.history("c1")
    assert event.text == "a\ufffdb\ufffdc"
    assert event.error == "bad\ufffd"
    assert event.data == {"k\ufffd": "v\ufffd"}


def test_concurrent_appends_from_8_threads_lose_nothing(store: Store) -> None:
    threads, batches = 8, 25
    errors: list[BaseException] = []
    ids: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        try:
            start.wait()
            for b in range(batches):
                # Every thread also touches one shared user and chat, the contended rows.
                got = store.append_events([
                    _event(chat="shared", user="shared", text=f"t{n} b{b}"),
                    _event(chat=f"c{n}", user=f"u{n}", kind="reply", text=f"t{n} r{b}"),
                ])
                with lock:
                    ids.extend(got)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(ids) == len(set(ids)) == threads * batches * 2
    assert store.count_events() == threads * batches * 2
    assert store.count_events("shared") == threads * batches
    for n in range(threads):
        texts = [e.text for e in store.history(f"c{n}", limit=1000)]
        assert texts == [f"t{n} r{b}" for b in range(batches)]


def test_events_since_filters_by_time(store: Store) -> None:
    store.append_events([_event(text="old", timestamp=datetime(2020, 1, 1, tzinfo=UTC))])
    cut = datetime.now(UTC)
    store.append_events([_event(text="new")])
    assert [e.text for e in store.events_since(cut)] == ["new"]


def test_an_in_memory_database_is_one_database_for_every_thread() -> None:
    store = Store("sqlite://")
    threads = [threading.Thread(target=lambda n=n: [
        store.append_events([_event(text=f"{n}-{i}")]) for i in range(20)
    ]) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert store.count_events("c1") == 80
    store.dispose()
