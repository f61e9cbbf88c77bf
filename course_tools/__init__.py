"""Course tools: the registry every tool joins, and the one list of tool modules.

A tool module builds a :class:`~course_tools.base.ToolSpec` and registers it with
``course_tools.register(spec)``. :func:`load_tools` imports every module listed in
``TOOL_MODULES`` (and only those), so what exists is pinned by a snapshot test
(``tests/course_tools/test_registry.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

from course_tools.base import ToolSpec
from course_tools.registry import ToolRegistry, UnknownTool

log = logging.getLogger(__name__)

tools = ToolRegistry()


def register(spec: ToolSpec) -> ToolSpec:
    """Add a tool's declaration to the registry (a module imported twice registers once)."""
    return tools.register(spec)


def register_course_command(course: str, help: str) -> None:
    """Let ``/<course> METHOD [name=value ...]`` start the tool ``<course>.METHOD``."""
    tools.register_course_command(course, help)

#: Every module (or package) that registers tools. Optional packages that are absent are skipped.
TOOL_MODULES: tuple[str, ...] = ("course_tools.demo", "course_tools.rl", "course_tools.bayes",
                                  "course_tools.vision")
OPTIONAL_MODULES = frozenset({"course_tools.rl", "course_tools.bayes", "course_tools.vision"})

#: Modules that failed to import, with the reason (shown by ``amlbot tool list``).
load_errors: dict[str, str] = {}


def load_tools() -> ToolRegistry:
    """Import every tool module once and return the filled registry."""
    for module in TOOL_MODULES:
        if module in OPTIONAL_MODULES and importlib.util.find_spec(module) is None:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            if module not in OPTIONAL_MODULES:
                raise
            if module not in load_errors:
                log.warning("course tools in %s are unavailable: %s", module, exc)
            load_errors[module] = str(exc)
    return tools


__all__ = ["ToolRegistry", "UnknownTool", "load_errors", "load_tools", "register",
           "register_course_command", "tools"]
