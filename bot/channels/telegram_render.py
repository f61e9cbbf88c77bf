"""Replies as Telegram messages: text split to fit, captions that fit, and a bound on how many
messages one answer may take (the rest goes out whole, as a ``.txt`` document)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.messages import (
    DocumentReply,
    ImageReply,
    ProgressEdit,
    ProgressHandle,
    ProgressReply,
    Reply,
    TextReply,
    reply_text,
)
from bot.storage.delivery import OutItem

TEXT_LIMIT = 4096  # Telegram's limit for one message, in UTF-16 code units
CAPTION_LIMIT = 1024
ANSWER_FILE = "answer.txt"


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


def split_caption(caption: str) -> tuple[str, str]:
    """A caption Telegram accepts, and what does not fit (sent as text after the file)."""
    if telegram_length(caption) <= CAPTION_LIMIT:
        return caption, ""
    first = split_text(caption, CAPTION_LIMIT)[0]
    return first, caption[len(first):]


@dataclass(frozen=True)
class Rendered:
    """The messages an answer becomes, and the progress handles they show."""

    items: list[OutItem]
    handles: list[ProgressHandle]


def render(replies: Sequence[Reply], *, max_messages: int) -> Rendered:
    """The Telegram messages for ``replies``: at most ``max_messages`` of them.

    When the replies need more, the first ``max_messages - 1`` go out as usual and the last is
    a ``.txt`` document holding the whole answer, its caption saying what did not fit.
    """
    if max_messages < 2:
        raise ValueError("max_messages must be at least 2")
    items: list[OutItem] = []
    handles: list[ProgressHandle] = []
    for index, reply in enumerate(replies):
        items.extend(_items(index, reply))
        if isinstance(reply, ProgressReply):
            handles.append(reply.handle)
    if len(items) > max_messages:
        items = items[:max_messages - 1] + [_answer_file(replies, items, max_messages - 1)]
    return Rendered(items, handles)


def _text_items(text: str, index: int) -> list[OutItem]:
    # Telegram refuses blank messages.
    return [OutItem("text", chunk, reply=index) for chunk in split_text(text) if chunk.strip()]


def _items(index: int, reply: Reply) -> list[OutItem]:
    if isinstance(reply, TextReply):
        return _text_items(reply.text, index)
    if isinstance(reply, ProgressReply):
        return [OutItem("progress", reply.handle.render(), progress_id=reply.handle.id,
                        reply=index)]
    if isinstance(reply, ProgressEdit):
        chunks = [chunk for chunk in split_text(reply.text) if chunk.strip()]
        if not chunks:
            return []
        return [OutItem("edit", chunks[0], progress_id=reply.progress_id, reply=index),
                *_text_items("".join(chunks[1:]), index)]
    if isinstance(reply, ImageReply):
        # send_photo would show only the first frame of an animation.
        kind = "animation" if reply.filename.lower().endswith(".gif") else "photo"
        caption, rest = split_caption(reply.caption)
        return [OutItem(kind, caption, filename=reply.filename, data=reply.data, reply=index),
                *_text_items(rest, index)]
    if isinstance(reply, DocumentReply):
        caption, rest = split_caption(reply.caption)
        return [OutItem("document", caption, filename=reply.filename, data=reply.data,
                        reply=index), *_text_items(rest, index)]
    raise TypeError(f"not a reply: {reply!r}")


def _answer_file(replies: Sequence[Reply], items: Sequence[OutItem], shown: int) -> OutItem:
    """The document that carries an answer too long for the messages it may take."""
    whole = "\n\n".join(reply_text(reply) for reply in replies)
    files = sum(1 for item in items[shown:] if item.data is not None)
    caption = (f"This answer would take {len(items)} messages, so I sent the first {shown}. "
               f"All of it ({len(whole):,} characters) is in {ANSWER_FILE}.")
    if files:
        caption += (" 1 picture or file did not fit." if files == 1
                    else f" {files} pictures or files did not fit.")
    return OutItem("document", caption, filename=ANSWER_FILE, data=whole.encode("utf-8"))
