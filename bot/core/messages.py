"""What flows through the core: an incoming :class:`Message` and the :class:`Reply` kinds."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Attachment:
    """A file the user sent (an image, usually), already downloaded and size-checked."""

    kind: Literal["image", "document"]
    data: bytes
    filename: str = "upload"
    mime_type: str | None = None


@dataclass(frozen=True)
class Message:
    """One incoming message, whatever the channel."""

    chat_id: str
    user_id: str
    text: str = ""
    channel: str = "console"
    attachments: tuple[Attachment, ...] = ()
    username: str | None = None

    @property
    def is_command(self) -> bool:
        return self.text.lstrip().startswith("/")


@dataclass(frozen=True)
class TextReply:
    """Plain text. Channels split it when it is longer than they allow."""

    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True)
class ImageReply:
    """A PNG (or GIF) image with a caption."""

    data: bytes
    caption: str = ""
    filename: str = "image.png"
    kind: Literal["image"] = "image"


@dataclass(frozen=True)
class DocumentReply:
    """A file to download (a report, a model card...)."""

    data: bytes
    filename: str
    caption: str = ""
    kind: Literal["document"] = "document"


ProgressListener = Callable[["ProgressState"], None]


@dataclass(frozen=True)
class ProgressState:
    """A snapshot of a progress handle, as channels render it."""

    title: str
    fraction: float
    detail: str
    done: bool
    failed: bool


@dataclass
class ProgressHandle:
    """A live progress indicator that work updates and channels render (one message, edited).

    Updates may come from any thread; listeners are called synchronously and must not block.
    """

    title: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    fraction: float = 0.0
    detail: str = ""
    done: bool = False
    failed: bool = False
    updated_at: float = field(default_factory=time.monotonic)
    _listeners: list[ProgressListener] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def subscribe(self, listener: ProgressListener) -> None:
        """Call ``listener`` with every later state (and once now)."""
        with self._lock:
            self._listeners.append(listener)
        listener(self.state())

    def state(self) -> ProgressState:
        return ProgressState(self.title, self.fraction, self.detail, self.done, self.failed)

    def update(self, fraction: float, detail: str = "") -> None:
        """Report progress in [0, 1] with an optional one-line detail."""
        self._set(fraction=min(max(float(fraction), 0.0), 1.0), detail=detail)

    def finish(self, detail: str = "done", failed: bool = False) -> None:
        """Mark the work finished (or failed); the final state is always delivered."""
        self._set(fraction=1.0 if not failed else self.fraction, detail=detail, done=True,
                  failed=failed)

    def _set(self, **changes: object) -> None:
        with self._lock:
            if self.done:
                return
            for key, value in changes.items():
                setattr(self, key, value)
            self.updated_at = time.monotonic()
            listeners = list(self._listeners)
        state = self.state()
        for listener in listeners:
            listener(state)

    def render(self, width: int = 20) -> str:
        """A text progress bar, e.g. ``Training ▕██████░░░░▏ 60% epoch 3/5``."""
        filled = round(self.fraction * width)
        bar = "█" * filled + "░" * (width - filled)
        mark = " ✗" if self.failed else (" ✓" if self.done else "")
        detail = f" {self.detail}" if self.detail else ""
        return f"{self.title} ▕{bar}▏ {self.fraction:4.0%}{mark}{detail}"


@dataclass
class LiveText(ProgressHandle):
    """Text written while the user watches (a generated answer): one message, edited as it
    grows, like a progress bar. ``title`` is what shows before the first words ("writing an
    answer… number 2 in the queue"); :meth:`write` replaces the text so far."""

    def note(self, title: str) -> None:
        """Change what shows while there is no text yet."""
        self._set(title=title)

    def write(self, text: str) -> None:
        self._set(detail=text)

    def render(self, width: int = 20) -> str:
        if not self.detail:
            return self.title
        return self.detail if self.done else f"{self.detail} …"


@dataclass(frozen=True)
class ProgressReply:
    """A reply whose message the channel keeps editing as ``handle`` changes."""

    handle: ProgressHandle
    kind: Literal["progress"] = "progress"

    @property
    def text(self) -> str:
        return self.handle.render()


@dataclass(frozen=True)
class ProgressEdit:
    """The last word on a progress message sent earlier, found by its handle's ``progress_id``
    (a job's is ``job-<id>``): the channel edits that message to ``text``, or sends ``text``
    when it no longer knows the message (after a restart, say)."""

    progress_id: str
    text: str
    kind: Literal["progress_edit"] = "progress_edit"


Reply = TextReply | ImageReply | DocumentReply | ProgressReply | ProgressEdit


def reply_text(reply: Reply) -> str:
    """A one-line text rendering of any reply, for storage and text-only channels."""
    if isinstance(reply, TextReply):
        return reply.text
    if isinstance(reply, ProgressReply | ProgressEdit):
        return reply.text
    if isinstance(reply, ImageReply):
        return f"[image {reply.filename}] {reply.caption}".strip()
    return f"[document {reply.filename}] {reply.caption}".strip()


_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF87a", "image/gif", ".gif"),
    (b"GIF89a", "image/gif", ".gif"),
)


def sniff_image(data: bytes) -> tuple[str, str] | None:
    """``(mime type, extension)`` when ``data`` starts like an image we accept, else None."""
    for signature, mime, ext in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return mime, ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return None
