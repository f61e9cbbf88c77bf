"""The Telegram channel: the Bot API in front of the :class:`Assistant`, losing nothing.

Updates arrive by long polling (our own ``getUpdates`` loop) or by webhook. Each one is
committed to the inbox before Telegram is told it arrived (polling: by asking for the next
offset; webhook: by answering 200), then handled: a chat's updates in order, chats in
parallel, ``Assistant.handle`` on a thread pool. Its replies, rendered as a bounded number of
Telegram messages, are committed to the outbox in the same transaction that marks the update
answered, and the :class:`~bot.channels.telegram_sender.Sender` delivers them. A redelivered
update is never answered twice, and a restart first finishes what the last run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import secrets
import signal
import socket
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from telegram import Bot, BotCommand, Update
from telegram import Message as TgMessage
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from bot.channels.health import COMPONENT, Health, check_health, limits
from bot.channels.telegram_render import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    render,
    split_caption,
    split_text,
    telegram_length,
)
from bot.channels.telegram_sender import (
    Backoff,
    FatalTelegramError,
    Sender,
    retry_after_seconds,
    sending_transport,
)
from bot.core.assistant import Assistant
from bot.core.messages import (
    Attachment,
    Message,
    ProgressHandle,
    ProgressState,
    Reply,
    TextReply,
    sniff_image,
)
from bot.jobs.records import pid_alive
from bot.logging import error_line
from bot.settings import Settings
from bot.storage.delivery import DeliveryStore, Outgoing, OutItem, PendingUpdate
from bot.storage.models import Event

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["CAPTION_LIMIT", "TEXT_LIMIT", "FatalTelegramError", "ProgressRelay",
           "TelegramChannel", "sniff_image", "split_caption", "split_text", "telegram_length"]

TYPING_GRACE = 0.5  # instant answers need no "typing…" (and it would double the flood count)
TYPING_EVERY = 4.0  # Telegram shows the action for about 5 s
READ_ATTEMPTS = 3  # getFile and downloads: reads, safe to repeat
SWEEP_EVERY = 2.0  # how often stored work that nobody is doing is looked for
UPDATE_ATTEMPTS = 5  # an update that fails this often (not counting outages) is given up
RECENT_UPDATES = 10_000  # ids of updates answered lately, so a stale sweep never repeats one
SHUTDOWN_GRACE = 3.0
ALLOWED_UPDATES = ["message", "edited_message"]
EDITED_ANSWER = "I only answer new messages: send it again if you want a fresh answer."
_MENU_COMMAND = re.compile(r"[a-z0-9_]{1,32}")  # what setMyCommands accepts

# do_api_request warns that Bot has a get_updates method; we need the raw updates instead.
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.getUpdates'")

UNSUPPORTED_KINDS = (
    ("sticker", "stickers"),
    ("voice", "voice messages"),
    ("video_note", "video messages"),
    ("audio", "audio files"),
    ("video", "videos"),
    ("animation", "GIFs"),
    ("document", "files of that type"),
    ("location", "locations"),
    ("venue", "venues"),
    ("contact", "contacts"),
    ("poll", "polls"),
    ("dice", "dice"),
    ("game", "games"),
    ("story", "stories"),
)


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.0f} kB"



def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


# --- who owns stored work --------------------------------------------------------------------

def process_owner() -> str:
    """This process's name on the rows it owns: ``host:pid:nonce`` (the nonce tells two runs
    with the same pid apart, as in a restarted container)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def owner_dead(owner: str | None, me: str, beats: dict[str, datetime], *, now: datetime,
               stale_after: float) -> bool:
    """Whether the process ``owner`` is gone, so that its pending work may be adopted: its
    pid no longer runs on this host, or its heartbeat is missing or older than
    ``stale_after`` seconds."""
    if owner is None:
        return True
    if owner == me:
        return False
    host, _, rest = owner.partition(":")
    pid, _, _nonce = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit() and (
            int(pid) == os.getpid() or not pid_alive(int(pid))):
        return True
    beat = beats.get(owner)
    return beat is None or (now - beat).total_seconds() > stale_after


# --- progress ----------------------------------------------------------------------------

class ProgressRelay:
    """Keeps one message in step with a :class:`ProgressHandle`.

    The handle may change from any thread, as often as it likes; the relay edits the message
    at most once per ``interval`` seconds with the newest state, and always delivers the final
    one. ``edit`` is called on the event loop with the new text.
    """

    def __init__(
        self,
        handle: ProgressHandle,
        edit: Callable[[str], Awaitable[object]],
        *,
        interval: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.handle = handle
        self.edit = edit
        self.interval = interval
        self.loop = loop
        self.edits = 0
        self._changed = asyncio.Event()

    def _notify(self, _state: ProgressState) -> None:
        # Called from the worker thread that updates the handle: hop onto the bot's loop.
        with contextlib.suppress(RuntimeError):  # the loop is closed: the bot is shutting down
            self.loop.call_soon_threadsafe(self._changed.set)

    async def run(self, shown: str) -> None:
        """Edit the message (now showing ``shown``) until the handle is done."""
        last_text, last_at = shown, time.monotonic()  # ``shown`` was just sent
        self.handle.subscribe(self._notify)
        while True:
            await self._changed.wait()
            wait = last_at + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # let updates pile up; only the newest is sent
            self._changed.clear()
            done = self.handle.state().done
            text = self.handle.render()
            if text != last_text:
                try:
                    await self.edit(text)
                except Exception:  # noqa: BLE001 - a lost edit is cosmetic; keep following
                    log.warning("could not edit progress message %s", self.handle.id,
                                exc_info=True)
                self.edits += 1
                last_text, last_at = text, time.monotonic()
            if done:
                return


# --- the channel -------------------------------------------------------------------------

class _PollState:
    """What this process last saw of the Bot API, for its heartbeat."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.last_ok: float | None = None
        self.failures = 0
        self.error: str | None = None
        self.last_update: float | None = None

    def ok(self) -> None:
        self.last_ok, self.failures, self.error = time.time(), 0, None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.error = error_line(exc)

    def as_dict(self) -> dict[str, Any]:
        if self.mode == "polling":
            return {"polling": {"last_ok_at": _iso(self.last_ok), "failures": self.failures,
                                "error": self.error}}
        return {"webhook": {"last_update_at": _iso(self.last_update)}}


class TelegramChannel:
    """Connects the :class:`Assistant` to a Bot API server (Telegram's, or any other).

    ``job_probe`` tells the heartbeat how the job runner is doing (a JSON-able dict with at
    least ``ok``).
    """

    def __init__(self, assistant: Assistant, settings: Settings | None = None, *,
                 job_probe: Callable[[], dict[str, Any]] | None = None) -> None:
        self.assistant = assistant
        self.settings = settings or assistant.settings
        self.owner = process_owner()
        self.delivery = DeliveryStore(assistant.store, self.owner)
        self.job_probe = job_probe
        self.state = _PollState("polling")
        self.limits = limits(self.settings)
        self.started_at = datetime.now(UTC)
        self._pool = ThreadPoolExecutor(
            max_workers=self.settings.telegram_max_concurrent_updates,
            thread_name_prefix="amlbot-telegram",
        )
        self._db_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="amlbot-db")
        self._send_db_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amlbot-sent")
        self._handling: asyncio.Semaphore | None = None
        self._queued: set[int] = set()
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._attempts: dict[int, int] = {}
        self._chat_queues: dict[object, deque[PendingUpdate]] = {}
        self._chat_workers: dict[object, asyncio.Task[None]] = {}
        self._handles: dict[str, ProgressHandle] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._remove_listener: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bot: Bot | None = None
        self._sender: Sender | None = None
        self.webhook_secret = ""

    @property
    def bot(self) -> Bot:
        assert self._bot is not None, "the channel is not running"
        return self._bot

    @property
    def sender(self) -> Sender:
        assert self._sender is not None, "the channel is not running"
        return self._sender

    # --- running ---------------------------------------------------------------------

    def run_polling(self) -> None:
        """Long-poll ``getUpdates`` until SIGINT/SIGTERM; raises :class:`FatalTelegramError`
        when the Bot API refuses the token."""
        self.state = _PollState("polling")
        asyncio.run(self._run(self._poll))

    def run_webhook(self, webhook_url: str, *, listen: str, port: int) -> None:
        """Serve a webhook on ``listen:port`` (and ``/healthz``), register ``webhook_url``.

        The secret token Telegram must send back is ``AMLBOT_TELEGRAM_WEBHOOK_SECRET`` (the
        same for every process behind one URL), or a fresh random one.
        """
        from bot.channels.telegram_webhook import Webhook, serve_webhook

        secret = self.settings.telegram_webhook_secret
        self.webhook_secret = (secret.get_secret_value() if secret is not None
                               and secret.get_secret_value() else secrets.token_urlsafe(32))
        self.state = _PollState("webhook")

        async def receive() -> None:
            hook = Webhook(bot=self.bot, secret=self.webhook_secret, receive=self.receive_pushed,
                           health=self.health, allowed_updates=ALLOWED_UPDATES,
                           max_delay=self.settings.telegram_retry_max_delay)
            await serve_webhook(hook, webhook_url, listen=listen, port=port)

        asyncio.run(self._run(receive))

    def make_bot(self) -> Bot:
        """The Bot API client: sends wait ``telegram_send_timeout`` for an answer."""
        token = self.settings.telegram_token
        if token is None or not token.get_secret_value():
            raise InvalidToken("AMLBOT_TELEGRAM_TOKEN is not set")
        timeout = self.settings.telegram_send_timeout
        connections = self.settings.telegram_send_concurrency + 8
        requests = HTTPXRequest(
            connection_pool_size=connections, read_timeout=timeout,
            write_timeout=max(timeout, 20.0), connect_timeout=10.0, pool_timeout=timeout,
            httpx_kwargs={"transport": sending_transport(connections)},
        )
        polling = HTTPXRequest(connection_pool_size=2, connect_timeout=10.0, pool_timeout=10.0,
                               read_timeout=self.settings.telegram_poll_timeout + 15.0)
        return Bot(token.get_secret_value(), base_url=self.settings.telegram_base_url,
                   base_file_url=self.settings.telegram_base_file_url, request=requests,
                   get_updates_request=polling)

    async def db(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call on the database threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_pool, functools.partial(call, *args))

    async def db_send(self, call: Callable[..., T], *args: Any) -> T:
        """Run a delivery record on the sender's own database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._send_db_pool, functools.partial(call, *args))

    async def _run(self, receive: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._loop = asyncio.get_running_loop()
        self._handling = asyncio.Semaphore(self.settings.telegram_max_concurrent_updates)
        stop = asyncio.Event()
        handled_signals = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                self._loop.add_signal_handler(signum, stop.set)
                handled_signals.append(signum)
        self._bot = self.make_bot()
        self._sender = Sender(
            self._bot, self.delivery, self.db,
            concurrency=self.settings.telegram_send_concurrency,
            per_second=self.settings.telegram_sends_per_second,
            max_delay=self.settings.telegram_retry_max_delay,
            send_timeout=self.settings.telegram_send_timeout,
            on_sent=self._on_sent, db_send=self.db_send,
        )
        tasks: list[asyncio.Task[Any]] = []
        waiter = asyncio.create_task(stop.wait())
        try:
            # A signal also ends a start that waits for the Bot API or the database.
            starting = asyncio.create_task(self._start())
            tasks = [starting]
            await asyncio.wait([waiter, starting], return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                return
            starting.result()  # a refused token ends it here
            tasks = [asyncio.create_task(receive(), name="amlbot-receive"),
                     asyncio.create_task(self._housekeeping(), name="amlbot-housekeeping"),
                     asyncio.create_task(self._set_menu(), name="amlbot-menu")]
            await asyncio.wait([waiter, *tasks[:2]], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks[:2]:
                error = task.exception() if task.done() and not task.cancelled() else None
                if error is not None:
                    raise error
        finally:
            waiter.cancel()
            for signum in handled_signals:
                self._loop.remove_signal_handler(signum)
            await self._shutdown(tasks)

    async def _start(self) -> None:
        """Connect, beat, adopt what dead processes left, and resume this process's work."""
        await self._connect()
        await self._beat()
        await self._adopt()
        self._remove_listener = self.assistant.add_listener(self._later)
        await self._resume()

    async def _connect(self) -> None:
        """``getMe``, until the Bot API answers; a refused token is fatal."""
        backoff = Backoff(cap=self.settings.telegram_retry_max_delay)
        while True:
            try:
                await self.bot.initialize()
                me = self.bot.bot
                log.info("telegram bot @%s is up (id %s)", me.username, me.id)
                return
            except InvalidToken as exc:
                raise FatalTelegramError(
                    f"the Bot API refused the token ({exc.message}): it is wrong or revoked"
                ) from None
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
            except NetworkError as exc:
                backoff.failed()
                log.warning("cannot reach the Bot API (%s); trying again in %.1f s",
                            error_line(exc), backoff.remaining())
                await backoff.wait()

    async def _shutdown(self, tasks: Sequence[asyncio.Task[Any]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._remove_listener is not None:
            self._remove_listener()
        # Answers being worked out get a moment to reach the outbox; the rest stays pending
        # in the inbox and is answered after the next start.
        workers = list(self._chat_workers.values())
        if workers:
            _done, pending = await asyncio.wait(workers, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
        if self._sender is not None:
            await self._sender.stop(SHUTDOWN_GRACE)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        try:
            await self.db(self.delivery.stop_beating)
        except Exception:  # noqa: BLE001 - a stale heartbeat says the same thing
            log.debug("could not remove the heartbeat", exc_info=True)
        if self._bot is not None:
            with contextlib.suppress(Exception):
                await self._bot.shutdown()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._db_pool.shutdown(wait=False, cancel_futures=True)
        self._send_db_pool.shutdown(wait=False, cancel_futures=True)

    async def _set_menu(self) -> None:
        commands = [
            BotCommand(command.name, command.help[:256])
            for command in self.assistant.router.visible_commands()
            if _MENU_COMMAND.fullmatch(command.name) and len(command.help) >= 3
        ]
        try:
            await self.bot.set_my_commands(commands[:100])
        except Exception:  # noqa: BLE001 - the menu is a nicety; the bot works without it
            log.warning("could not set the bot's command menu", exc_info=True)

    # --- background duties ---------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Heartbeat, adopt what dead processes left, and pick up stored work nobody is doing."""
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                if time.monotonic() - last_beat >= self.settings.telegram_heartbeat_interval:
                    last_beat = time.monotonic()
                    await self._beat()
                    await self._adopt()
                await self._resume()
            except Exception as exc:  # noqa: BLE001 - the database is down: say so, go on
                log.error("could not read or write the database (%s); trying again in %.0f s",
                          error_line(exc), SWEEP_EVERY)

    async def _beat(self) -> None:
        data: dict[str, Any] = {"mode": self.state.mode, "pid": os.getpid(),
                                "host": socket.gethostname(), **self.state.as_dict(),
                                "handling": len(self._queued),
                                "sending_chats": self.sender.busy_chats}
        if self.job_probe is not None:
            try:
                data["jobs"] = self.job_probe()
            except Exception as exc:  # noqa: BLE001 - a broken probe is itself a finding
                data["jobs"] = {"ok": False, "summary": f"job runner probe failed: {exc}"}
        await self.db(self.delivery.beat, COMPONENT, data, self.started_at)

    async def _adopt(self) -> None:
        """Take over the pending updates and replies of bot processes that died."""
        owners = await self.db(self.delivery.owners_with_work)
        if not owners - {self.owner}:
            return
        beats = {b.name: b.beat_at for b in await self.db(self.delivery.beats, COMPONENT)}
        now = datetime.now(UTC)
        dead = [owner for owner in owners if owner_dead(
            owner, self.owner, beats, now=now,
            stale_after=self.settings.telegram_owner_stale_after)]
        if not dead:
            return
        adopted = await self.db(functools.partial(
            self.delivery.adopt, dead,
            resend_uncertain=self.settings.telegram_resend_uncertain))
        if adopted.updates or adopted.messages:
            log.warning("took over %d unanswered update(s) and %d unsent message(s) left by "
                        "a stopped bot process", adopted.updates, adopted.messages)
        if adopted.uncertain:
            log.warning("%d message(s) were being sent when a bot process stopped; Telegram "
                        "may or may not have them, so they are not sent again (outbox ids %s; "
                        "AMLBOT_TELEGRAM_RESEND_UNCERTAIN=true sends them again)",
                        len(adopted.uncertain), ", ".join(map(str, adopted.uncertain[:20])))

    async def _resume(self) -> None:
        """Queue stored updates this process owns but is not handling, and wake the sender
        for stored messages (at start: what the last run left; later: retries)."""
        pending = await self.db(self.delivery.pending_updates)
        self._enqueue(p for p in pending if p.update_id not in self._recent)
        await self.sender.sweep()

    def health(self) -> Health:
        """The health report (blocking: reads the database)."""
        return check_health(self.delivery, self.limits)

    # --- receiving -----------------------------------------------------------------------

    async def _poll(self) -> None:
        """The ``getUpdates`` loop: an update is confirmed (the next offset asked for) only
        after it is committed; transient failures are retried with back-off, forever."""
        backoff = Backoff(cap=max(self.settings.telegram_retry_max_delay, 5.0))
        offset: int | None = None
        while offset is None:
            try:
                offset = await self.db(self.delivery.next_offset) or 0
            except Exception as exc:  # noqa: BLE001 - wait for the database
                backoff.failed()
                log.error("cannot read the last update id from the database (%s); polling "
                          "waits for it", error_line(exc))
                await backoff.wait()
        timeout = self.settings.telegram_poll_timeout
        while True:
            try:
                raw = await self.bot.do_api_request(
                    "getUpdates", api_kwargs={"offset": offset, "timeout": timeout,
                                              "allowed_updates": ALLOWED_UPDATES},
                    read_timeout=timeout + 15.0)
            except (InvalidToken, EndPointNotFound) as exc:
                # 401 or 404 (do_api_request calls a 404 EndPointNotFound): a dead token.
                cause = exc.__cause__ if isinstance(exc.__cause__, TelegramError) else exc
                raise FatalTelegramError(
                    f"getUpdates was refused ({cause.message}): the token is wrong or revoked, "
                    "or the bot was deleted"
                ) from None
            except RetryAfter as exc:
                self.state.failed(exc)
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - 5xx, network, conflicts: wait and retry
                self.state.failed(exc)
                backoff.failed()
                log.warning("getUpdates failed %d time(s) in a row (%s); trying again in "
                            "%.1f s", self.state.failures, error_line(exc), backoff.remaining())
                await backoff.wait()
                continue
            backoff.succeeded()
            self.state.ok()
            updates = [u for u in raw or [] if isinstance(u, dict)
                       and isinstance(u.get("update_id"), int)]
            if updates:
                try:
                    fresh = await self.db(self.delivery.receive, updates)
                except Exception as exc:  # noqa: BLE001 - not stored: not confirmed
                    backoff.failed()
                    log.error("could not store %d update(s) (%s): they are not confirmed to "
                              "Telegram and will come again", len(updates), error_line(exc))
                    await backoff.wait()
                    continue
                offset = max(u["update_id"] for u in updates) + 1
                self.state.last_update = time.time()
                self._enqueue(fresh)
            if self.settings.telegram_poll_interval:
                await asyncio.sleep(self.settings.telegram_poll_interval)

    async def receive_pushed(self, payload: dict[str, Any]) -> bool:
        """Store one update posted to the webhook; False when it could not be stored (the
        webhook then answers 503, and Telegram sends it again)."""
        try:
            fresh = await self.db(self.delivery.receive, [payload])
        except Exception as exc:  # noqa: BLE001 - not stored: let Telegram retry
            log.error("could not store update %s (%s): answering 503 so that Telegram sends "
                      "it again", payload.get("update_id"), error_line(exc))
            return False
        self.state.last_update = time.time()
        self._enqueue(fresh)
        return True

    # --- handling ------------------------------------------------------------------------

    def _enqueue(self, updates: Iterable[PendingUpdate]) -> None:
        for item in updates:
            if item.update_id in self._queued:
                continue
            self._queued.add(item.update_id)
            key: object = item.chat_id if item.chat_id is not None else f"u{item.update_id}"
            self._chat_queues.setdefault(key, deque()).append(item)
            if key not in self._chat_workers:
                self._chat_workers[key] = asyncio.create_task(self._work_chat(key))

    async def _work_chat(self, key: object) -> None:
        """Handle one chat's queued updates, in order."""
        queue = self._chat_queues[key]
        try:
            while queue:
                item = queue[0]
                assert self._handling is not None
                try:
                    async with self._handling:
                        await self._process(item)
                except Exception as exc:  # noqa: BLE001 - keep it pending: a sweep retries
                    self._failed(item, exc)
                    for left in queue:  # later updates wait, so the chat stays in order
                        self._queued.discard(left.update_id)
                    queue.clear()
                    return
                queue.popleft()
                self._queued.discard(item.update_id)
        finally:
            self._chat_workers.pop(key, None)
            self._chat_queues.pop(key, None)

    def _failed(self, item: PendingUpdate, exc: Exception) -> None:
        attempts = self._attempts.get(item.update_id, 0) + 1
        self._attempts[item.update_id] = attempts
        log.error("could not answer update %s, attempt %d (%s); it stays in the inbox",
                  item.update_id, attempts, error_line(exc), exc_info=attempts == 1)

    def _answered(self, update_id: int) -> None:
        self._attempts.pop(update_id, None)
        self._recent[update_id] = None
        while len(self._recent) > RECENT_UPDATES:
            self._recent.popitem(last=False)

    async def _process(self, item: PendingUpdate) -> None:
        """Answer one stored update: its replies and its answered mark, in one commit."""
        if self._attempts.get(item.update_id, 0) >= UPDATE_ATTEMPTS:
            log.error("giving up on update %s after %d failed attempts", item.update_id,
                      UPDATE_ATTEMPTS)
            await self.db(self.delivery.fail_update, item.update_id, "too many failed attempts")
            self._answered(item.update_id)
            return
        try:
            update = Update.de_json(item.payload, self.bot)
        except Exception as exc:  # noqa: BLE001 - a malformed update cannot be answered
            log.warning("update %s is unreadable (%s); skipping it", item.update_id,
                        error_line(exc))
            await self.db(self.delivery.fail_update, item.update_id, f"unreadable: {exc}")
            self._answered(item.update_id)
            return
        replies, events = await self._answer(update)
        rendered = render(replies, max_messages=self.settings.telegram_max_messages_per_update)
        stored = await self.db(self.delivery.finish_update, item.update_id, item.chat_id,
                               rendered.items, events)
        self._answered(item.update_id)
        if not stored:
            log.info("update %s was already answered (by another bot process)", item.update_id)
            return
        for handle in rendered.handles:
            self._handles[handle.id] = handle
        if item.chat_id is not None and rendered.items:
            self.sender.wake(item.chat_id)

    async def _answer(self, update: Update) -> tuple[list[Reply], list[Event]]:
        """The replies to an update, and the log events of the exchange (not yet stored)."""
        if update.edited_message is not None:
            return [TextReply(EDITED_ANSWER)], []
        tg_message = update.message
        if tg_message is None:
            return [], []
        typing = asyncio.create_task(self._keep_typing(tg_message.chat_id))
        try:
            incoming = await self._to_message(tg_message)
            if incoming is None:
                return [], []
            if isinstance(incoming, str):
                return [TextReply(incoming)], []
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._handle, incoming)
        finally:
            typing.cancel()

    def _handle(self, message: Message) -> tuple[list[Reply], list[Event]]:
        """``Assistant.handle`` on a worker thread, its log events held back for our commit."""
        with self.assistant.store.collecting_events() as events:
            replies = self.assistant.handle(message)
        return replies, list(events)

    async def _to_message(self, tg: TgMessage) -> Message | str | None:
        """Our :class:`Message`, or the text to answer right away, or None to stay silent."""
        if tg.photo:
            image = await self._download_photo(tg)
            if isinstance(image, str):
                return image
            return self._message(tg, tg.caption or "", (image,))
        document = tg.document
        if document is not None and (document.mime_type or "").startswith("image/"):
            image = await self._download_image(document.file_id, document.file_size,
                                               what="image")
            if isinstance(image, str):
                return image
            return self._message(tg, tg.caption or "", (image,))
        if tg.text is not None:
            return self._message(tg, tg.text, ())
        for attribute, label in UNSUPPORTED_KINDS:
            if getattr(tg, attribute, None):
                return (f"Thanks, but I can't read {label} yet. "
                        "Send me text, a /command or a photo; /help lists what I can do.")
        return None  # service messages (members joining, pins...) need no answer

    def _message(self, tg: TgMessage, text: str, attachments: tuple[Attachment, ...]) -> Message:
        user = tg.from_user
        return Message(
            chat_id=str(tg.chat_id),
            user_id=str(user.id if user else tg.chat_id),
            text=text,
            channel="telegram",
            attachments=attachments,
            username=(user.username or user.first_name) if user else None,
        )

    async def _download_photo(self, tg: TgMessage) -> Attachment | str:
        limit = self.settings.max_upload_bytes
        fitting = [size for size in tg.photo if size.file_size is None or size.file_size <= limit]
        if not fitting:
            return self._too_big("photo", min(size.file_size or 0 for size in tg.photo))
        best = fitting[-1]  # Telegram lists the sizes from small to large
        return await self._download_image(best.file_id, best.file_size, what="photo")

    async def _download_image(self, file_id: str, declared: int | None, *,
                              what: str) -> Attachment | str:
        """The image behind ``file_id``, size-checked before and after the download."""
        limit = self.settings.max_upload_bytes
        if declared is not None and declared > limit:
            return self._too_big(what, declared)
        try:
            tg_file = await self._read(lambda: self.bot.get_file(file_id))
        except BadRequest as exc:
            log.info("getFile refused a %s: %s", what, exc)
            return (f"I couldn't fetch that {what} from Telegram ({exc.message}). "
                    "Please send it again, or a smaller one.")
        except NetworkError as exc:
            log.warning("getFile failed for a %s: %s", what, exc)
            return f"I couldn't fetch that {what} from Telegram. Please send it again."
        if tg_file.file_size is not None and tg_file.file_size > limit:
            return self._too_big(what, tg_file.file_size)
        try:
            data = bytes(await self._read(tg_file.download_as_bytearray))
        except Exception as exc:  # noqa: BLE001 - any failure means: ask for it again
            log.warning("could not download a %s: %s", what, exc)
            return f"I couldn't download that {what}. Please send it again."
        if len(data) > limit:
            return self._too_big(what, len(data))
        sniffed = sniff_image(data)
        if sniffed is None:
            return (f"That {what} looks broken: it isn't a PNG, JPEG, GIF or WebP image "
                    "I can read. Please send it again.")
        mime, ext = sniffed
        return Attachment(kind="image", data=data, filename=f"{what}{ext}", mime_type=mime)

    def _too_big(self, what: str, size: int) -> str:
        return (f"That {what} is too big ({_megabytes(size)}); I accept up to "
                f"{_megabytes(self.settings.max_upload_bytes)}. Please send a smaller one.")

    async def _read(self, request: Callable[[], Awaitable[T]]) -> T:
        """A Bot API read (``getFile``, a download), retried on network errors and flood waits."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return await request()
            except RetryAfter as exc:
                error: Exception = exc
                delay = retry_after_seconds(exc) + 0.1
            except (BadRequest, InvalidToken):
                raise
            except NetworkError as exc:
                delay, error = 0.5 * 2**attempt, exc
            if attempt == READ_ATTEMPTS - 1:
                raise error
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _keep_typing(self, chat_id: int) -> None:
        """Show "typing…" while an answer is being prepared (after a short grace period)."""
        await asyncio.sleep(TYPING_GRACE)
        while True:
            try:
                await self.sender.try_once(
                    lambda: self.bot.send_chat_action(chat_id, ChatAction.TYPING))
            except Forbidden:
                return
            except Exception as exc:  # noqa: BLE001 - a missing "typing…" is harmless
                log.debug("could not send a chat action to %s: %s", chat_id, exc)
            await asyncio.sleep(TYPING_EVERY)

    # --- replies that come later, and progress ---------------------------------------------

    def _later(self, chat_id: str, replies: Sequence[Reply]) -> None:
        """Replies after the answer (a finished job's results), from a job thread: stored in
        the outbox before this returns, then sent."""
        try:
            target = int(chat_id)
        except ValueError:
            return  # a console or CLI chat, not ours
        rendered = render(list(replies),
                          max_messages=self.settings.telegram_max_messages_per_update)
        try:
            self.delivery.enqueue(target, rendered.items)
        except Exception as exc:  # noqa: BLE001 - nothing to fall back on: say it loudly
            log.error("could not store %d later repl%s to chat %s (%s); they are lost",
                      len(replies), "y" if len(replies) == 1 else "ies", target,
                      error_line(exc))
            return
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the next start sends
                loop.call_soon_threadsafe(self._stored_later, target, rendered.handles)

    def _stored_later(self, chat_id: int, handles: Sequence[ProgressHandle]) -> None:
        for handle in handles:
            self._handles[handle.id] = handle
        if self._sender is not None:
            self._sender.wake(chat_id)

    def _on_sent(self, row: Outgoing, message_id: int | None) -> None:
        """A progress message is out: keep it in step with its handle."""
        if row.kind != "progress" or message_id is None or row.progress_id is None:
            return
        handle = self._handles.get(row.progress_id)
        if handle is None:
            return  # sent after a restart: the work it showed is gone
        chat_id, shown_id = row.chat_id, message_id

        async def edit(text: str) -> None:
            if handle.state().done and text == handle.render():
                # The final state must arrive: through the outbox, like any reply.
                await self.db(self.delivery.enqueue, chat_id,
                              [OutItem("edit", text, progress_id=handle.id)])
                self.sender.wake(chat_id)
                return
            try:
                await self.sender.try_once(lambda: self.bot.edit_message_text(
                    text, chat_id=chat_id, message_id=shown_id))
            except BadRequest as exc:
                if "not modified" not in exc.message.lower():
                    raise

        relay = ProgressRelay(handle, edit, interval=self.settings.telegram_progress_interval,
                              loop=asyncio.get_running_loop())
        task = asyncio.create_task(relay.run(row.text))
        self._background.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._background.discard(done)
            if self._handles.get(handle.id) is handle:
                del self._handles[handle.id]

        task.add_done_callback(finished)

