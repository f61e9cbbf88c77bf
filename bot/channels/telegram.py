"""The Telegram channel: python-telegram-bot v22 in front of the :class:`Assistant`.

The adapter is thin. It turns an update into a :class:`Message`, runs the synchronous
``Assistant.handle`` on a thread pool (so no chat waits for another), and sends the replies:
long text split at line boundaries, images through ``sendPhoto``, files through
``sendDocument``, progress as one message edited in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import urlparse

from telegram import Bot, BotCommand, InputFile, Update
from telegram import Message as TgMessage
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, TypeHandler

from bot.core.assistant import Assistant
from bot.core.messages import (
    Attachment,
    DocumentReply,
    ImageReply,
    Message,
    ProgressEdit,
    ProgressHandle,
    ProgressReply,
    ProgressState,
    Reply,
    TextReply,
    sniff_image,
)
from bot.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

TEXT_LIMIT = 4096  # Telegram's limit for one message, in UTF-16 code units
CAPTION_LIMIT = 1024
TYPING_GRACE = 0.5  # instant answers need no "typing…" (and it would double the flood count)
TYPING_EVERY = 4.0  # Telegram shows the action for about 5 s
SEND_ATTEMPTS = 4
ALLOWED_UPDATES = ["message", "edited_message"]
_MENU_COMMAND = re.compile(r"[a-z0-9_]{1,32}")  # what setMyCommands accepts

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


# --- pure helpers ------------------------------------------------------------------------

def telegram_length(text: str) -> int:
    """The length Telegram counts: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut ``text`` into chunks Telegram accepts, at line boundaries where possible.

    ``"".join(chunks) == text`` always holds and every chunk is at most ``limit`` UTF-16
    units. A line longer than ``limit`` is cut at its last space that keeps the piece at least
    half full, else hard.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 (one astral character)")
    chunks: list[str] = []
    current: list[str] = []
    current_len = 0
    for line in text.splitlines(keepends=True):
        size = telegram_length(line)
        if current_len + size <= limit:
            current.append(line)
            current_len += size
            continue
        if current:
            chunks.append("".join(current))
            current, current_len = [], 0
        if size <= limit:
            current, current_len = [line], size
            continue
        pieces = _split_long_line(line, limit)
        chunks.extend(pieces[:-1])
        current, current_len = [pieces[-1]], telegram_length(pieces[-1])
    if current:
        chunks.append("".join(current))
    return chunks


def _split_long_line(line: str, limit: int) -> list[str]:
    pieces: list[str] = []
    start = 0
    while start < len(line):
        end, used = start, 0
        while end < len(line):
            width = 2 if ord(line[end]) > 0xFFFF else 1
            if used + width > limit:
                break
            used += width
            end += 1
        if end < len(line):
            space = line.rfind(" ", start, end)
            if space >= start + (end - start) // 2:
                end = space + 1
        pieces.append(line[start:end])
        start = end
    return pieces


def _split_caption(caption: str) -> tuple[str, str]:
    """A caption Telegram accepts, and what does not fit (sent as text after the file)."""
    if telegram_length(caption) <= CAPTION_LIMIT:
        return caption, ""
    first = split_text(caption, CAPTION_LIMIT)[0]
    return first, caption[len(first):]


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.0f} kB"


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

class _ChatLocks:
    """One lock per chat, so a chat's messages are answered in order (and others in parallel)."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, chat_id: int) -> AsyncIterator[None]:
        lock, users = self._locks.get(chat_id, (asyncio.Lock(), 0))
        self._locks[chat_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[chat_id]
            if users <= 1:
                del self._locks[chat_id]
            else:
                self._locks[chat_id] = (lock, users - 1)


class TelegramChannel:
    """Connects the :class:`Assistant` to a Bot API server (Telegram's, or any other)."""

    def __init__(self, assistant: Assistant, settings: Settings | None = None) -> None:
        self.assistant = assistant
        self.settings = settings or assistant.settings
        self._pool = ThreadPoolExecutor(
            max_workers=self.settings.telegram_max_concurrent_updates,
            thread_name_prefix="amlbot-telegram",
        )
        self._locks = _ChatLocks()
        self._background: set[asyncio.Task[None]] = set()
        self._remove_listener: Callable[[], None] | None = None

    # --- running ---------------------------------------------------------------------

    def build_application(self) -> Application:  # type: ignore[type-arg]
        """The PTB application: rate limited, concurrent, with one non-blocking handler."""
        token = self.settings.telegram_token
        if token is None or not token.get_secret_value():
            raise InvalidToken("AMLBOT_TELEGRAM_TOKEN is not set")
        application = (
            ApplicationBuilder()
            .token(token.get_secret_value())
            .base_url(self.settings.telegram_base_url)
            .base_file_url(self.settings.telegram_base_file_url)
            .concurrent_updates(self.settings.telegram_max_concurrent_updates)
            .rate_limiter(AIORateLimiter(max_retries=3))
            .post_init(self._post_init)
            .post_shutdown(self._post_shutdown)
            .build()
        )
        application.add_handler(TypeHandler(Update, self._on_update, block=False))
        application.add_error_handler(self._on_error)
        return application

    def run_polling(self) -> None:
        """Long-poll ``getUpdates`` until SIGINT/SIGTERM."""
        self.build_application().run_polling(
            poll_interval=self.settings.telegram_poll_interval,
            timeout=self.settings.telegram_poll_timeout,
            allowed_updates=ALLOWED_UPDATES,
            bootstrap_retries=3,
        )

    def run_webhook(self, webhook_url: str, *, listen: str, port: int) -> None:
        """Serve a webhook on ``listen:port`` and register ``webhook_url`` with Telegram.

        A fresh secret token is set on every start, so forged requests are refused.
        """
        self.build_application().run_webhook(
            listen=listen,
            port=port,
            url_path=urlparse(webhook_url).path.lstrip("/"),
            webhook_url=webhook_url,
            secret_token=secrets.token_urlsafe(32),
            allowed_updates=ALLOWED_UPDATES,
            bootstrap_retries=3,
        )

    async def _post_init(self, application: Application) -> None:  # type: ignore[type-arg]
        me = application.bot
        loop = asyncio.get_running_loop()

        def later(chat_id: str, replies: Sequence[Reply]) -> None:
            # Runs on a job thread: hand the replies to the loop, never wait for them.
            try:
                target = int(chat_id)
            except ValueError:
                return  # a console or CLI chat, not ours
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(
                    self._deliver_later(me, target, list(replies)), loop
                )

        self._remove_listener = self.assistant.add_listener(later)
        log.info("telegram bot @%s is up (id %s)", me.username, me.id)
        commands = [
            BotCommand(command.name, command.help[:256])
            for command in self.assistant.router.visible_commands()
            if _MENU_COMMAND.fullmatch(command.name) and len(command.help) >= 3
        ]
        try:
            await self._call(lambda: me.set_my_commands(commands[:100]))
        except Exception:  # noqa: BLE001 - the menu is a nicety; the bot works without it
            log.warning("could not set the bot's command menu", exc_info=True)

    async def _post_shutdown(self, _application: Application) -> None:  # type: ignore[type-arg]
        if self._remove_listener is not None:
            self._remove_listener()
        for task in list(self._background):
            task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("error while handling an update", exc_info=context.error)

    # --- one update --------------------------------------------------------------------

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        bot = context.bot
        if update.edited_message is not None:
            edited_chat = update.edited_message.chat_id
            await self._call(lambda: bot.send_message(
                edited_chat,
                "I only answer new messages: send it again if you want a fresh answer.",
            ))
            return
        tg_message = update.message
        if tg_message is None:
            return
        chat_id = tg_message.chat_id
        async with self._locks.hold(chat_id):
            typing = asyncio.create_task(self._keep_typing(bot, chat_id))
            try:
                incoming = await self._to_message(bot, tg_message)
                if incoming is None:
                    return
                if isinstance(incoming, str):
                    replies: list[Reply] = [TextReply(incoming)]
                else:
                    loop = asyncio.get_running_loop()
                    replies = await loop.run_in_executor(
                        self._pool, self.assistant.handle, incoming
                    )
            finally:
                typing.cancel()
            await self._deliver(bot, chat_id, replies)

    async def _to_message(self, bot: Bot, tg: TgMessage) -> Message | str | None:
        """Our :class:`Message`, or the text to answer right away, or None to stay silent."""
        if tg.photo:
            image = await self._download_photo(bot, tg)
            if isinstance(image, str):
                return image
            return self._message(tg, tg.caption or "", (image,))
        document = tg.document
        if document is not None and (document.mime_type or "").startswith("image/"):
            image = await self._download_image(bot, document.file_id, document.file_size,
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

    async def _download_photo(self, bot: Bot, tg: TgMessage) -> Attachment | str:
        limit = self.settings.max_upload_bytes
        fitting = [size for size in tg.photo if size.file_size is None or size.file_size <= limit]
        if not fitting:
            return self._too_big("photo", min(size.file_size or 0 for size in tg.photo))
        best = fitting[-1]  # Telegram lists the sizes from small to large
        return await self._download_image(bot, best.file_id, best.file_size, what="photo")

    async def _download_image(
        self, bot: Bot, file_id: str, declared: int | None, *, what: str
    ) -> Attachment | str:
        """The image behind ``file_id``, size-checked before and after the download."""
        limit = self.settings.max_upload_bytes
        if declared is not None and declared > limit:
            return self._too_big(what, declared)
        try:
            tg_file = await self._call(lambda: bot.get_file(file_id))
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
            data = bytes(await self._call(tg_file.download_as_bytearray))
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

    # --- sending ---------------------------------------------------------------------

    async def _deliver(self, bot: Bot, chat_id: int, replies: list[Reply]) -> None:
        for reply in replies:
            try:
                await self._send_reply(bot, chat_id, reply)
            except Forbidden:
                log.info("chat %s blocked the bot; dropping its replies", chat_id)
                return
            except Exception:  # noqa: BLE001 - one failed reply must not eat the others
                log.exception("could not send a %s reply to chat %s", reply.kind, chat_id)

    async def _deliver_later(self, bot: Bot, chat_id: int, replies: list[Reply]) -> None:
        """Replies that arrive after their message was answered (a finished job's results)."""
        async with self._locks.hold(chat_id):
            await self._deliver(bot, chat_id, replies)

    async def _send_reply(self, bot: Bot, chat_id: int, reply: Reply) -> None:
        if isinstance(reply, TextReply | ProgressEdit):
            await self._send_text(bot, chat_id, reply.text)
        elif isinstance(reply, ImageReply) and reply.filename.lower().endswith(".gif"):
            # send_photo would show only the first frame of an animation.
            caption, rest = _split_caption(reply.caption)
            await self._call(lambda: bot.send_animation(
                chat_id, animation=InputFile(reply.data, filename=reply.filename),
                caption=caption,
            ))
            await self._send_text(bot, chat_id, rest)
        elif isinstance(reply, ImageReply):
            caption, rest = _split_caption(reply.caption)
            await self._call(lambda: bot.send_photo(
                chat_id, photo=InputFile(reply.data, filename=reply.filename), caption=caption
            ))
            await self._send_text(bot, chat_id, rest)
        elif isinstance(reply, DocumentReply):
            caption, rest = _split_caption(reply.caption)
            await self._call(lambda: bot.send_document(
                chat_id, document=InputFile(reply.data, filename=reply.filename),
                caption=caption,
            ))
            await self._send_text(bot, chat_id, rest)
        elif isinstance(reply, ProgressReply):
            await self._start_progress(bot, chat_id, reply.handle)

    async def _send_text(self, bot: Bot, chat_id: int, text: str) -> None:
        for chunk in split_text(text):
            if chunk.strip():  # Telegram refuses blank messages
                await self._call(functools.partial(bot.send_message, chat_id, chunk))

    async def _start_progress(self, bot: Bot, chat_id: int, handle: ProgressHandle) -> None:
        shown = handle.render()
        sent = await self._call(lambda: bot.send_message(chat_id, shown))

        async def edit(text: str) -> None:
            try:
                await self._call(lambda: bot.edit_message_text(
                    text, chat_id=chat_id, message_id=sent.message_id
                ))
            except BadRequest as exc:
                if "not modified" not in exc.message.lower():
                    raise

        relay = ProgressRelay(handle, edit, interval=self.settings.telegram_progress_interval,
                              loop=asyncio.get_running_loop())
        task = asyncio.create_task(relay.run(shown))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _keep_typing(self, bot: Bot, chat_id: int) -> None:
        """Show "typing…" while an answer is being prepared (after a short grace period)."""
        await asyncio.sleep(TYPING_GRACE)
        while True:
            try:
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
            except Forbidden:
                return
            except Exception as exc:  # noqa: BLE001 - a missing "typing…" is harmless
                log.debug("could not send a chat action to %s: %s", chat_id, exc)
            await asyncio.sleep(TYPING_EVERY)

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        """Run one Bot API call, retrying network errors and flood waits with back-off."""
        for attempt in range(SEND_ATTEMPTS):
            try:
                return await request()
            except RetryAfter as exc:
                wait = exc.retry_after
                delay = (wait.total_seconds() if isinstance(wait, dt.timedelta)
                         else float(wait)) + 0.1
                error: Exception = exc
            except (BadRequest, InvalidToken):
                raise
            except NetworkError as exc:  # TimedOut included; a retried send may rarely repeat
                delay, error = 0.5 * 2**attempt, exc
            if attempt == SEND_ATTEMPTS - 1:
                raise error
            log.warning("Bot API call failed (%s); retrying in %.1f s", error, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")
