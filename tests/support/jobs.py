"""Job test helpers: validated tool calls (what ``/run NAME COMMAND k=v`` becomes) and a wait."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from course_tools import load_tools
from course_tools.invocation import ToolInvocation, ToolRequest


def call(tool: str, command: str, raw: Mapping[str, Any] | None = None) -> ToolInvocation:
    """``tool command`` with ``raw`` values, validated (KeyError, ParamError as a user gets)."""
    spec = load_tools().get(tool)
    return ToolRequest(spec, spec.command(command), dict(raw or {})).validate()


def until(check: Callable[[], bool]) -> None:
    """Wait for ``check``; a wait that never ends is failed by the test's timeout."""
    while not check():
        time.sleep(0.05)
