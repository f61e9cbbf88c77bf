"""The router: slash commands go to the skill that declares them, free text goes through NLU."""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Iterable

from bot.core.messages import Message
from bot.core.skill import Command, Request, Skill
from nlp_core.nlu import NoUnderstanding, Understander

_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)


class Router:
    """Maps a message to the skill that should answer it."""

    def __init__(
        self,
        skills: Iterable[Skill] = (),
        understander: Understander | None = None,
        *,
        fallback: str = "core.fallback",
        unknown_command: str = "core.unknown_command",
        clarify: str | None = None,
        intent_threshold: float = 0.0,
    ) -> None:
        self.skills: dict[str, Skill] = {}
        self.by_command: dict[str, tuple[Skill, Command]] = {}
        self.by_intent: dict[str, Skill] = {}
        self._late_loaded = False
        self._late_lock = threading.Lock()
        for skill in skills:
            self.add(skill)
        self.understander: Understander = understander or NoUnderstanding()
        self.fallback = fallback
        self.unknown_command = unknown_command
        self.clarify = clarify
        self.intent_threshold = intent_threshold

    def add(self, skill: Skill) -> None:
        """Register a skill's commands and intents (later skills win on conflicts)."""
        self.skills[skill.name] = skill
        for command in skill.commands:
            self.by_command[command.name.lower()] = (skill, command)
        for intent in skill.intents:
            self.by_intent[intent] = skill

    def _load_late_commands(self) -> None:
        """Add the skills' late commands once; a declared command keeps its skill."""
        with self._late_lock:
            if self._late_loaded:
                return
            for skill in list(self.skills.values()):
                for command in skill.late_commands():
                    self.by_command.setdefault(command.name.lower(), (skill, command))
            self._late_loaded = True

    def find_command(self, name: str) -> tuple[Skill, Command] | None:
        """The skill and declaration of ``/name``, or None."""
        found = self.by_command.get(name.lower())
        if found is None and not self._late_loaded:
            self._load_late_commands()
            found = self.by_command.get(name.lower())
        return found

    def parse(self, message: Message) -> Request:
        """Split a command from its arguments, or run NLU on free text."""
        text = message.text.strip()
        match = _COMMAND.match(text)
        if match:
            return Request(message, text, command=match.group(1).lower(),
                           args=(match.group(2) or "").strip())
        if not text:
            return Request(message, text)
        return Request(message, text, understanding=self.understander.understand(text))

    def skill_for(self, request: Request) -> Skill:
        """The skill that answers ``request``."""
        if request.command is not None:
            found = self.find_command(request.command)
            return found[0] if found else self.skills[self.unknown_command]
        understanding = request.understanding
        if understanding is None:
            return self.skills[self.fallback]
        if (
            self.clarify
            and understanding.intent != "unknown"
            and understanding.confidence < self.intent_threshold
            and self.clarify in self.skills
        ):
            return self.skills[self.clarify]
        intent = understanding.intent
        if intent in self.by_intent:
            return self.by_intent[intent]
        family = intent.split(":", 1)[0] + ":*"
        if family in self.by_intent:
            return self.by_intent[family]
        return self.skills[self.fallback]

    def suggest_commands(self, name: str, n: int = 3) -> list[str]:
        """Known commands that look like ``name`` (for typos)."""
        self._load_late_commands()
        return difflib.get_close_matches(name.lower(), list(self.by_command), n=n, cutoff=0.5)

    def visible_commands(self) -> list[Command]:
        """Every command, in registration order, for ``/help``."""
        self._load_late_commands()
        return [command for _, command in self.by_command.values()]
