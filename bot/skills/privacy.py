"""``/forget_me``: delete what amlbot keeps about a user, after they confirm."""

from __future__ import annotations

import threading
import time

from bot.core.messages import Reply, TextReply
from bot.skills.base import BaseSkill, Command, Request, Services, skills

#: Seconds a ``/forget_me`` waits for its ``/forget_me yes``.
CONFIRM_WITHIN = 600.0


@skills.register("core.privacy")
class ForgetMeSkill(BaseSkill):
    """Deletes a user's messages, the replies to them, their jobs and files, and what tools
    remember in the chats only they use, once they confirm."""

    name = "core.privacy"
    description = "Your data: delete what I keep about you."
    commands = (Command("forget_me", "Delete everything I keep about you (asks first).",
                        usage="/forget_me, then /forget_me yes"),)

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self._asked: dict[str, float] = {}
        self._lock = threading.Lock()

    def handle(self, request: Request) -> list[Reply]:
        user = request.message.user_id
        now = time.monotonic()
        with self._lock:
            asked = self._asked.pop(user, None)
            confirmed = (request.args.strip().lower() in ("yes", "y")
                         and asked is not None and now - asked <= CONFIRM_WITHIN)
            if not confirmed:
                self._asked[user] = now
        if not confirmed:
            return [TextReply(
                "This deletes everything I keep about you: your messages and my replies in "
                "every chat, your finished jobs with their results and files, and what the "
                "tools remember (enrolled faces) in the chats only you use. It cannot be "
                f"undone. Send /forget_me yes within {CONFIRM_WITHIN / 60:.0f} minutes to "
                "confirm.")]
        request.extra["unrecorded"] = True  # storing this exchange would undo it
        counts = self.services.store.forget_user(user)
        jobs = self.services.jobs.records.forget_user(user) if self.services.jobs else 0
        return [TextReply(
            f"Done: I deleted {counts['events']:,} stored messages and replies, {jobs} jobs "
            f"and {counts['memories']} tool memories of yours"
            + (f", and {counts['telegram_messages']:,} delivered Telegram messages"
               if counts.get("telegram_messages") else "")
            + ". Jobs still running are not deleted: /cancel them and ask again.")]
