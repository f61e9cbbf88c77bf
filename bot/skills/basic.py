"""Skills that need no NLP: greeting, help, about, history, unknown commands and fallbacks."""

from __future__ import annotations

import platform
import time

from bot import __version__
from bot.core.messages import Reply, TextReply
from bot.skills.base import BaseSkill, Command, Request, skills

ABOUT = (
    "amlbot is an assistant for machine-learning practitioners, grown out of the HSE "
    "'Advanced Machine Learning' specialization. Ask it programming questions (it predicts "
    "the language and tags and finds similar StackOverflow threads), chat with it, or run "
    "course tools as background jobs."
)


@skills.register("core.start")
class StartSkill(BaseSkill):
    """Greets a new user and says what to try first."""

    name = "core.start"
    description = "Greeting and first steps."
    commands = (Command("start", "Say hello and show what I can do."),)

    def handle(self, request: Request) -> list[Reply]:
        who = request.message.username or "there"
        return [TextReply(
            f"Hi {who}! I'm amlbot.\n"
            "Ask me a programming question (\"How to sort a dict by value in python?\"), "
            "just chat, or type /help to see every command."
        )]


@skills.register("core.help")
class HelpSkill(BaseSkill):
    """Lists every command, generated from the skills' declarations."""

    name = "core.help"
    description = "The list of commands."
    commands = (Command("help", "List every command.", usage="/help [command]"),)

    def handle(self, request: Request) -> list[Reply]:
        router = self.services.router
        words = request.args.replace("/", " ").split()
        if words:
            wanted = words[0].lower()
            found = router.find_command(wanted)
            if found is None:
                return [TextReply(f"There is no /{wanted} command. Type /help for the list.")]
            skill, command = found
            usage = command.usage or f"/{command.name}"
            heavy = "\n(This is a heavy command: only allowed users may run it.)" \
                if command.heavy else ""
            return [TextReply(f"{usage}\n{command.help}\n— {skill.description}{heavy}")]
        lines = ["Commands:"]
        for command in router.visible_commands():
            lines.append(f"/{command.name} — {command.help}")
        lines.append("")
        lines.append("Or just write: questions about code get similar StackOverflow threads, "
                     "anything else gets a chat reply.")
        return [TextReply("\n".join(lines))]


@skills.register("core.about")
class AboutSkill(BaseSkill):
    """What amlbot is and which version runs."""

    name = "core.about"
    description = "About amlbot."
    commands = (Command("about", "What I am and which version is running."),)

    def handle(self, request: Request) -> list[Reply]:
        uptime = time.time() - self.services.started_at
        return [TextReply(
            f"{ABOUT}\n\nVersion {__version__} on Python {platform.python_version()}, "
            f"up {uptime:.0f} s."
        )]


@skills.register("core.history")
class HistorySkill(BaseSkill):
    """Shows the last exchanges of this chat, from the event log."""

    name = "core.history"
    description = "Your recent conversation."
    commands = (Command("history", "Show this chat's recent messages.", usage="/history [N]"),)

    def handle(self, request: Request) -> list[Reply]:
        try:
            limit = int(request.args) if request.args else 10
        except ValueError:
            return [TextReply("Usage: /history [N], where N is a number from 1 to 200.")]
        if not 1 <= limit <= 200:
            return [TextReply("Usage: /history [N], where N is a number from 1 to 200.")]
        events = self.services.store.history(request.message.chat_id, limit=limit * 2)
        lines = []
        for event in events:
            if event.type not in ("message", "reply"):
                continue
            who = "you" if event.type == "message" else "bot"
            text = event.text if len(event.text) <= 200 else event.text[:200] + "…"
            lines.append(f"{event.timestamp:%Y-%m-%d %H:%M} {who}: {text}")
        if not lines:
            return [TextReply("No history yet: this is the start of our conversation.")]
        return [TextReply("\n".join(lines[-limit:]))]


@skills.register("core.unknown_command")
class UnknownCommandSkill(BaseSkill):
    """Answers a command nobody declared, with the closest real ones."""

    name = "core.unknown_command"
    description = "Replies to unknown commands."

    def handle(self, request: Request) -> list[Reply]:
        command = request.command or ""
        close = self.services.router.suggest_commands(command)
        hint = f" Did you mean {', '.join('/' + c for c in close)}?" if close else ""
        shown = command if len(command) <= 40 else command[:40] + "…"
        return [TextReply(f"I don't know the command /{shown}.{hint} Type /help for the list.")]


@skills.register("core.fallback")
class FallbackSkill(BaseSkill):
    """Answers free text when no other skill takes it (and empty or attachment-only messages)."""

    name = "core.fallback"
    description = "The answer of last resort."

    def handle(self, request: Request) -> list[Reply]:
        if request.message.attachments and not request.text:
            return [TextReply("Thanks for the file. No tool is waiting for one right now; "
                              "see /help for what I can do with images.")]
        if not request.text:
            return [TextReply("Your message was empty. Ask me something, or type /help.")]
        problem = self.services.nlp_problem
        if self.services.nlp is None and problem:
            return [TextReply(f"I can't understand free text right now: {problem}\n"
                              "Commands still work: try /help.")]
        if self.services.nlp is None:
            return [TextReply("Free-text answers are switched off here (AMLBOT_NLU_ENABLED="
                              "false); commands still work: try /help.")]
        return [TextReply(
            "I read your message, but I have no skill for it. Try /help to see what I can do."
        )]


@skills.register("core.clarify")
class ClarifySkill(BaseSkill):
    """When the NLU is unsure, asks which of its best guesses the user meant."""

    name = "core.clarify"
    description = "Asks when the intent is unclear."

    def handle(self, request: Request) -> list[Reply]:
        understanding = request.understanding
        options = []
        if understanding is not None:
            for intent, score in (understanding.alternatives or ((understanding.intent,
                                                                  understanding.confidence),)):
                options.append(f"• {_describe_intent(intent)} ({score:.0%})")
        listed = "\n".join(options[:3])
        return [TextReply(
            "I'm not sure what you mean. Did you mean:\n" + listed +
            "\nRephrase it, or use a command from /help."
        )]


def _describe_intent(intent: str) -> str:
    if intent == "programming":
        return "a programming question"
    if intent == "chitchat":
        return "just chatting"
    if intent.startswith("tool:"):
        return f"the tool {intent[5:]}"
    return intent
