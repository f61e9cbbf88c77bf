"""The console channel: an interactive REPL, or one message per line when stdin is piped."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

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

EXIT_COMMANDS = {"/quit", "/exit"}


class ConsoleChannel:
    """Feeds lines to the :class:`Assistant` and prints what it answers.

    A word of the line that is the path of an image file sends that image with the message
    (``/remember alice ~/photos/alice.jpg``), as a photo with a caption would in Telegram.
    Images and documents that come back are written under ``<data_dir>/console`` and their
    paths printed.
    """

    def __init__(
        self,
        assistant: Assistant,
        *,
        out: TextIO | None = None,
        chat_id: str = "console",
        user_id: str = "console",
    ) -> None:
        self.assistant = assistant
        self.out = out or sys.stdout
        self.chat_id = chat_id
        self.user_id = user_id
        self.outbox = assistant.settings.data_dir / "console"
        self._pending: list[ProgressHandle] = []
        self._print_lock = threading.Lock()
        self._counter = 0
        assistant.add_listener(self._print_later)

    def send(self, text: str) -> list[Reply]:
        """Handle one line and print the replies."""
        text, attachments, problem = self._attachments(text)
        if problem:
            self._print(problem)
            return [TextReply(problem)]
        replies = self.assistant.handle(
            Message(chat_id=self.chat_id, user_id=self.user_id, text=text, channel="console",
                    attachments=attachments)
        )
        for reply in replies:
            self._print_reply(reply)
        return replies

    def _attachments(self, text: str) -> tuple[str, tuple[Attachment, ...], str | None]:
        """The line without its image paths, the images, and why one cannot be sent."""
        words, found = [], []
        limit = self.assistant.settings.max_upload_bytes
        for word in text.split(" "):
            path = Path(word).expanduser()
            if not word or "/" not in word and "." not in word or not path.is_file():
                words.append(word)
                continue
            if path.stat().st_size > limit:
                return text, (), (f"{path} is too big ({path.stat().st_size:,} bytes); I "
                                  f"accept up to {limit:,} (AMLBOT_MAX_UPLOAD_BYTES).")
            data = path.read_bytes()
            sniffed = sniff_image(data)
            if sniffed is None:
                words.append(word)  # a file, but not an image: part of the text
                continue
            found.append(Attachment(kind="image", data=data, filename=path.name,
                                    mime_type=sniffed[0]))
        return " ".join(words).strip(), tuple(found), None

    def _print_later(self, chat_id: str, replies: Sequence[Reply]) -> None:
        """Print replies that arrive after the message was answered (job results)."""
        if chat_id == self.chat_id:
            for reply in replies:
                self._print_reply(reply)

    def _print(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.out, flush=True)

    def _print_reply(self, reply: Reply) -> None:
        if isinstance(reply, TextReply | ProgressEdit):
            self._print(reply.text)
        elif isinstance(reply, ImageReply | DocumentReply):
            path = self._save(reply.data, reply.filename)
            label = "image" if isinstance(reply, ImageReply) else "file"
            caption = f" {reply.caption}" if reply.caption else ""
            self._print(f"[{label} saved to {path}]{caption}")
        elif isinstance(reply, ProgressReply):
            self._pending.append(reply.handle)
            reply.handle.subscribe(self._progress_printer(reply.handle))

    def _progress_printer(self, handle: ProgressHandle) -> Callable[[ProgressState], None]:
        last = {"at": 0.0, "pct": -1}

        def show(state: ProgressState) -> None:
            pct = int(state.fraction * 100)
            now = time.monotonic()
            if not state.done and (now - last["at"] < 1.0 or pct == last["pct"]):
                return
            last["at"], last["pct"] = now, pct
            self._print(handle.render())

        return show

    def _save(self, data: bytes, filename: str) -> Path:
        self.outbox.mkdir(parents=True, exist_ok=True)
        self._counter += 1
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[:80]
        path = self.outbox / f"{time.strftime('%Y%m%d-%H%M%S')}-{self._counter}-{safe}"
        path.write_bytes(data)
        return path.resolve()

    def wait_for_progress(self, timeout: float | None = None) -> None:
        """Block until every progress handle shown so far is done (or ``timeout`` passes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(not h.done for h in self._pending):
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def run_script(self, lines: TextIO, wait: float | None = None) -> None:
        """Non-interactive mode: one message per input line until EOF or /quit."""
        for raw in lines:
            line = raw.rstrip("\r\n")
            if line.strip().lower() in EXIT_COMMANDS:
                break
            self.send(line)
        self.wait_for_progress(wait)

    def run_interactive(self) -> None:
        """The REPL, with line editing and a history file under the data dir."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.patch_stdout import patch_stdout

        history = self.assistant.settings.path("console_history")
        session: PromptSession[str] = PromptSession(history=FileHistory(str(history)))
        self._print("amlbot — type a message, /help for commands, /quit to leave.")
        with patch_stdout(raw=True):
            while True:
                try:
                    line = session.prompt("you> ")
                except (EOFError, KeyboardInterrupt):
                    break
                if line.strip().lower() in EXIT_COMMANDS:
                    break
                self.send(line)
