"""The channel-agnostic core: messages in, replies out."""

from typing import TYPE_CHECKING, Any

from bot.core.messages import (
    Attachment,
    DocumentReply,
    ImageReply,
    Message,
    ProgressHandle,
    ProgressReply,
    Reply,
    TextReply,
)

if TYPE_CHECKING:
    from bot.core.assistant import Assistant


def __getattr__(name: str) -> Any:
    # Imported lazily: skills import the message types, and the assistant imports the skills.
    if name == "Assistant":
        from bot.core.assistant import Assistant

        return Assistant
    raise AttributeError(name)


__all__ = [
    "Assistant",
    "Attachment",
    "DocumentReply",
    "ImageReply",
    "Message",
    "ProgressHandle",
    "ProgressReply",
    "Reply",
    "TextReply",
]
