"""Persistence: users, chats, the append-only event log, jobs and their artifacts."""

from bot.storage.models import Artifact, Base, Chat, Event, Job, User
from bot.storage.store import Store

__all__ = ["Artifact", "Base", "Chat", "Event", "Job", "Store", "User"]
