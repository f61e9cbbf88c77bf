"""The Telegram inbox and outbox (``bot/storage/delivery.py``) on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.storage.delivery import DeliveryStore, OutItem, update_chat_id
from bot.storage.models import Event
from bot.storage.store import Store
from bot.storage.telegram_models import OutboxMessage, TelegramUpdate


@pytest.fixture()
def store(db_url: str) -> Iterator[Store]:
    store = Store(db_url)
    yield store
    store.dispose()


def _update(update_id: int, chat: int, text: str = "hi") -> dict[str, Any]:
    return {"update_id": update_id,
            "message": {"message_id": update_id, "date": 0, "text": text,
                        "chat": {"id": chat, "type": "private"}}}


def _events(chat: int, replies: int) -> list[Event]:
    events = [Event(chat_id=str(chat), user_id=str(chat), channel="telegram", type="message",
                    text="hi")]
    events += [Event(chat_id=str(chat), user_id=str(chat), channel="telegram", type="reply",
                     text=f"reply {n}") for n in range(replies)]
    return events


def _events_of(store: Store, kind: str) -> list[Event]:
    with store.session() as session:
        return list(session.scalars(select(Event).where(Event.type == kind)
                                    .order_by(Event.id)).all())


def test_an_update_is_stored_once_and_the_offset_follows_it(store: Store) -> None:
    inbox = DeliveryStore(store, "a")
    assert inbox.next_offset() is None
    fresh = inbox.receive([_update(7, 100), _update(8, 101)])
    assert [(u.update_id, u.chat_id) for u in fresh] == [(7, 100), (8, 101)]
    # Telegram sends one again (to this process or another): it is not new.
    assert DeliveryStore(store, "b").receive([_update(8, 101), _update(9, 100)])[0].update_id == 9
    assert inbox.next_offset() == 10
    assert [u.update_id for u in inbox.pending_updates()] == [7, 8]


def test_answering_stores_replies_and_events_in_one_go_and_only_once(store: Store) -> None:
    inbox = DeliveryStore(store, "a")
    inbox.receive([_update(1, 100)])
    items = [OutItem("text", "part one", reply=0), OutItem("text", "part two", reply=0),
             OutItem("photo", "a plot", filename="p.png", data=b"\x89PNG", reply=1)]
    assert inbox.finish_update(1, 100, items, _events(100, 2)) is True
    assert inbox.finish_update(1, 100, items, _events(100, 2)) is False  # answered already
    assert inbox.pending_updates() == []
    replies = _events_of(store, "reply")
    assert len(replies) == 2 and len(_events_of(store, "message")) == 1
    queued = inbox.next_messages(100)
    assert [m.text for m in queued] == ["part one", "part two", "a plot"]
    assert queued[2].data == b"\x89PNG"
    with store.session() as session:
        linked = session.scalars(select(OutboxMessage.event_id).order_by(OutboxMessage.id)).all()
    assert linked == [replies[0].id, replies[0].id, replies[1].id]


def test_an_adopted_update_is_answered_by_its_new_owner_only(store: Store) -> None:
    first, second = DeliveryStore(store, "first"), DeliveryStore(store, "second")
    first.receive([_update(1, 100)])
    assert second.owners_with_work() == {"first"}
    adopted = second.adopt(["first"])
    assert (adopted.updates, adopted.messages, adopted.uncertain) == (1, 0, [])
    assert first.finish_update(1, 100, [OutItem("text", "late")], _events(100, 1)) is False
    assert second.finish_update(1, 100, [OutItem("text", "mine")], _events(100, 1)) is True
    assert [m.text for m in second.next_messages(100)] == ["mine"]
    assert len(_events_of(store, "message")) == 1  # the loser stored nothing


def test_one_of_two_racing_processes_answers(store: Store) -> None:
    processes = [DeliveryStore(store, name) for name in ("a", "b")]
    processes[0].receive([_update(1, 100)])
    processes[1].adopt(["a"])  # b took a for dead while a was still answering
    results: list[bool] = []

    def answer(process: DeliveryStore) -> None:
        results.append(process.finish_update(1, 100, [OutItem("text", process.owner)],
                                             _events(100, 1)))

    threads = [threading.Thread(target=answer, args=(p,)) for p in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    with store.session() as session:
        assert session.scalars(select(OutboxMessage.text)).all() == ["b"]


def test_a_message_goes_pending_sending_sent_and_its_delivery_is_logged(store: Store) -> None:
    outbox = DeliveryStore(store, "a")
    first, second = outbox.enqueue(100, [OutItem("text", "one"), OutItem("text", "two")])
    outbox.enqueue(200, [OutItem("text", "elsewhere")])
    assert sorted(outbox.pending_chats()) == [100, 200]
    assert outbox.mark_sending(first) is True
    assert outbox.mark_sending(first) is False  # a try is already in flight
    assert [m.id for m in outbox.next_messages(100)] == [second]
    outbox.note_attempt(first, "NetworkError: Bad Gateway")  # Telegram did not take it
    assert [m.id for m in outbox.next_messages(100)] == [first, second]
    assert outbox.next_messages(100)[0].attempts == 1
    outbox.mark_sending(first)
    outbox.mark_sent(first, 555)
    assert [m.id for m in outbox.next_messages(100)] == [second]
    [delivered] = _events_of(store, "delivered")
    assert delivered.chat_id == "100" and delivered.data is not None
    assert delivered.data["outbox_id"] == first and delivered.data["message_id"] == 555
    stats = outbox.outbox_stats()
    assert (stats.pending, stats.failed, stats.uncertain) == (2, 0, 0)
    assert stats.oldest_pending_at is not None


def test_refused_messages_and_blocked_chats_are_logged_undelivered(store: Store) -> None:
    outbox = DeliveryStore(store, "a")
    [bad] = outbox.enqueue(100, [OutItem("text", "x")])
    outbox.enqueue(300, [OutItem("text", "a"), OutItem("text", "b")])
    outbox.mark_failed(bad, "refused: Bad Request: message is too long")
    assert outbox.fail_chat(300, "forbidden: bot was blocked by the user") == 2
    assert outbox.pending_chats() == []
    assert len(_events_of(store, "undelivered")) == 3
    assert outbox.outbox_stats().failed == 3


@pytest.mark.parametrize("resend", [False, True])
def test_what_a_dead_process_was_sending_is_uncertain_unless_resent(store: Store,
                                                                    resend: bool) -> None:
    dead, live = DeliveryStore(store, "dead"), DeliveryStore(store, "live")
    in_flight, waiting = dead.enqueue(100, [OutItem("text", "on the wire"),
                                            OutItem("text", "not tried")])
    dead.mark_sending(in_flight)
    adopted = live.adopt(["dead"], resend_uncertain=resend)
    if resend:
        assert (adopted.messages, adopted.uncertain) == (2, [])
        assert [m.id for m in live.next_messages(100)] == [in_flight, waiting]
    else:
        assert (adopted.messages, adopted.uncertain) == (1, [in_flight])
        assert [m.id for m in live.next_messages(100)] == [waiting]
        assert live.outbox_stats().uncertain == 1
        [event] = _events_of(store, "uncertain")
        assert event.data is not None and event.data["outbox_id"] == in_flight
    assert dead.next_messages(100) == []


def test_progress_messages_are_remembered_when_sent_and_edited(store: Store) -> None:
    outbox = DeliveryStore(store, "a")
    assert outbox.progress_message("job-1") is None
    [shown] = outbox.enqueue(100, [OutItem("progress", "Training 0%", progress_id="job-1")])
    outbox.mark_sent(shown, 40)
    assert outbox.progress_message("job-1") == (100, 40)
    # An edit that had to be sent as a new message moves the handle there.
    [edit] = outbox.enqueue(100, [OutItem("edit", "✗ stopped", progress_id="job-1")])
    outbox.mark_sent(edit, 41)
    assert outbox.progress_message("job-1") == (100, 41)


def test_heartbeats_and_forgetting_a_chat(store: Store) -> None:
    from datetime import UTC, datetime

    process = DeliveryStore(store, "host:1:ab")
    started = datetime.now(UTC)
    process.beat("telegram", {"mode": "polling"}, started)
    process.beat("telegram", {"mode": "polling", "failures": 2}, started)
    [beat] = process.beats("telegram")
    assert beat.name == "host:1:ab" and beat.data["failures"] == 2
    process.stop_beating()
    assert process.beats() == []

    process.receive([_update(1, 100)])
    process.finish_update(1, 100, [OutItem("progress", "x", progress_id="p")], [])
    [row] = process.next_messages(100)
    process.mark_sent(row.id, 9)
    process.forget_chat(100)
    assert process.next_offset() is None and process.progress_message("p") is None


def test_update_chat_id() -> None:
    assert update_chat_id(_update(1, -100123)) == -100123
    assert update_chat_id({"update_id": 1, "edited_message": {"chat": {"id": 5}}}) == 5
    assert update_chat_id({"update_id": 1, "poll": {"id": "x"}}) is None


def test_events_are_held_back_on_the_collecting_thread_only(store: Store) -> None:
    event = _events(100, 0)[0]
    other: list[int] = []
    with store.collecting_events() as held:
        assert store.append_events([event]) == []
        worker = threading.Thread(
            target=lambda: other.extend(store.append_events(_events(200, 0))))
        worker.start()
        worker.join()
    assert held == [event] and len(other) == 1
    assert store.count_events("100") == 0 and store.count_events("200") == 1
    assert store.append_events(_events(100, 0))  # collecting is over


def test_forgetting_a_user_deletes_what_was_delivered_in_their_chat_but_not_what_waits(
        store: Store) -> None:
    inbox = DeliveryStore(store, "a")
    inbox.receive([_update(1, 100), _update(2, 200)])
    inbox.finish_update(1, 100, [OutItem("text", "answer", reply=0)], _events(100, 1))
    inbox.finish_update(2, 200, [OutItem("text", "someone else's", reply=0)], _events(200, 1))
    [delivered] = inbox.next_messages(100)
    inbox.mark_sending(delivered.id)
    inbox.mark_sent(delivered.id, 5)  # logs a "delivered" event (user "") in chat 100
    inbox.receive([_update(3, 100, "/forget_me yes")])  # being answered now
    [waiting] = inbox.enqueue(100, [OutItem("text", "Done: I deleted …")])

    counts = store.forget_user("100")
    assert counts["telegram_messages"] == 2  # the answered update and its sent reply
    assert counts["events"] == 3  # message, reply and the delivery record
    assert [m.id for m in inbox.next_messages(100)] == [waiting]
    assert [u.update_id for u in inbox.pending_updates()] == [3]
    with store.session() as session:
        assert session.scalars(select(TelegramUpdate.update_id)
                               .order_by(TelegramUpdate.update_id)).all() == [2, 3]
    assert [m.text for m in inbox.next_messages(200)] == ["someone else's"]
    assert {e.chat_id for e in _events_of(store, "reply")} == {"200"}


def test_retention_deletes_old_delivery_rows_that_are_done_with(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    inbox = DeliveryStore(store, "a")
    inbox.receive([_update(1, 100), _update(2, 100)])
    inbox.finish_update(1, 100, [OutItem("text", "sent one")], _events(100, 1))
    [sent] = inbox.next_messages(100)
    inbox.mark_sending(sent.id)
    inbox.mark_sent(sent.id, 5)
    [waiting] = inbox.enqueue(100, [OutItem("text", "still to send")])
    assert store.forget_before(datetime.now(UTC) + timedelta(minutes=1)) >= 3
    with store.session() as session:
        assert session.scalars(select(OutboxMessage.id)).all() == [waiting]
    assert [u.update_id for u in inbox.pending_updates()] == [2]
