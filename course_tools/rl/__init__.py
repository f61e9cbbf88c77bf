"""Reinforcement-learning course tools (gymnasium): tabular planning and TD control, CEM, DQN,
REINFORCE and A2C. Importing the package registers them; gymnasium and torch are imported only
when a tool runs."""

from __future__ import annotations

from course_tools.base import ToolSpec
from course_tools.rl import cem, deep, tabular

SPECS: list[ToolSpec] = [*tabular.SPECS, *cem.SPECS, *deep.SPECS]

__all__ = ["SPECS"]
