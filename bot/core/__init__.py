"""The channel-agnostic core: messages in, replies out (``bot.app`` assembles an Assistant)."""

from bot.core.assistant import Assistant
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
