"""Validated tool calls for job tests: what ``/run NAME COMMAND k=v`` becomes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from course_tools import load_tools
from course_tools.invocation import ToolInvocation, ToolRequest


def call(tool: str, command: str, raw: Mapping[str, Any] | None = None) -> ToolInvocation:
    """``tool command`` with ``raw`` values, validated (KeyError, ParamError as a user gets)."""
    spec = load_tools().get(tool)
    return ToolRequest(spec, spec.command(command), dict(raw or {})).validate()
