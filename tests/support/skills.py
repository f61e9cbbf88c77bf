"""Skills that exist only for tests, loaded through ``AMLBOT_EXTRA_SKILLS=module:factory``.

Each class is its own factory: ``SlowSkill(services) -> Skill``.
"""

from __future__ import annotations

import threading
import time

from bot.core.messages import (
    DocumentReply,
    ImageReply,
    ProgressHandle,
    ProgressReply,
    Reply,
    TextReply,
)
from bot.skills.base import BaseSkill, Command, Request

SLOW_SECONDS = 3.0


def long_text(total: int = 10_000) -> str:
    """A deterministic multi-line text of exactly ``total`` characters.

    Lines of varied length, one of them longer than a Telegram message (4096), so a channel
    has to split at line boundaries and hard-split that line.
    """
    lines: list[str] = []
    size = 0
    index = 0
    while size < total:
        index += 1
        length = 4500 if index == 7 else 20 + (index * 37) % 180
        line = f"line {index}: " + "".join("abcdefghij klmnopqrst"[(index + k) % 21]
                                          for k in range(length))
        lines.append(line)
        size += len(line) + 1
    text = "\n".join(lines)
    return text[:total]


class SlowSkill(BaseSkill):
    """``/slow``: sleeps a few seconds (a stand-in for real work), then answers."""

    name = "test.slow"
    description = "Sleeps, then answers (tests only)."
    commands = (Command("slow", "Take a few seconds to answer."),)

    def handle(self, request: Request) -> list[Reply]:
        time.sleep(SLOW_SECONDS)
        return [TextReply("slow done")]


class LongSkill(BaseSkill):
    """``/long``: a 10,000-character multi-line answer."""

    name = "test.long"
    description = "A very long answer (tests only)."
    commands = (Command("long", "Answer with 10,000 characters."),)

    def handle(self, request: Request) -> list[Reply]:
        return [TextReply(long_text())]


class MediaSkill(BaseSkill):
    """``/image``, ``/doc`` and ``/progress``: every non-text reply kind."""

    name = "test.media"
    description = "Image, document and progress replies (tests only)."
    commands = (
        Command("image", "Answer with a picture."),
        Command("doc", "Answer with a file."),
        Command("progress", "Show a progress bar for about a second."),
    )

    def handle(self, request: Request) -> list[Reply]:
        if request.command == "image":
            from tests.support.fake_bot_api import png_bytes

            return [ImageReply(png_bytes(16, 16), caption="a gradient", filename="grad.png")]
        if request.command == "doc":
            return [DocumentReply(b"col1,col2\n1,2\n", filename="report.csv",
                                  caption="your report")]
        handle = ProgressHandle("Working")

        def work() -> None:
            for step in range(1, 21):
                time.sleep(0.05)
                handle.update(step / 20, f"step {step}/20")
            handle.finish("all done")

        threading.Thread(target=work, daemon=True).start()
        return [ProgressReply(handle)]
