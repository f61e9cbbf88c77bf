"""Shared pieces of the Bayesian-methods tools."""

from __future__ import annotations

from course_tools.base import ToolSpec


def register(spec: ToolSpec) -> ToolSpec:
    """Add a spec to the course-tool registry, if that registry exists (it may load later)."""
    try:
        from course_tools import tools  # type: ignore[attr-defined]
    except ImportError:
        return spec
    if spec.name not in tools:
        tools.register(spec.name)(spec)
    return spec
