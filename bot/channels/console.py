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
    DocumentReply,
    ImageReply,
    Message,
    ProgressHandle,
    ProgressReply,
    ProgressState,
    Reply,
    TextReply,
)

EXIT_COMMANDS = {"/quit", "/exit"}


class ConsoleChannel:
    """Feeds lines to the :class:`Assistant` and prints what it answers.

    Images and documents are written under ``<data_dir>/console`` and their paths printed.
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
        replies = self.assistant.handle(
            Message(chat_id=self.chat_id, user_id=self.user_id, text=text, channel="console")
        )
        for reply in replies:
            self._print_reply(reply)
        return replies

    def _print_later(self, chat_id: str, replies: Sequence[Reply]) -> None:
        """Print replies that arrive after the message was answered (job results)."""
        if chat_id == self.chat_id:
            for reply in replies:
                self._print_reply(reply)

    def _print(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.out, flush=True)

    def _print_reply(self, reply: Reply) -> None:
        if isinstance(reply, TextReply):
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
