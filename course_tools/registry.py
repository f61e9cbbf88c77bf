"""The course-tool registry: every tool's declaration by name, and the chat commands they add."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass

from course_tools.base import ChatCommand, ToolSpec


class UnknownTool(KeyError):
    """No tool has that name; the message suggests close ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class CourseCommand:
    """``/<course> METHOD ...``: a slash command for a whole course (``/lhc zmumu``)."""

    course: str
    help: str


class ToolRegistry:
    """Tool declarations by name (``rl.dqn``), filled by :func:`course_tools.register`."""

    def __init__(self) -> None:
        self._specs: dict[str, ToolSpec] = {}
        self.course_commands: dict[str, CourseCommand] = {}

    def register(self, spec: ToolSpec) -> ToolSpec:
        """Add ``spec``; registering the same declaration again is a no-op."""
        if self._specs.setdefault(spec.name, spec) is not spec:
            raise ValueError(f"course tool {spec.name!r} is already registered")
        return spec

    def register_course_command(self, course: str, help: str) -> None:
        """Let ``/<course> METHOD`` start the tool ``<course>.METHOD``."""
        self.course_commands[course] = CourseCommand(course, help)

    def get(self, name: str) -> ToolSpec:
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(self.names()) or "none"
            raise UnknownTool(f"no course tool named {name!r} (known: {known})")
        return spec

    def find(self, name: str, course: str | None = None) -> ToolSpec:
        """The tool called ``name``, case-insensitively, or by its unique method part
        (``dqn``; within ``course`` when given); else :class:`UnknownTool` with suggestions."""
        wanted = name.strip().lower()
        names = self.names()
        if course is not None:
            names = [n for n in names if n.startswith(course + ".")]
        for candidate in names:
            if candidate.lower() == wanted:
                return self._specs[candidate]
        by_method = [n for n in names if n.split(".", 1)[-1].lower() == wanted]
        if len(by_method) == 1:
            return self._specs[by_method[0]]
        close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
        close += [n for n in names if n.split(".", 1)[-1] in
                  difflib.get_close_matches(wanted, [m.split(".", 1)[-1] for m in names], n=3,
                                            cutoff=0.6) and n not in close]
        hint = f" Did you mean {', '.join(close[:3])}?" if close else ""
        raise UnknownTool(f"There is no tool {name!r}.{hint} /tools lists them.")

    def chat_commands(self) -> list[tuple[ToolSpec, ChatCommand]]:
        """Every tool's own slash commands, in tool order."""
        return [(spec, chat) for _, spec in self.items() for chat in spec.chat_commands]

    def names(self) -> list[str]:
        return sorted(self._specs)

    def items(self) -> Iterator[tuple[str, ToolSpec]]:
        yield from sorted(self._specs.items())

    def examples(self) -> dict[str, list[str]]:
        """Each tool's NLU phrasings (tools without any are left out)."""
        return {name: list(spec.examples) for name, spec in self.items() if spec.examples}

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)
