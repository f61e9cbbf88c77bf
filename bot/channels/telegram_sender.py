"""Delivering the outbox: each chat's messages in order, chats in parallel, within Telegram's
rate limit. A transient failure (5xx, network, flood wait) waits out a back-off shared by every
chat and is tried again, for as long as it takes; a message is marked sent only once Telegram
has answered, and a slow answer is awaited (``read_timeout``), not sent again."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from telegram import Bot, InputFile
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.logging import error_line
from bot.storage.delivery import DeliveryStore, Outgoing

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Runs a blocking store call off the event loop: ``await db(fn, *args)``.
DbCall = Callable[..., Awaitable[Any]]
MEDIA_KINDS = {"photo": "photo", "animation": "animation", "document": "document"}


#: Awaited when the request now being made has been written to the socket but for its last
#: byte, which is written once it returns. A process that dies while it runs leaves Telegram
#: an unfinished request, which no HTTP server acts on; once it has returned, Telegram has
#: the request (or will), even if this process dies before the answer comes.
ON_WRITTEN: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = (
    contextvars.ContextVar("amlbot_on_written", default=None))


class _HoldLastByte(httpx.AsyncByteStream):
    """A request body that holds back its last byte until ``before_last`` has returned."""

    def __init__(self, body: httpx.AsyncByteStream, before_last: Callable[[], Awaitable[None]]
                 ) -> None:
        self.body, self.before_last = body, before_last

    async def __aiter__(self) -> AsyncIterator[bytes]:
        held = b""
        async for chunk in self.body:
            if not chunk:
                continue
            if held:
                yield held
            held = chunk
        if len(held) > 1:
            yield held[:-1]
        await self.before_last()
        if held:
            yield held[-1:]

    async def aclose(self) -> None:
        await self.body.aclose()


class WriteAwareTransport(httpx.AsyncHTTPTransport):
    """An HTTP transport that lets :data:`ON_WRITTEN` record a send as in flight in the
    instant before the request is complete, so that a crash can neither leave a request
    Telegram acted on unrecorded nor one it never got recorded as sent (but for that instant)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        written = ON_WRITTEN.get()
        if written is not None:
            request.stream = _HoldLastByte(request.stream, written)  # type: ignore[arg-type]
        return await super().handle_async_request(request)


def sending_transport(connections: int) -> WriteAwareTransport:
    """The transport of the Bot API client that sends (``connections`` in its pool)."""
    return WriteAwareTransport(limits=httpx.Limits(max_connections=connections,
                                                   max_keepalive_connections=connections))


class FatalTelegramError(RuntimeError):
    """The Bot API refuses this bot for good (a wrong or revoked token): stop the process."""


def retry_after_seconds(exc: RetryAfter) -> float:
    wait = exc.retry_after
    return wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)


class Backoff:
    """The wait after transient failures, shared by everyone calling one API.

    The first failure after the last wait doubles it (from ``base`` up to ``cap``); failures of
    calls that were already in flight do not. Every caller waits it out before its next call,
    so an outage costs a few probes per wait instead of a flood, and the first success ends it.
    """

    def __init__(self, base: float = 0.5, cap: float = 5.0) -> None:
        self.base, self.cap = base, max(cap, base)
        self._delay = 0.0
        self._until = 0.0
        #: ``time.monotonic()`` of the first failure of the current outage, or None.
        self.failing_since: float | None = None

    def remaining(self) -> float:
        return max(0.0, self._until - time.monotonic())

    async def wait(self) -> None:
        while (left := self.remaining()) > 0:
            await asyncio.sleep(left)

    def failed(self, retry_after: float | None = None) -> bool:
        """Note a failure; True when it began a new wait (the others were in flight)."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        if retry_after is not None:  # a flood wait: exactly as long as Telegram asks
            self._until = max(self._until, now + retry_after)
            return True
        if now < self._until:
            return False
        self._delay = min(self.cap, self._delay * 2 if self._delay else self.base)
        self._until = now + self._delay
        return True

    def succeeded(self) -> float | None:
        """Note a success; returns how long the outage it ends lasted (None: there was none)."""
        if self.failing_since is None:
            return None
        lasted = time.monotonic() - self.failing_since
        self.failing_since, self._delay, self._until = None, 0.0, 0.0
        return lasted


class RateLimit:
    """At most ``rate`` calls a second, evenly spaced (Telegram allows a bot about 30).

    Callers queue for their turn instead of booking one ahead, so that a caller that gives its
    turn up (the API started failing meanwhile) leaves no backlog behind."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._turn = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._turn:
            wait = self._next - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next = time.monotonic() + self.interval


class Sender:
    """Sends this process's outbox: one task per chat with pending messages."""

    def __init__(
        self,
        bot: Bot,
        delivery: DeliveryStore,
        db: DbCall,
        *,
        concurrency: int = 16,
        per_second: float = 30.0,
        max_delay: float = 5.0,
        send_timeout: float = 60.0,
        on_sent: Callable[[Outgoing, int | None], None] | None = None,
        db_send: DbCall | None = None,
    ) -> None:
        self.bot = bot
        self.delivery = delivery
        self.db = db
        #: Where the delivery records go: best a thread of their own, so that they never
        #: queue behind other work (the longer they wait, the more a crash leaves uncertain).
        self.db_send = db_send or db
        self.send_timeout = send_timeout
        self.on_sent = on_sent
        self.backoff = Backoff(cap=max_delay)
        self.sent = 0
        self.stopping = False
        self._rate = RateLimit(per_second)
        self._slots = asyncio.Semaphore(concurrency)
        self._wanted: set[int] = set()
        self._tasks: dict[int, asyncio.Task[None]] = {}

    @property
    def busy_chats(self) -> int:
        """Chats whose messages are being sent now."""
        return len(self._tasks)

    def wake(self, chat_id: int) -> None:
        """There are (new) messages for ``chat_id``: make sure a task sends them."""
        if self.stopping:
            return
        self._wanted.add(chat_id)
        if chat_id not in self._tasks:
            self._tasks[chat_id] = asyncio.create_task(self._drain(chat_id),
                                                       name=f"amlbot-send-{chat_id}")

    async def sweep(self) -> None:
        """Wake every chat with pending messages (at start, and now and then)."""
        for chat_id in await self.db(self.delivery.pending_chats):
            self.wake(chat_id)

    async def stop(self, grace: float) -> None:
        """Let the messages being sent finish (up to ``grace`` s), then stop; the rest stays
        in the outbox for the next start."""
        self.stopping = True
        tasks = list(self._tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def try_once(self, request: Callable[[], Awaitable[object]]) -> bool:
        """Make one cosmetic call (a live progress edit) unless the API is failing now."""
        if self.stopping or self.backoff.remaining() > 0:
            return False
        await self._rate.acquire()
        if self.backoff.remaining() > 0:
            return False
        async with self._slots:
            await request()
        return True

    # --- one chat ------------------------------------------------------------------------

    async def _drain(self, chat_id: int) -> None:
        try:
            while chat_id in self._wanted and not self.stopping:
                self._wanted.discard(chat_id)
                while not self.stopping:
                    try:
                        rows = await self.db(self.delivery.next_messages, chat_id, 20)
                    except Exception as exc:  # noqa: BLE001 - the database is down: wait for it
                        log.error("could not read the replies to chat %s from the database "
                                  "(%s); trying again", chat_id, error_line(exc))
                        await asyncio.sleep(self.backoff.cap)
                        continue
                    if not rows:
                        break
                    for row in rows:
                        if self.stopping:
                            return
                        if not await self._deliver(row):
                            self._wanted.discard(chat_id)
                            return
        finally:
            self._tasks.pop(chat_id, None)

    async def _deliver(self, row: Outgoing) -> bool:
        """Send one message until it is sent or refused; False when the chat is closed to us.

        The message is recorded ``sending`` while its request waits for its last byte, and its
        outcome right after the answer, a send slot held all along. A crash thus leaves at
        most ``concurrency`` messages whose fate is unknown (``sending``: Telegram got the
        request, unless the crash fell in the instant between that record and the last
        byte), and a message still ``pending`` never reached Telegram whole.
        """
        while True:
            await self.backoff.wait()
            if self.stopping:
                return True
            await self._rate.acquire()
            if self.backoff.remaining() > 0:
                continue  # the API failed while this one waited for its turn: one probe is enough
            async with self._slots:
                if self.backoff.remaining() > 0:
                    continue
                recorded = False

                async def written() -> None:
                    nonlocal recorded
                    if not recorded:  # an edit that falls back to a send writes twice
                        recorded = True
                        await self._record(self.delivery.mark_sending, row.id)

                token = ON_WRITTEN.set(written)
                try:
                    message_id = await self._send(row)
                except RetryAfter as exc:
                    wait = retry_after_seconds(exc)
                    self.backoff.failed(wait)
                    log.info("flood wait from Telegram: sending again in %.1f s", wait)
                    await self._record(self.delivery.note_attempt, row.id,
                                       f"flood wait {wait:g} s")
                    continue
                except Forbidden as exc:
                    log.info("chat %s blocked the bot; dropping its replies", row.chat_id)
                    await self._record(self.delivery.fail_chat, row.chat_id, f"forbidden: {exc}")
                    return False
                except (BadRequest, ChatMigrated) as exc:
                    log.warning("Telegram refused a %s message to chat %s: %s", row.kind,
                                row.chat_id, exc)
                    await self._record(self.delivery.mark_failed, row.id, f"refused: {exc}")
                    return True
                except (TelegramError, OSError) as exc:  # 5xx, network, timeouts, a dead token
                    self._transient(row, exc)
                    await self._record(self.delivery.note_attempt, row.id, error_line(exc))
                    continue
                finally:
                    ON_WRITTEN.reset(token)
                await self._record(self.delivery.mark_sent, row.id, message_id)
            lasted = self.backoff.succeeded()
            if lasted is not None:
                log.warning("the Bot API answers again after %.1f s; sending the replies that "
                            "waited", lasted)
            self.sent += 1
            if self.on_sent is not None:
                self.on_sent(row, message_id)
            return True

    def _transient(self, row: Outgoing, exc: Exception) -> None:
        first = self.backoff.failing_since is None
        self.backoff.failed()
        if isinstance(exc, TimedOut):
            # Telegram may have sent it: only now, after waiting send_timeout, try again.
            log.warning("no answer to a %s message to chat %s within %.0f s; sending it again "
                        "(it may arrive twice)", row.kind, row.chat_id, self.send_timeout)
        elif first:
            log.warning("the Bot API is failing (%s); replies wait in the outbox and are tried "
                        "again, at least every %.1f s", error_line(exc), self.backoff.cap)
        else:
            log.debug("Bot API call failed again (%s)", error_line(exc))

    async def _send(self, row: Outgoing) -> int | None:
        """One Bot API call for ``row``; the Telegram id of the message it made or edited."""
        if row.kind in ("text", "progress"):
            return (await self.bot.send_message(row.chat_id, row.text)).message_id
        if row.kind == "edit":
            return await self._edit_or_send(row)
        field = MEDIA_KINDS.get(row.kind)
        if field is None:
            raise BadRequest(f"unknown outbox message kind {row.kind!r}")
        upload = InputFile(row.data or b"", filename=row.filename or "file")
        method = {"photo": self.bot.send_photo, "animation": self.bot.send_animation,
                  "document": self.bot.send_document}[row.kind]
        message = await method(row.chat_id, upload, caption=row.text or None)  # type: ignore[operator]
        return int(message.message_id)

    async def _edit_or_send(self, row: Outgoing) -> int:
        """Edit the message showing ``row.progress_id``, or send the text when it is unknown
        (or can no longer be edited)."""
        known = None
        if row.progress_id:
            known = await self.db(self.delivery.progress_message, row.progress_id)
        if known is not None and known[0] == row.chat_id:
            try:
                await self.bot.edit_message_text(row.text, chat_id=row.chat_id,
                                                 message_id=known[1])
                return known[1]
            except BadRequest as exc:
                if "not modified" in exc.message.lower():
                    return known[1]
                log.info("could not edit progress message %s (%s); sending the text instead",
                         row.progress_id, exc.message)
        return (await self.bot.send_message(row.chat_id, row.text)).message_id

    async def _record(self, write: Callable[..., T], *args: object) -> T:
        """A delivery write that must happen (a message was sent, or was not): retried until
        the database takes it, on the sender's own database thread."""
        delay = 0.5
        while True:
            try:
                return await self.db_send(write, *args)  # type: ignore[no-any-return]
            except Exception as exc:  # noqa: BLE001 - the database is down: wait for it
                log.error("could not record a delivery in the database (%s); trying again in "
                          "%.1f s", error_line(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


